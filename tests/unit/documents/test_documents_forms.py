"""The forms as data and their rendering: the circular's numbering and titles, every form's
text extracted by poppler's pdftotext equal to the NFC strings, fonts embedded, output
deterministic, the QR payload, and field-naming errors for bad content.
"""

from __future__ import annotations

import hashlib
import subprocess
import unicodedata
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from unit.documents.support import KINDS, content_data, pdftotext

from motcua_documents import templates
from motcua_documents.model import VIETNAM, FormContent, FormError, FormKind
from motcua_documents.render import RenderError, qr_payload, render, render_body

TITLES = {
    "receipt": ("01", "GIẤY TIẾP NHẬN HỒ SƠ VÀ HẸN TRẢ KẾT QUẢ"),
    "supplement": ("02", "PHIẾU YÊU CẦU BỔ SUNG, HOÀN THIỆN HỒ SƠ"),
    "refusal": ("03", "PHIẾU TỪ CHỐI TIẾP NHẬN GIẢI QUYẾT HỒ SƠ"),
    "apology": ("04", "PHIẾU XIN LỖI VÀ HẸN LẠI NGÀY TRẢ KẾT QUẢ"),
    "control": ("05", "PHIẾU KIỂM SOÁT QUÁ TRÌNH GIẢI QUYẾT HỒ SƠ"),
}

RECEIPT_TEXT = """\
Mẫu số 01
ỦY BAN NHÂN DÂN TỈNH QUẢNG NGÃI
TRUNG TÂM PHỤC VỤ HÀNH CHÍNH
CÔNG TỈNH
Số: 125/TTPVHCC
CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM
Độc lập - Tự do - Hạnh phúc
Quảng Ngãi, ngày 15 tháng 03 năm 2026
GIẤY TIẾP NHẬN HỒ SƠ VÀ HẸN TRẢ KẾT QUẢ
Mã hồ sơ: 000.00.17.H48-260315-0001
Trung tâm Phục vụ hành chính công tỉnh tiếp nhận hồ sơ của: Nguyễn Thị
Hương
Địa chỉ: Số 12 đường Lê Lợi, phường Nghĩa Chánh
Số điện thoại: 0905123456
Thư điện tử: huong.nguyen@example.vn
Nội dung yêu cầu giải quyết: Cấp phiếu lý lịch tư pháp cho công dân Việt
Nam
1. Thành phần hồ sơ nộp gồm:
1. Tờ khai yêu cầu cấp phiếu lý lịch tư pháp (bản chính): 1 bản
2. Căn cước công dân (bản sao): 1 bản
2. Số lượng hồ sơ: 1 bộ
3. Thời gian giải quyết hồ sơ theo quy định: 8 ngày làm việc
4. Thời gian nhận hồ sơ: 08 giờ 30 phút, ngày 15 tháng 03 năm 2026
5. Thời gian trả kết quả giải quyết hồ sơ: 16 giờ 00 phút, ngày 25 tháng 03
năm 2026
6. Đăng ký nhận kết quả tại: Bộ phận Tiếp nhận và Trả kết quả
NGƯỜI NỘP HỒ SƠ
(Ký và ghi rõ họ tên)
Nguyễn Thị Hương
NGƯỜI TIẾP NHẬN HỒ SƠ
(Ký và ghi rõ họ tên)
Trần Văn Đức
Chữ ký số của cơ quan: Trung tâm Phục vụ hành chính công tỉnh"""


def test_the_five_forms_numbered_as_in_the_circulars_annex() -> None:
    loaded = templates.load()
    assert {k.value: (f.form_number, f.title) for k, f in loaded.forms.items()} == TITLES
    assert loaded.header["nation"] == "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM"
    assert loaded.header["motto"] == "Độc lập - Tự do - Hạnh phúc"
    raw = Path(templates.__file__).with_name("forms.yaml").read_text("utf-8")
    assert unicodedata.is_normalized("NFC", raw)


def test_a_template_with_an_unknown_placeholder_is_refused_at_load() -> None:
    raw = Path(templates.__file__).with_name("forms.yaml").read_text("utf-8")
    broken = raw.replace("Mã hồ sơ: {dossier_code}", "Mã hồ sơ: {dosier_code}", 1)
    with pytest.raises(templates.TemplateError, match=r"forms.receipt.body\[0\].*dosier_code"):
        templates.parse(broken)


def test_the_receipt_extracts_exactly(tmp_path: Path) -> None:
    path = tmp_path / "receipt.pdf"
    path.write_bytes(render(FormContent.build(content_data("receipt"))).pdf)
    text = pdftotext(path).rstrip("\f\n")
    assert text == RECEIPT_TEXT
    assert unicodedata.is_normalized("NFC", text)


