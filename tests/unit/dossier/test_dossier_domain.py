"""Filing rules of the dossier domain, without any I/O."""

from __future__ import annotations

from datetime import date

import pytest

from motcua_dossier.domain.dossier import (
    Applicant,
    DocumentInput,
    dossier_code,
    normalise_phone,
    validate_submission,
)
from motcua_kit.errors import InvalidArgument

GOOD = dict(
    full_name="Nguyễn Văn An",
    citizen_id="079203004567",
    phone="0905123456",
    email="an@example.vn",
    address="Hội An, Đà Nẵng",
)


def _applicant(**kw: str) -> Applicant:
    return Applicant.validated(**{**GOOD, **kw})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("citizen_id", "1234567890"),
        ("citizen_id", "12345678901a"),
        ("citizen_id", "1234567890123"),
        ("phone", "0123456789"),
        ("phone", "090512345"),
        ("email", "no-at-sign"),
        ("full_name", ""),
        ("address", "\u0000x"),
    ],
)
def test_invalid_applicant_fields_are_named(field: str, value: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        _applicant(**{field: value})
    assert info.value.field == f"applicant.{field}"


@pytest.mark.parametrize("raw", ["0905123456", "+84905123456", "84905123456", "090 512 3456"])
def test_phone_is_stored_in_national_form(raw: str) -> None:
    assert normalise_phone("p", raw) == "0905123456"


def test_name_is_nfc_and_trimmed() -> None:
    assert _applicant(full_name="  Nguye\u0302\u0303n   An ").full_name == "Nguyễn An"


def test_fingerprint_ignores_the_key_but_not_the_body() -> None:
    def sub(key: str, name: str = "a.pdf"):
        return validate_submission(
            procedure_code="HT-001",
            applicant=_applicant(),
            documents=[DocumentInput(name, "application/pdf", 10, "a" * 64)],
            channel=1,
            idempotency_key=key,
        )

    assert sub("k1").fingerprint() == sub("k2").fingerprint()
    assert sub("k1").fingerprint() != sub("k1", "b.pdf").fingerprint()


def test_dossier_code_is_agency_date_and_four_digit_sequence() -> None:
    assert dossier_code("STP", date(2026, 11, 29), 7) == "STP-261129-0007"
    assert dossier_code("STP", date(2026, 1, 2), 12345) == "STP-260102-12345"
