"""Sample content of each form: the pictures in docs/forms and the tests draw the same papers.

Invented people and places (no real citizen), dated in March 2026, Vietnam time.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from motcua_documents.model import VIETNAM

KINDS = ("receipt", "supplement", "refusal", "apology", "control")

AGENCY = {
    "code": "so-tu-phap-qng",
    "name": "Trung tâm Phục vụ hành chính công tỉnh",
    "parent": "Ủy ban nhân dân tỉnh Quảng Ngãi",
    "place": "Quảng Ngãi",
}
OTHER_AGENCY = {**AGENCY, "code": "ubnd-xa-nghia-dung", "name": "UBND xã Nghĩa Dũng"}


def base(kind: str, **over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "kind": kind,
        "number": "125/TTPVHCC",
        "agency": AGENCY,
        "dossier_code": "000.00.17.H48-260315-0001",
        "procedure": "Cấp phiếu lý lịch tư pháp cho công dân Việt Nam",
        "applicant": {
            "name": "Nguyễn Thị Hương",
            "address": "Số 12 đường Lê Lợi, phường Nghĩa Chánh",
            "phone": "0905123456",
            "email": "huong.nguyen@example.vn",
        },
        "officer": {"name": "Trần Văn Đức", "title": "Công chức tiếp nhận", "phone": "02553822123"},
        "received_at": datetime(2026, 3, 15, 8, 30, tzinfo=VIETNAM),
        "issued_on": date(2026, 3, 15),
        "documents": [
            {"name": "Tờ khai yêu cầu cấp phiếu lý lịch tư pháp", "kind": "bản chính", "copies": 1},
            {"name": "Căn cước công dân", "kind": "bản sao", "copies": 1},
        ],
        "appointment": datetime(2026, 3, 25, 16, 0, tzinfo=VIETNAM),
        "working_days": 8,
    }
    data.update(over)
    return data


SAMPLES: dict[str, dict[str, Any]] = {
    "receipt": base("receipt"),
    "supplement": base(
        "supplement",
        requested=["Bản sao giấy khai sinh có chứng thực", "Ảnh chân dung 4x6 chụp trong 6 tháng"],
        reason="Hồ sơ thiếu giấy tờ chứng minh nơi cư trú.",
    ),
    "refusal": base(
        "refusal",
        reason="Yêu cầu không thuộc thẩm quyền giải quyết của cơ quan; đề nghị ông/bà liên hệ "
        "Sở Tư pháp tỉnh Quảng Nam để được hướng dẫn tiếp.",
    ),
    "apology": base(
        "apology",
        issued_on=date(2026, 3, 25),
        new_appointment=datetime(2026, 3, 30, 10, 0, tzinfo=VIETNAM),
        reason="Cơ quan phối hợp chưa gửi kết quả xác minh đúng hạn.",
    ),
    "control": base(
        "control",
        issued_on=date(2026, 3, 16),
        handovers=[
            {
                "giver": "Bộ phận Tiếp nhận và Trả kết quả",
                "receiver": "Phòng Hành chính tư pháp",
                "at": datetime(2026, 3, 15, 9, 0, tzinfo=VIETNAM),
                "outcome": "Đúng hạn",
            },
            {
                "giver": "Phòng Hành chính tư pháp",
                "receiver": "Lãnh đạo Sở",
                "at": datetime(2026, 3, 16, 14, 15, tzinfo=VIETNAM),
                "outcome": "Trước hạn",
                "note": "Đã xác minh với công an huyện",
            },
        ],
    ),
}
