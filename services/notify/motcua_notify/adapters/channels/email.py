"""Email over SMTP. The relay's acceptance (250) is as far as delivery can be known.

An email whose intent names a signed document to attach (``payload["document"]``, issue 18)
is sent as multipart/mixed with the PDF, fetched from the dossier service when sending and
checked against the event; when it cannot be had as the event names it, nothing is sent
(retried when the dossier service may answer later, failed when it never will).
"""

from __future__ import annotations

import smtplib
from email.header import Header
from email.headerregistry import Address, BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import SMTP, Policy
from email.utils import formatdate
from typing import Protocol

from motcua_notify.adapters.channels.base import ProviderRouting, Timer, short
from motcua_notify.adapters.documents import DocumentFetchError
from motcua_notify.domain.documents import DocumentRef
from motcua_notify.domain.notification import Notification, SendResult, Verdict
from motcua_notify.domain.states import Channel


class DocumentSource(Protocol):
    """Where an attachment's bytes come from (:class:`~motcua_notify.adapters.documents.
    DossierDocuments`): exactly the event's bytes, or a :class:`DocumentFetchError`."""

    def fetch(self, ref: DocumentRef) -> bytes: ...

    def close(self) -> None: ...


class _SpaceKeepingHeader(BaseHeader):
    """A header whose non-ASCII text is folded into encoded words that keep every space.

    Python 3.11's folder joins words into encoded words one at a time; where a word starts
    a new encoded word after a fold, it can leave the space before that word outside, between
    two encoded words, where RFC 2047 (6.2) has every reader drop it: "…0005 —hẹn trả…"
    (CPython gh-92081, gh-144156; docs/adr/0036). Unstructured text (Subject, X-…) goes to
    the standard library's own RFC 2047 encoder, :class:`email.header.Header`, which cuts by
    characters and keeps spaces inside the encoded words. ASCII text and structured headers
    (addresses, dates, ids) keep the policy's folding.
    """

    def fold(self, *, policy: Policy) -> str:
        text = str(self)
        if not isinstance(self, UnstructuredHeader) or text.isascii():
            return str(super().fold(policy=policy))
        width = policy.max_line_length or 0  # 0: never fold
        encoded = Header(text, "utf-8", maxlinelen=width, header_name=self.name)
        return f"{self.name}: {encoded.encode(linesep=policy.linesep)}{policy.linesep}"


# The SMTP policy (CRLF, 78 columns), with unstructured headers folded as above.
POLICY = SMTP.clone(header_factory=HeaderRegistry(base_class=_SpaceKeepingHeader))


class SmtpEmail:
    """One SMTP connection per message (the relay does the queueing); optional STARTTLS+auth.

    SMTP has no idempotency reference; the ``Message-ID`` is derived from the notification id
    so that a resend after a crash carries the same one, which mail stores use to drop
    duplicates.
    """

    channel = Channel.EMAIL
    routing: ProviderRouting | None = None  # one provider: nothing to pick
    provider = "smtp"

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        sender_name: str = "",
        *,
        username: str = "",
        password: str = "",
        starttls: bool = False,
        timeout: float = 10.0,
        documents: DocumentSource | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.sender_name = sender_name
        self.username = username
        self.password = password
        self.starttls = starttls
        self.timeout = timeout
        self.documents = documents
        self._domain = sender.rpartition("@")[2] or "motcua.local"

    def message(
        self, notification: Notification, attachment: tuple[DocumentRef, bytes] | None = None
    ) -> EmailMessage:
        msg = EmailMessage(policy=POLICY)
        local, _, domain = self.sender.rpartition("@")
        msg["From"] = Address(self.sender_name, local, domain)
        msg["To"] = notification.recipient
        msg["Subject"] = notification.subject
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        msg["Message-ID"] = f"<{notification.id}@{self._domain}>"
        msg["X-Motcua-Notification-Id"] = notification.id
        msg["X-Motcua-Dossier"] = notification.dossier_code
        msg.set_content(notification.body, charset="utf-8")
        if attachment is not None:
            ref, data = attachment
            msg.add_attachment(
                data, maintype="application", subtype="pdf", filename=ref.attachment_name
            )
        return msg

    def attachment(self, notification: Notification) -> tuple[DocumentRef, bytes] | None:
        """The document the email carries, fetched and checked; None for an email without one
        (or one the notice sends as a link only)."""
        raw = notification.payload.get("document")
        if not isinstance(raw, dict) or not raw.get("attach"):
            return None
        ref = DocumentRef.from_payload(raw)
        if self.documents is None:
            raise DocumentFetchError(
                "error", "documents are not configured (no dossier gRPC target)", permanent=True
            )
        return ref, self.documents.fetch(ref)

    def send(self, notification: Notification, reference: str) -> SendResult:
        try:
            attachment = self.attachment(notification)
        except DocumentFetchError as exc:
            verdict = Verdict.PERMANENT if exc.permanent else Verdict.TEMPORARY
            return SendResult(verdict, self.provider, detail=f"not sent: {short(exc.reason, 300)}")
        timer = Timer(self.channel, self.provider)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls()
                if self.username:
                    smtp.login(self.username, self.password)
                smtp.send_message(self.message(notification, attachment))
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            verdict = Verdict.TEMPORARY if 400 <= code < 500 else Verdict.PERMANENT
            return timer.done(SendResult(verdict, self.provider, detail=_reply(code, text)))
        except smtplib.SMTPResponseException as exc:
            verdict = Verdict.TEMPORARY if 400 <= exc.smtp_code < 500 else Verdict.PERMANENT
            if isinstance(exc, smtplib.SMTPAuthenticationError):
                verdict = Verdict.TEMPORARY  # our credentials: the operator fixes, we retry
            return timer.done(
                SendResult(verdict, self.provider, detail=_reply(exc.smtp_code, exc.smtp_error))
            )
        except (OSError, smtplib.SMTPException) as exc:
            return timer.done(
                SendResult(
                    Verdict.TEMPORARY,
                    self.provider,
                    detail=f"SMTP relay unreachable: {type(exc).__name__}: {short(str(exc), 120)}",
                )
            )
        return timer.done(
            SendResult(Verdict.DELIVERED, self.provider, detail="accepted by the SMTP relay")
        )

    def close(self) -> None:
        if self.documents is not None:
            self.documents.close()


def _reply(code: int, text: bytes | str) -> str:
    message = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"SMTP {code}: {short(message, 200)}"
