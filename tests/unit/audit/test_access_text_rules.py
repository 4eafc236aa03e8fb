"""Issue 14, points 3 and 5, in the audit service: an access record's citizen ID takes ASCII
digits only, its purpose and actor no invisible characters, and a page token no other digits."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from motcua.audit.v1 import audit_pb2
from motcua_audit.adapters.grpc_api import AuditApi
from motcua_audit.domain.access import validate_access
from motcua_audit.domain.entry import Actor, Role
from motcua_kit.auth import Principal, reset_principal, set_principal
from motcua_kit.errors import InvalidArgument

NOW = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)


def access(**changes: Any) -> InvalidArgument:
    fields: dict[str, Any] = dict(
        record_id="r-1",
        citizen_id="001203004567",
        dossier_code="STP-261129-0001",
        purpose="Xử lý hồ sơ",
        resource="applicant.phone",
        on_behalf_of=None,
        accessed_at=None,
        now=NOW,
    )
    with pytest.raises(InvalidArgument) as info:
        validate_access(**{**fields, **changes})
    return info.value


@pytest.mark.parametrize("citizen_id", ["００１２０３００４５６７", "٠٠١٢٠٣٠٠٤٥٦٧"])
def test_a_citizen_id_in_other_digits_is_refused_naming_the_field(citizen_id: str) -> None:
    assert access(citizen_id=citizen_id).field == "citizen_id"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"purpose": "Xử lý\u202e hồ sơ"}, "purpose"),
        ({"resource": "applicant\u200b.phone"}, "resource"),
        ({"on_behalf_of": Actor("officer\u202e-1", Role.OFFICER, "STP")}, "on_behalf_of.subject"),
    ],
)
def test_invisible_characters_are_refused_naming_the_field(
    changes: dict[str, Any], field: str
) -> None:
    assert access(**changes).field == field


class NoEntries:
    def entry_page(self, *args: object) -> Any:
        raise AssertionError("a refused page token must not reach the log")


@pytest.fixture
def admin() -> Iterator[None]:
    token = set_principal(Principal("admin-1", frozenset({"admin"})))
    yield
    reset_principal(token)


@pytest.mark.usefixtures("admin")
@pytest.mark.parametrize("page_token", ["٧", "７", " 7", "+7", "1_0", "9" * 40])
def test_a_page_token_in_anything_but_ascii_digits_is_refused(page_token: str) -> None:
    api = AuditApi(NoEntries())
    with pytest.raises(InvalidArgument) as info:
        api.GetEntries(audit_pb2.GetEntriesRequest(page_token=page_token), None)
    assert info.value.field == "page_token"
