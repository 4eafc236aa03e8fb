"""Issue 14, points 3 and 5: a dossier is refused, naming the field, for a citizen ID or phone
in other scripts' digits, and for invisible characters or emoji in the applicant's name or
address. Driven through the gRPC adapter, as a caller would; the service is never reached."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from motcua.dossier.v1 import dossier_pb2
from motcua_dossier.adapters.grpc_api import DossierApi
from motcua_dossier.domain.dossier import Applicant, validate_comment
from motcua_kit.auth import Principal, reset_principal, set_principal
from motcua_kit.errors import InvalidArgument

GOOD = dict(
    full_name="Nguyễn Văn An",
    citizen_id="001203004567",
    phone="0905123456",
    email="an@example.vn",
    address="Số 12/3 ngõ 45, Hội An, Quảng Nam",
)


class UnreachableService:
    """Stands in for DossierService: a refused request must never get this far."""

    def __getattr__(self, name: str) -> Any:
        def called(*args: object, **kw: object) -> None:
            raise AssertionError(f"the service's {name} was called for a refused request")

        return called


def submit(**applicant: str) -> InvalidArgument:
    request = dossier_pb2.SubmitDossierRequest(
        procedure_code="HT-001",
        applicant=dossier_pb2.Applicant(**{**GOOD, **applicant}),
        documents=[
            dossier_pb2.Document(
                name="to-khai.pdf", media_type="application/pdf", size_bytes=10, sha256="a" * 64
            )
        ],
        channel=dossier_pb2.CHANNEL_ONLINE,
        idempotency_key="k-1",
    )
    with pytest.raises(InvalidArgument) as info:
        DossierApi(UnreachableService()).SubmitDossier(request, None)
    return info.value


@pytest.mark.parametrize(
    "citizen_id",
    [
        "００１２０３００４５６７",  # fullwidth, as observed in issue 14
        "٠٠١٢٠٣٠٠٤٥٦٧",  # Arabic-Indic
        "۰۰۱۲۰۳۰۰۴۵۶۷",  # Extended Arabic-Indic
        "0012030045６７",  # two fullwidth digits at the end
    ],
)
def test_a_citizen_id_in_other_digits_is_refused_naming_the_field(citizen_id: str) -> None:
    error = submit(citizen_id=citizen_id)
    assert error.field == "applicant.citizen_id"
    assert "ASCII digit" in error.reason


@pytest.mark.parametrize("phone", ["０９０５１２３４５６", "٠٩٠٥١٢٣٤٥٦", "+84 ９０5 123 456"])
def test_a_phone_in_other_digits_is_refused_naming_the_field(phone: str) -> None:
    assert submit(phone=phone).field == "applicant.phone"


@pytest.mark.parametrize(
    "name",
    [
        "Nguyễn \u202eVăn An",  # RIGHT-TO-LEFT OVERRIDE, as observed
        "Nguyễn\u200bVăn An",  # ZERO WIDTH SPACE, as observed
        "Nguyễn Văn An\u2067",  # RIGHT-TO-LEFT ISOLATE
        "Nguy\u00adễn Văn An",  # SOFT HYPHEN
    ],
)
def test_bidi_and_zero_width_characters_in_the_name_are_refused_naming_it(name: str) -> None:
    error = submit(full_name=name)
    assert error.field == "applicant.full_name"
    assert "U+" in error.reason and "format characters" in error.reason


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("full_name", "Nguyễn Văn An 😀"),
        ("address", "Số 12 Lê Lợi 🏠, Huế"),
        ("address", "Số 12 Lê Lợi\u200d, Huế"),
        ("address", "Số １２ Lê Lợi, Huế"),
    ],
)
def test_emoji_and_invisible_characters_are_refused_in_name_and_address(
    field: str, value: str
) -> None:
    assert submit(**{field: value}).field == f"applicant.{field}"


def test_a_document_name_may_not_hide_its_extension_behind_a_bidi_override() -> None:
    request = dossier_pb2.SubmitDossierRequest(
        procedure_code="HT-001",
        applicant=dossier_pb2.Applicant(**GOOD),
        documents=[
            dossier_pb2.Document(
                name="to-khai\u202efdp.exe",
                media_type="application/pdf",
                size_bytes=10,
                sha256="a" * 64,
            )
        ],
        channel=dossier_pb2.CHANNEL_ONLINE,
        idempotency_key="k-1",
    )
    with pytest.raises(InvalidArgument) as info:
        DossierApi(UnreachableService()).SubmitDossier(request, None)
    assert info.value.field == "documents[0].name"


@pytest.fixture
def officer() -> Iterator[None]:
    token = set_principal(Principal("officer-1", frozenset({"officer"}), agency_code="STP"))
    yield
    reset_principal(token)


@pytest.mark.usefixtures("officer")
def test_comments_and_reasons_refuse_bidi_controls_but_keep_emoji() -> None:
    api = DossierApi(UnreachableService())
    with pytest.raises(InvalidArgument) as info:
        api.TransitionDossier(
            dossier_pb2.TransitionDossierRequest(
                code="STP-261129-0001", action="request_supplement", comment="Thiếu\u202e bản sao"
            ),
            None,
        )
    assert info.value.field == "comment"
    with pytest.raises(InvalidArgument) as info:
        api.WithdrawDossier(
            dossier_pb2.WithdrawDossierRequest(code="STP-261129-0001", reason="nhầm\u200b hồ sơ"),
            None,
        )
    assert info.value.field == "reason"
    assert validate_comment("comment", "  Đã đủ   giấy tờ 👍 ") == "Đã đủ giấy tờ 👍"


def test_a_clean_vietnamese_applicant_is_accepted_in_nfc() -> None:
    applicant = Applicant.validated(
        **{**GOOD, "full_name": "Nguye\u0302\u0303n Thị H'Hen", "phone": "+84 905 123 456"}
    )
    assert applicant.full_name == "Nguyễn Thị H'Hen"
    assert applicant.citizen_id == "001203004567" and applicant.phone == "0905123456"