@pytest.mark.parametrize("kind", KINDS)
def test_every_form_extracts_as_drawn_with_fonts_embedded(kind: str, tmp_path: Path) -> None:
    rendering = render(FormContent.build(content_data(kind)))
    path = tmp_path / f"{kind}.pdf"
    path.write_bytes(rendering.pdf)
    text = pdftotext(path).rstrip("\f\n")
    assert text == rendering.text
    number, title = TITLES[kind]
    lines = text.splitlines()
    assert lines[0] == f"Mẫu số {number}" and title in lines
    assert "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM" in lines
    assert "Mã hồ sơ: 000.00.17.H48-260315-0001" in lines
    fonts = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True, check=True)
    rows = [r.split() for r in fonts.stdout.splitlines()[2:]]
    assert rows and all(r[-5:-3] == ["yes", "yes"] for r in rows), fonts.stdout  # emb, sub
    assert {r[0].split("+")[-1] for r in rows} == {"DejaVuSans", "DejaVuSans-Bold"}


def test_a_long_refusal_flows_onto_a_second_page(tmp_path: Path) -> None:
    reason = " ".join(["Hồ sơ chưa đáp ứng điều kiện theo quy định hiện hành."] * 30)
    rendering = render(FormContent.build(content_data("refusal", reason=reason)))
    assert max(p.page for p in rendering.lines) >= 1
    path = tmp_path / "long.pdf"
    path.write_bytes(rendering.pdf)
    assert pdftotext(path).replace("\f", "").rstrip("\n") == rendering.text


def test_output_is_deterministic_and_the_qr_holds_the_body_hash() -> None:
    content = FormContent.build(content_data("receipt"))
    first, second = render(content), render(content)
    assert first.pdf == second.pdf
    body = hashlib.sha256(render_body(content)).hexdigest()
    assert first.body_sha256 == body and first.pdf != render_body(content)  # QR drawn
    assert first.qr_payload == qr_payload(content.dossier_code, body)
    assert first.qr_payload == (f"motcua:document?dossier=000.00.17.H48-260315-0001&sha256={body}")
    assert b"/CreationDate (D:20260315000000+07'00')" in first.pdf
    other = render(FormContent.build(content_data("receipt", number="126/TTPVHCC")))
    assert other.pdf != first.pdf and other.body_sha256 != first.body_sha256


def test_a_character_the_font_lacks_is_refused_not_dropped() -> None:
    applicant = {**content_data("receipt")["applicant"], "name": "Nguyễn 漢"}
    with pytest.raises(RenderError, match="U\\+6F22"):
        render(FormContent.build(content_data("receipt", applicant=applicant)))


def test_text_is_normalised_to_nfc_on_the_way_in() -> None:
    decomposed = unicodedata.normalize("NFD", "Nguyễn Thị Hương")
    applicant = {**content_data("receipt")["applicant"], "name": decomposed}
    content = FormContent.build(content_data("receipt", applicant=applicant))
    assert content.applicant.name == "Nguyễn Thị Hương"
    assert unicodedata.is_normalized("NFC", content.applicant.name)


def _bad(**over: Any) -> dict[str, Any]:
    return {**content_data("receipt"), **over}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (_bad(kind="letter"), "kind"),
        (_bad(dossier_code="bad code!"), "dossier_code"),
        (_bad(agency={"code": "X", "name": "a", "parent": "b", "place": "c"}), "agency.code"),
        (_bad(applicant={"name": " "}), "applicant.name"),
        (_bad(applicant={"name": "A", "phone": "call me"}), "applicant.phone"),
        (_bad(applicant={"name": "A", "email": "nope"}), "applicant.email"),
        (_bad(received_at=datetime(2026, 3, 15, 8, 30)), "received_at"),
        (_bad(appointment=datetime(2026, 3, 1, tzinfo=VIETNAM)), "appointment"),
        (_bad(working_days=0), "working_days"),
        (
            _bad(documents=[{"name": "Tờ khai", "kind": "bản chính", "copies": 0}]),
            "documents[0].copies",
        ),
        (_bad(documents=[{"kind": "bản chính", "copies": 1}]), "documents[0].name"),
        (_bad(procedure="x" * 301), "procedure"),
        (_bad(reason="a\u0000b"), "reason"),
        (_bad(colour="red"), "colour"),
        (
            content_data(
                "control",
                handovers=[
                    {
                        "giver": "A",
                        "receiver": "B",
                        "at": datetime(2026, 3, 15, tzinfo=VIETNAM),
                        "outcome": "Sớm",
                    }
                ],
            ),
            "handovers[0].outcome",
        ),
        (
            content_data("apology", new_appointment=datetime(2026, 3, 20, tzinfo=VIETNAM)),
            "new_appointment",
        ),
    ],
)
def test_bad_content_names_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(FormError) as caught:
        FormContent.build(data)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("kind", "missing"),
    [
        ("refusal", "reason"),
        ("supplement", "requested"),
        ("apology", "new_appointment"),
        ("control", "handovers"),
    ],
)
def test_each_form_requires_its_own_fields(kind: str, missing: str) -> None:
    data = content_data(kind)
    data.pop(missing, None)
    content = FormContent.build(data)
    with pytest.raises(FormError, match=f"^{missing}: is required on the {kind} form"):
        render(content)
    assert FormKind(kind) is content.kind
