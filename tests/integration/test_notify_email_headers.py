"""Issue 14.6: an email reads, in a mail client, exactly as notify rendered it.

Every email template is rendered, sent by the real SMTP adapter to a real SMTP server
(aiosmtpd), and the bytes that server received are parsed as a mail client does
(``BytesParser(policy=email.policy.default)``). Dossier codes of every length an agency code
allows move the "—" of the receipt's subject across the fold of the Subject header, where
Python 3.11's own folder lost the space after it ("…0005 —hẹn trả…"; docs/adr/0036).
"""

from __future__ import annotations

import email.policy
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime
from email.header import decode_header
from email.parser import BytesParser

import pytest

from motcua_notify.adapters.channels.email import SmtpEmail
from motcua_notify.domain.notification import Notification
from motcua_notify.domain.occurrence import PROVIDED_VARIABLES
from motcua_notify.domain.states import Channel, State
from motcua_notify.domain.templates import TemplateCatalogue
from motcua_notify.settings import NotifySettings
from notify_providers import EMAIL, SmtpSink

pytestmark = pytest.mark.integration

CATALOGUE = TemplateCatalogue.load(
    segment_limit=NotifySettings().sms_segment_limit, provided=PROVIDED_VARIABLES
)
EMAIL_TEMPLATES = [t for t in CATALOGUE.templates.values() if t.email is not None]
SENDER_NAME = NotifySettings().smtp_sender_name  # "Bộ phận Một cửa"
# Agency codes of 2..12 letters and 1..4-digit sequences: every dossier-code length there is.
AGENCIES = ["ST", "STP", "SXDN", "PHOIA", "PHOIAN", "PHAICHA", "PHAICHAU", "CAPHUONG", "A" * 12]
SEQUENCES = ["0005", "0042", "1234", "9999"]
WIDTHS = [agency + "-261129-" + seq for agency in AGENCIES for seq in SEQUENCES[:2]]


def values(code: str) -> dict[str, str]:
    agency = code.partition("-")[0]
    return {
        "dossier_code": code,
        "agency_code": agency,
        "procedure_code": "HT-001",
        "procedure_name": "Đăng ký khai sinh",
        "procedure": "Đăng ký khai sinh (HT-001)",
        "applicant_name": "Nguyễn Thị Thu Hà",
        "submitted_date": "29/11/2026",
        "appointment_date": "07/12/2026",
        "due_date": "07/12/2026",
        "new_appointment_date": "14/12/2026",
        "days_late": "2",
        "status": "5",
        "status_name": "Yêu cầu bổ sung",
        "comment": "Bản sao giấy chứng nhận kết hôn — có chứng thực",
        "amount": "1.250.000",
        "payment_link": "https://pay.example.vn/p/abc123",
        "receipt_number": "BL-2026-000123",
        "document_kind": "receipt",
        "document_name": "Giấy tiếp nhận hồ sơ",
        "document_link": f"https://dichvucong.danang.gov.vn/ho-so/{code}/giay-to/"
        "3f2a9c0d5e6b4a718293a4b5c6d7e8f9",
        "document_filename": f"{code}-receipt.pdf",
        "document_size": "51 KB",
        "document_attached": "có",
        "attachment_limit": "10 MB",
    }


def notification(code: str, subject: str, body: str, n: int) -> Notification:
    now = datetime(2026, 11, 30, 5, 0, tzinfo=UTC)
    return Notification(
        id=f"00000000-0000-4000-8000-{n:012d}",
        event_id=f"event-{n}",
        event_type="vn.motcua.dossier.submitted.v1",
        dossier_code=code,
        agency_code=code.partition("-")[0],
        citizen_id="079203004567",
        template="receipt",
        channel=Channel.EMAIL,
        recipient=EMAIL,
        subject=subject,
        body=body,
        payload={},
        sms_segments=None,
        state=State.SENDING,
        attempts=1,
        reference="ref",
        provider="",
        provider_ref="",
        created_at=now,
        updated_at=now,
        next_attempt_at=None,
    )


