"""Who may see which notifications and set whose opt-outs, and how much one listing may ask.

Admins and services see everything; an officer sees their agency's notifications; a citizen
their own. Only a citizen themself (or an admin or service) sets a citizen's opt-outs. A
notification the caller may not see is "not found" to them, so its existence is not told.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from motcua_kit.errors import InvalidArgument, PermissionDenied
from motcua_kit.text import citizen_id as valid_citizen_id
from motcua_kit.text import is_ascii_number
from motcua_notify.domain.notification import Notification

if TYPE_CHECKING:
    from motcua_kit.auth import Principal

MAX_PAGE = 100
DEFAULT_PAGE = 50


@dataclass(frozen=True)
class ListScope:
    """Which of a dossier's notifications a listing returns (None: no such filter)."""

    agency_code: str | None
    citizen_id: str | None
    everything: bool


def list_scope(principal: Principal) -> ListScope:
    """The filter a listing applies for ``principal`` (each role held widens it)."""
    return ListScope(
        agency_code=principal.agency_code if "officer" in principal.roles else None,
        citizen_id=principal.citizen_id if "citizen" in principal.roles else None,
        everything=principal.has_any("admin", "service"),
    )


def page_of(page_size: int, page_token: str) -> tuple[int, int]:
    """(how many, after which row) a listing asks for: at most ``MAX_PAGE`` a page, and a
    token only as this API returned it."""
    if page_size < 0 or page_size > MAX_PAGE:
        raise InvalidArgument("page_size", f"must be between 0 and {MAX_PAGE}")
    size = page_size or DEFAULT_PAGE
    after = 0
    if page_token:
        if not is_ascii_number(page_token):
            raise InvalidArgument("page_token", "is not a token this API returned")
        after = int(page_token)
    return size, after


def may_see(principal: Principal, n: Notification) -> bool:
    if principal.has_any("admin", "service"):
        return True
    if "officer" in principal.roles and principal.agency_code == n.agency_code:
        return True
    return (
        "citizen" in principal.roles
        and bool(n.citizen_id)
        and (principal.citizen_id == n.citizen_id)
    )


def opt_out_subject(principal: Principal, citizen_id: str) -> str:
    """The (validated) citizen whose opt-outs ``principal`` reads or sets; refused otherwise."""
    cid = valid_citizen_id("citizen_id", citizen_id)
    if principal.has_any("admin", "service"):
        return cid
    if "citizen" in principal.roles and principal.citizen_id == cid:
        return cid
    raise PermissionDenied("a citizen may set only their own opt-outs")
