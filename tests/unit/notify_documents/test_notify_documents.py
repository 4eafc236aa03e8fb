"""Issue 18: notify emails the citizen the signed receipt slip and result, and texts the link.

Real parts: notify in-process (SQLite) with its real SMTP adapter talking to a real SMTP server
(aiosmtpd), its real SMS adapter to a local HTTP SMS provider, and its real gRPC client to a
local GetDocument server (:class:`FakeDossierDocuments`) serving a PDF really signed with the
session's SoftHSM2 token. The fetched bytes must be the event's (size and SHA-256).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import grpc
import pytest
from prometheus_client import REGISTRY
from unit.notify_documents.support import (
    SERVICE_TOKEN,
    FakeDossierDocuments,
    document_issued,
    signed_receipt,
)

from motcua.dossier.v1 import dossier_pb2, events_pb2
from motcua_documents.devpki import DevPki
from motcua_kit.db import transaction
from motcua_kit.envelope import Event
from motcua_kit.service import ServiceHost
from motcua_notify.service import NotifyService
from motcua_notify.settings import NotifySettings
from notify_providers import (
    EMAIL,
    PHONE,
    SMS_A_KEY,
    SmsProviderServer,
    SmtpSink,
    dossier,
    rows,
)

RECEIPT = dossier_pb2.DOCUMENT_KIND_RECEIPT
RESULT = dossier_pb2.DOCUMENT_KIND_RESULT
START = datetime(2026, 12, 1, 5, 0, tzinfo=UTC)  # 12:00 in Đà Nẵng


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def pdf(dev_pki: DevPki) -> bytes:
    return signed_receipt(dev_pki)


@pytest.fixture
def dossier_service() -> Iterator[FakeDossierDocuments]:
    with FakeDossierDocuments() as fake:
        yield fake


@pytest.fixture
def stand_ins() -> Iterator[tuple[SmtpSink, SmsProviderServer]]:
    with SmtpSink() as smtp, SmsProviderServer("sms-a", SMS_A_KEY) as sms:
        yield smtp, sms


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "notify.token"
    path.write_text(SERVICE_TOKEN + "\n", encoding="utf-8")
    return path


Make = Callable[..., tuple[NotifyService, Clock, str]]


@pytest.fixture
def notify(
    tmp_path: Path,
    stand_ins: tuple[SmtpSink, SmsProviderServer],
    dossier_service: FakeDossierDocuments,
    token_file: Path,
) -> Iterator[Make]:
    smtp, sms = stand_ins
    hosts: list[ServiceHost] = []

    def make(**over: object) -> tuple[NotifyService, Clock, str]:
        url = f"sqlite:///{tmp_path}/notify-{len(hosts)}.db"
        fields: dict[str, object] = {
            "database_url": url,
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp.port,
            "smtp_sender": "motcua@danang.example.vn",
            "sms_provider_a_url": sms.url,
            "sms_provider_a_api_key": SMS_A_KEY,
            "receipts_port": 0,
            "quiet_hours": "",
            "retry_base_seconds": 1.0,
            "retry_jitter": 0.0,
            "dossier_grpc_target": dossier_service.target,
            "dossier_token_file": token_file,
            "dossier_grpc_timeout_seconds": 5.0,
        }
        fields.update(over)
        clock = Clock()
        host = ServiceHost(NotifyService, NotifySettings(**fields), overrides={"clock": clock})
        host.migrate()
        hosts.append(host)
        service = host.service
        assert isinstance(service, NotifyService)
        return service, clock, url

    yield make
    for host in hosts:
        host.service.close()
        host.engine.dispose()


def deliver(service: NotifyService, event: Event) -> None:
    """What the consumer runner does with one record (the handler, in one transaction)."""
    with transaction(service.context.sessions) as session:
        service.on_dossier_event(event, event.parse(events_pb2.DocumentIssued), session)


def attachments(message: EmailMessage) -> list[EmailMessage]:
    return list(message.iter_attachments())  # type: ignore[arg-type]


def fetches(outcome: str) -> float:
    return (
        REGISTRY.get_sample_value("motcua_notify_document_fetches_total", {"outcome": outcome})
        or 0.0
    )


@pytest.mark.parametrize("kind", [RECEIPT, RESULT], ids=["receipt", "result"])
def test_the_signed_pdf_is_attached_byte_for_byte_and_the_sms_names_the_link(
    notify: Make,
    stand_ins: tuple[SmtpSink, SmsProviderServer],
    dossier_service: FakeDossierDocuments,
    pdf: bytes,
    kind: int,
) -> None:
    smtp, sms = stand_ins
    service, _clock, _url = notify()
    d = dossier(agency="STP", email_address=EMAIL)
    doc = dossier_service.add(d.code, kind, pdf)
    deliver(service, document_issued(d, doc))
    service.dispatch()

    (mail,) = smtp.to(EMAIL)
    assert mail.get_content_type() == "multipart/mixed"
    (part,) = attachments(mail)
    assert part.get_content_type() == "application/pdf"
    assert part.get_filename() == doc.filename
    data = part.get_content()
    assert hashlib.sha256(data).hexdigest() == doc.sha256 == hashlib.sha256(pdf).hexdigest()
    assert data.startswith(b"%PDF-") and b"/ByteRange" in data  # the signed file itself
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    link = f"https://dichvucong.danang.gov.vn/ho-so/{d.code}/giay-to/{doc.id}"
    assert "gửi kèm thư này" in text and link in text
    name = "Giấy tiếp nhận hồ sơ" if kind == RECEIPT else "Kết quả giải quyết hồ sơ"
    assert name in str(mail["Subject"]) and d.code in str(mail["Subject"])

    (message,) = sms.messages_to("84" + PHONE[1:])
    assert link in message["text"]
    assert len(message["text"]) <= 306  # two GSM-7 segments, the default limit
    # The token went as a bearer token (the fake refuses anything else).
    assert dossier_service.document_calls(doc.id) == [f"Bearer {SERVICE_TOKEN}"]


def test_a_redelivered_event_sends_no_second_email(
    notify: Make,
    stand_ins: tuple[SmtpSink, SmsProviderServer],
    dossier_service: FakeDossierDocuments,
    pdf: bytes,
) -> None:
    smtp, sms = stand_ins
    service, _clock, _url = notify()
    d = dossier(agency="STP")
    event = document_issued(d, dossier_service.add(d.code, RECEIPT, pdf))
    deliver(service, event)
    service.dispatch()
    deliver(service, event)  # the same record again (same ce_id)
    service.dispatch()
    assert len(smtp.to(EMAIL)) == 1
    assert len(sms.messages_to("84" + PHONE[1:])) == 1


def test_other_bytes_than_the_event_s_are_never_sent_and_the_failure_says_why(
    notify: Make,
    stand_ins: tuple[SmtpSink, SmsProviderServer],
    dossier_service: FakeDossierDocuments,
    pdf: bytes,
) -> None:
    smtp, _sms = stand_ins
    service, _clock, url = notify()
    d = dossier(agency="STP")
    doc = dossier_service.add(d.code, RESULT, pdf)
    tampered = bytearray(pdf)
    tampered[len(pdf) // 2] ^= 0x01  # same size, other SHA-256
    dossier_service.documents[doc.id].serve = bytes(tampered)
    before = fetches("mismatch")
    deliver(service, document_issued(d, doc))
    service.dispatch()

    assert smtp.to(EMAIL) == []
    (email_row,) = [r for r in rows(url, d.code) if r.channel == "email"]
    assert email_row.state == "permanent-failure"
    assert "SHA-256" in email_row.detail and doc.sha256 in email_row.detail
    assert fetches("mismatch") == before + 1


def test_a_document_the_dossier_service_does_not_know_fails_the_email_not_silently(
    notify: Make,
    stand_ins: tuple[SmtpSink, SmsProviderServer],
    dossier_service: FakeDossierDocuments,
    pdf: bytes,
) -> None:
    smtp, _sms = stand_ins
    service, _clock, url = notify()
    d = dossier(agency="STP")
    doc = dossier_service.add(d.code, RECEIPT, pdf)
    del dossier_service.documents[doc.id]
    deliver(service, document_issued(d, doc))
    service.dispatch()
    assert smtp.to(EMAIL) == []
    (email_row,) = [r for r in rows(url, d.code) if r.channel == "email"]
    assert email_row.state == "permanent-failure" and "NOT_FOUND" in email_row.detail


def test_an_unavailable_dossier_service_is_retried_and_then_the_email_goes(
    notify: Make,
    stand_ins: tuple[SmtpSink, SmsProviderServer],
    dossier_service: FakeDossierDocuments,
    pdf: bytes,
) -> None:
    smtp, _sms = stand_ins
    service, clock, url = notify()
    d = dossier(agency="STP")
    doc = dossier_service.add(d.code, RECEIPT, pdf)
    dossier_service.fail_next = [grpc.StatusCode.UNAVAILABLE]
    deliver(service, document_issued(d, doc))
    service.dispatch()
    assert smtp.to(EMAIL) == []
    (email_row,) = [r for r in rows(url, d.code) if r.channel == "email"]
    assert email_row.state == "temporary-failure" and "UNAVAILABLE" in email_row.detail

    clock.now += timedelta(seconds=5)  # past the retry's backoff
    service.dispatch()
    (mail,) = smtp.to(EMAIL)
    (part,) = attachments(mail)
    assert hashlib.sha256(part.get_content()).hexdigest() == doc.sha256


def test_a_wrong_token_is_refused_by_the_dossier_service_and_a_rotated_one_is_read(
    notify: Make,
    stand_ins: tuple[SmtpSink, SmsProviderServer],
    dossier_service: FakeDossierDocuments,
    token_file: Path,
    pdf: bytes,
) -> None:
    smtp, _sms = stand_ins
    token_file.write_text("an-expired-token", encoding="utf-8")
    service, clock, url = notify()
    d = dossier(agency="STP")
    doc = dossier_service.add(d.code, RECEIPT, pdf)
    deliver(service, document_issued(d, doc))
    service.dispatch()
    assert dossier_service.document_calls(doc.id) == ["Bearer an-expired-token"]
    assert smtp.to(EMAIL) == []
    (email_row,) = [r for r in rows(url, d.code) if r.channel == "email"]
    assert email_row.state == "temporary-failure" and "UNAUTHENTICATED" in email_row.detail

    token_file.write_text(SERVICE_TOKEN, encoding="utf-8")  # the identity provider rotated it
    clock.now += timedelta(seconds=5)
    service.dispatch()
    assert len(smtp.to(EMAIL)) == 1


def test_a_document_over_the_cap_is_linked_not_attached_and_the_email_says_so(
    notify: Make,
    stand_ins: tuple[SmtpSink, SmsProviderServer],
    dossier_service: FakeDossierDocuments,
    pdf: bytes,
) -> None:
    smtp, sms = stand_ins
    service, _clock, _url = notify(document_attachment_max_bytes=len(pdf) - 1)
    d = dossier(agency="STP")
    doc = dossier_service.add(d.code, RESULT, pdf)
    deliver(service, document_issued(d, doc))
    service.dispatch()
    (mail,) = smtp.to(EMAIL)
    assert attachments(mail) == []
    text = mail.get_content()
    link = f"https://dichvucong.danang.gov.vn/ho-so/{d.code}/giay-to/{doc.id}"
    assert "không gửi kèm thư" in text and link in text
    assert dossier_service.document_calls(doc.id) == []  # nothing fetched for a link
    assert len(sms.messages_to("84" + PHONE[1:])) == 1


def test_other_forms_get_no_notice_of_their_own(
    notify: Make,
    stand_ins: tuple[SmtpSink, SmsProviderServer],
    dossier_service: FakeDossierDocuments,
    pdf: bytes,
) -> None:
    smtp, sms = stand_ins
    service, _clock, url = notify()
    d = dossier(agency="STP")
    for kind in (
        dossier_pb2.DOCUMENT_KIND_SUPPLEMENT_REQUEST,
        dossier_pb2.DOCUMENT_KIND_REFUSAL,
        dossier_pb2.DOCUMENT_KIND_APOLOGY,
        dossier_pb2.DOCUMENT_KIND_CONTROL_SHEET,
    ):
        deliver(service, document_issued(d, dossier_service.add(d.code, kind, pdf)))
    service.dispatch()
    assert rows(url, d.code) == [] and smtp.to(EMAIL) == [] and sms.messages == []


def test_without_a_dossier_target_document_events_are_skipped_as_before(
    notify: Make,
    stand_ins: tuple[SmtpSink, SmsProviderServer],
    dossier_service: FakeDossierDocuments,
    pdf: bytes,
) -> None:
    smtp, _sms = stand_ins
    service, _clock, url = notify(dossier_grpc_target="", dossier_token_file=None)
    d = dossier(agency="STP")
    deliver(service, document_issued(d, dossier_service.add(d.code, RECEIPT, pdf)))
    service.dispatch()
    assert rows(url, d.code) == [] and smtp.to(EMAIL) == []
    assert dossier_service.calls == []


def test_a_document_of_another_dossier_than_the_event_s_is_refused(
    notify: Make, dossier_service: FakeDossierDocuments, pdf: bytes
) -> None:
    from motcua_kit.consumer import PermanentError

    service, _clock, url = notify()
    d = dossier(agency="STP")
    doc = dossier_service.add("STP-261201-9999", RECEIPT, pdf)
    with pytest.raises(PermanentError, match="STP-261201-9999"):
        deliver(service, document_issued(d, doc))
    assert rows(url, d.code) == []


def test_a_target_without_a_token_file_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="dossier_token_file"):
        NotifySettings(dossier_grpc_target="127.0.0.1:50051")
    with pytest.raises(ValueError, match="document_id"):
        NotifySettings(document_link_template="https://x.example/{dossier_code}/{secret}")