@pytest.fixture(scope="module")
def sent() -> Iterator[list[tuple[str, str, str, bytes]]]:
    """(template, rendered subject, rendered body, raw bytes received) for every email."""
    out: list[tuple[str, str, str, bytes]] = []
    with SmtpSink() as smtp:
        adapter = SmtpEmail("127.0.0.1", smtp.port, "motcua@hoian.example.vn", SENDER_NAME)
        for template in EMAIL_TEMPLATES:
            for code in WIDTHS:
                rendered = CATALOGUE.render_email(template, values(code))
                n = len(out)
                result = adapter.send(notification(code, rendered.subject, rendered.body, n), "r")
                assert result.verdict.value == "delivered", result.detail
                (raw,) = smtp.raw_to(EMAIL)[n:]
                out.append((template.name, rendered.subject, rendered.body, raw))
    yield out


def as_a_mail_client_reads(raw: bytes) -> email.message.EmailMessage:
    message = BytesParser(policy=email.policy.default).parsebytes(raw)
    assert isinstance(message, email.message.EmailMessage)
    return message


def subject_lines(raw: bytes) -> list[str]:
    """Each physical line of the raw Subject header, decoded on its own."""
    lines = raw.split(b"\r\n\r\n", 1)[0].decode("ascii").split("\r\n")
    first = next(i for i, line in enumerate(lines) if line.startswith("Subject:"))
    folded = [lines[first].removeprefix("Subject:")]
    for line in lines[first + 1 :]:
        if line[:1] not in (" ", "\t"):
            break
        folded.append(line)
    return [
        "".join(
            part.decode(charset or "ascii") if isinstance(part, bytes) else part
            for part, charset in decode_header(line)
        )
        for line in folded
    ]


def test_every_template_is_sent(sent: list[tuple[str, str, str, bytes]]) -> None:
    assert {name for name, *_ in sent} == {t.name for t in EMAIL_TEMPLATES}
    assert len(sent) == len(EMAIL_TEMPLATES) * len(WIDTHS)


def test_every_subject_reads_back_exactly_as_rendered(
    sent: list[tuple[str, str, str, bytes]],
) -> None:
    wrong = [
        (name, subject, str(as_a_mail_client_reads(raw)["Subject"]))
        for name, subject, _body, raw in sent
        if str(as_a_mail_client_reads(raw)["Subject"]) != subject
    ]
    assert wrong == []


def test_the_dash_of_the_receipt_subject_falls_at_a_fold_and_keeps_its_spaces(
    sent: list[tuple[str, str, str, bytes]],
) -> None:
    receipts = [(subject, raw) for name, subject, _b, raw in sent if name == "receipt"]
    at_fold = []
    for subject, raw in receipts:
        lines = subject_lines(raw)
        for left, right in itertools.pairwise(lines):
            if left.endswith(("—", "— ")) or right.startswith(("—", " —")):
                at_fold.append(subject)
    assert at_fold, "no dossier-code length puts the dash at a fold; widen WIDTHS"
    for subject, raw in receipts:
        assert as_a_mail_client_reads(raw)["Subject"] == subject
        assert " — " in str(as_a_mail_client_reads(raw)["Subject"])


def test_headers_stay_within_78_columns_and_the_rest_reads_back(
    sent: list[tuple[str, str, str, bytes]],
) -> None:
    for _name, _subject, body, raw in sent:
        head = raw.split(b"\r\n\r\n", 1)[0]
        assert max(len(line) for line in head.split(b"\r\n")) <= 78
        message = as_a_mail_client_reads(raw)
        assert not message.defects
        (sender,) = message["From"].addresses
        assert (sender.display_name, sender.addr_spec) == (SENDER_NAME, "motcua@hoian.example.vn")
        assert message.get_content().replace("\r\n", "\n") == body
