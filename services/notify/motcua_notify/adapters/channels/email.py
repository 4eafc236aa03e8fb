"""Email over SMTP. The relay's acceptance (250) is as far as delivery can be known."""

from __future__ import annotations

import smtplib
from email.header import Header
from email.headerregistry import Address, BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import SMTP, Policy
from email.utils import formatdate

from motcua_notify.adapters.channels.base import ProviderRouting, Timer, short
from motcua_notify.domain.notification import Notification, SendResult, Verdict
from motcua_notify.domain.states import Channel


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
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.sender_name = sender_name
        self.username = username
        self.password = password
        self.starttls = starttls
        self.timeout = timeout
        self._domain = sender.rpartition("@")[2] or "motcua.local"

    def message(self, notification: Notification) -> EmailMessage:
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
        return msg

    def send(self, notification: Notification, reference: str) -> SendResult:
        timer = Timer(self.channel, self.provider)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls()
                if self.username:
                    smtp.login(self.username, self.password)
                smtp.send_message(self.message(notification))
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
        return None


def _reply(code: int, text: bytes | str) -> str:
    message = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"SMTP {code}: {short(message, 200)}"
