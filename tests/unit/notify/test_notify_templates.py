"""The template catalogue: shipped templates, rendering, and refusals at load."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from motcua_notify import events
from motcua_notify.domain.notification import Contact
from motcua_notify.domain.occurrence import PROVIDED_VARIABLES, DossierSnapshot
from motcua_notify.domain.sms import Encoding, gsm7_segments, to_gsm7
from motcua_notify.domain.templates import DEFAULT_FILE, TemplateCatalogue, TemplateCatalogueError
from motcua_notify.settings import NotifySettings

SHIPPED = yaml.safe_load(DEFAULT_FILE.read_text(encoding="utf-8"))
LIMIT = NotifySettings().sms_segment_limit

VALUES = {
    "dossier_code": "PHAICHAU-261129-0042",
    "agency_code": "PHAICHAU",
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
    "comment": "Bản sao giấy chứng nhận kết hôn có chứng thực",
    "amount": "1.250.000",
    "payment_link": "https://pay.example.vn/p/abc123",
    "receipt_number": "BL-2026-000123",
    "document_kind": "receipt",
    "document_name": "Giấy tiếp nhận hồ sơ",
    "document_link": "https://dichvucong.danang.gov.vn/ho-so/PHOIAN-261129-0005/giay-to/"
    "3f2a9c0d5e6b4a718293a4b5c6d7e8f9",
    "document_filename": "PHOIAN-261129-0005-receipt.pdf",
    "document_size": "51 KB",
    "document_attached": "có",
    "attachment_limit": "10 MB",
}


def load(doc: object = None, limit: int = LIMIT, **kw) -> TemplateCatalogue:
    return TemplateCatalogue.from_document(
        SHIPPED if doc is None else doc, segment_limit=limit, provided=PROVIDED_VARIABLES, **kw
    )


def test_shipped_catalogue_loads_with_the_default_limit() -> None:
    catalogue = TemplateCatalogue.load(segment_limit=LIMIT, provided=PROVIDED_VARIABLES)
    assert {
        "receipt",
        "supplement_requested",
        "payment_required",
        "payment_received",
        "late_apology",
        "result_ready",
        "rejected",
    } <= set(catalogue.templates)


def test_the_issue_s_seven_notices_have_email_sms_and_zalo() -> None:
    catalogue = load()
    for name in (
        "receipt",
        "supplement_requested",
        "payment_required",
        "payment_received",
        "late_apology",
        "result_ready",
        "rejected",
    ):
        t = catalogue.templates[name]
        assert t.email and t.sms and t.zalo, name


@pytest.mark.parametrize(
    "name", [n for n, t in SHIPPED["templates"].items() if "sms" in t], ids=str
)
def test_every_shipped_sms_fits_its_limit_without_diacritics_at_its_longest(name: str) -> None:
    catalogue = load()
    template = catalogue.templates[name]
    assert template.sms is not None
    worst = template.sms.worst_case
    assert worst.gsm7_segments <= min(template.sms.max_segments, LIMIT)
    assert worst.gsm7_text == to_gsm7(worst.gsm7_text)  # already pure GSM-7
    assert gsm7_segments(worst.gsm7_text) == worst.gsm7_segments
    # A real rendering is within the worst case, also with over-long values (but links,
    # which are never cut: their source keeps them within their declared length).
    links = {v.name for v in catalogue.variables.values() if v.link}
    long_values = {k: v if k in links else v * 20 for k, v in VALUES.items()}
    for values in (VALUES, long_values):
        sms = catalogue.render_sms(template, values)
        assert sms.gsm7_segments <= worst.gsm7_segments
        assert all(ord(ch) < 128 for ch in sms.gsm7_text)


def test_receipt_renders_code_and_date_in_every_channel() -> None:
    catalogue = load()
    t = catalogue.for_event(events.DOSSIER_SUBMITTED)
    assert t is not None and t.name == "receipt"
    email = catalogue.render_email(t, VALUES)
    assert "PHAICHAU-261129-0042" in email.subject and "07/12/2026" in email.subject
    assert "Nguyễn Thị Thu Hà" in email.body
    sms = catalogue.render_sms(t, VALUES)
    assert "Hồ sơ PHAICHAU-261129-0042" in sms.unicode_text
    assert "Ho so PHAICHAU-261129-0042 da duoc tiep nhan" in sms.gsm7_text
    assert "07/12/2026" in sms.gsm7_text
    assert sms.gsm7_segments == 1 and sms.unicode_segments == 3
    zalo = catalogue.render_zalo(t, VALUES)
    assert zalo.template_id == "motcua-receipt-v1"
    assert zalo.params["appointment_date"] == "07/12/2026"


def _snapshot(procedure_name: str) -> DossierSnapshot:
    return DossierSnapshot(
        dossier_code="PHAICHAU-261129-0042",
        agency_code="PHAICHAU",
        procedure_code="HT-004",
        status=1,
        appointment_date="2026-12-07",
        submitted_date="2026-11-29",
        contact=Contact("079203004567", "Nguyễn Thị Thu Hà", "0905123456", "thuha@example.vn"),
        procedure_name=procedure_name,
    )


def test_the_receipt_names_the_procedure_with_its_code_in_brackets() -> None:
    catalogue = load()
    t = catalogue.templates["receipt"]
    named = catalogue.render_email(t, _snapshot("Cấp bản sao trích lục hộ tịch").values())
    assert "Thủ tục:               Cấp bản sao trích lục hộ tịch (HT-004)\n" in named.body
    # An event from a dossier service older than the name: the code, as before.
    unnamed = catalogue.render_email(t, _snapshot("").values())
    assert "Thủ tục:               HT-004\n" in unnamed.body


@pytest.mark.parametrize(
    "link",
    [
        "http://127.0.0.1:8103/p/Zq3_k9-AbC12",  # the short pay link
        # A gateway URL from a payment service without short links: long, still whole.
        "http://127.0.0.1:8090/paymentv2/vpcpay.html?vnp_Amount=800000&vnp_Command=pay"
        "&vnp_TxnRef=3f1c2b7e9a0d4c5b8e6f7a1b2c3d4e5f&vnp_SecureHash=" + "ab" * 64,
    ],
)
def test_a_pay_link_is_never_cut_in_any_channel(link: str) -> None:
    catalogue = load()
    t = catalogue.templates["payment_required"]
    values = {**VALUES, "amount": "8.000", "payment_link": link}
    sms = catalogue.render_sms(t, values)
    assert sms.gsm7_text.endswith(link) and sms.unicode_text.endswith(link)
    assert link in catalogue.render_email(t, values).body
    assert catalogue.render_zalo(t, values).params["payment_link"] == link


def test_supplement_sms_cuts_a_long_comment_to_its_declared_length() -> None:
    catalogue = load()
    t = catalogue.templates["supplement_requested"]
    long = {**VALUES, "comment": "Thiếu giấy tờ " * 30}
    sms = catalogue.render_sms(t, long)
    assert "..." in sms.gsm7_text
    assert sms.gsm7_segments <= LIMIT
    email = catalogue.render_email(t, long)
    assert email.body.count("Thiếu giấy tờ") == 30  # email carries it whole


def test_a_too_long_sms_is_refused_at_load_naming_the_template() -> None:
    doc = copy.deepcopy(SHIPPED)
    doc["templates"]["rejected"]["sms"]["body"] += " Xin vui lòng liên hệ" * 10
    with pytest.raises(TemplateCatalogueError) as info:
        load(doc)
    assert "'rejected.sms'" in str(info.value)
    assert "too long" in str(info.value)


def test_a_template_own_max_segments_is_enforced() -> None:
    doc = copy.deepcopy(SHIPPED)
    doc["templates"]["receipt"]["sms"]["max_segments"] = 1
    with pytest.raises(TemplateCatalogueError, match=r"'receipt\.sms'"):
        load(doc)


def test_a_lower_configured_limit_refuses_the_longer_templates() -> None:
    with pytest.raises(TemplateCatalogueError, match="over the limit of 1"):
        load(limit=1)


def test_unicode_sms_is_checked_in_ucs2_segments() -> None:
    with pytest.raises(TemplateCatalogueError, match="UCS2 segments"):
        load(encoding=Encoding.UCS2)
    assert load(limit=3, encoding=Encoding.UCS2)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["templates"]["receipt"]["sms"].update(body="{{ nope }}"), "undeclared"),
        (lambda d: d["templates"]["receipt"]["email"].update(body="{% if %}"), "'receipt.email'"),
        (
            lambda d: d["templates"]["receipt"]["sms"].update(body="{{ comment }}"),
            "does not provide",
        ),
        (lambda d: d["templates"]["rejected"].update(events=[events.DOSSIER_SUBMITTED]), "already"),
        (lambda d: d["templates"]["receipt"].update(events=["vn.x.y.v1"]), "does not consume"),
        (lambda d: d["templates"]["receipt"].update(colour="blue"), "unknown key"),
        (lambda d: d["variables"]["comment"].update(sms_max_length=0), "variable 'comment'"),
    ],
)
def test_invalid_catalogues_are_refused_at_load(mutate, message: str) -> None:
    doc = copy.deepcopy(SHIPPED)
    mutate(doc)
    with pytest.raises(TemplateCatalogueError, match=message):
        load(doc)


def test_load_reads_a_file_and_names_a_missing_one(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(SHIPPED, allow_unicode=True), encoding="utf-8")
    assert TemplateCatalogue.load(path, segment_limit=LIMIT).templates
    with pytest.raises(TemplateCatalogueError, match="cannot read"):
        TemplateCatalogue.load(tmp_path / "missing.yaml", segment_limit=LIMIT)


def test_every_consumed_event_with_a_template_is_provided_for() -> None:
    catalogue = load()
    for t in catalogue.templates.values():
        for e in t.events:
            assert e in PROVIDED_VARIABLES
