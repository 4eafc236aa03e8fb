"""Who may file, see, list and count which dossiers: the dossier service's authorisation policy.

Pure decisions on the authenticated caller (the kit's plain ``Principal`` dataclass), taken by
the use cases before data is touched, so that no adapter decides and every entrypoint applies
the same rule. A dossier the caller may not see is reported as missing, not as forbidden.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from motcua_dossier.domain.dossier import Dossier, Submission
from motcua_kit.errors import PermissionDenied

if TYPE_CHECKING:
    from motcua_kit.auth import Principal


def _unrestricted(principal: Principal) -> bool:
    """Admins and services act for every agency and applicant."""
    return principal.has_any("admin", "service")


def authorise_submit(principal: Principal, submission: Submission, agency: str) -> None:
    """An officer files for their own agency, a citizen with their own citizen ID."""
    if _unrestricted(principal):
        return
    if "officer" in principal.roles:
        if principal.agency_code != agency:
            raise PermissionDenied(
                f"an officer of {principal.agency_code or 'no agency'} cannot file "
                f"for agency {agency}"
            )
        return
    if "citizen" in principal.roles:
        if principal.citizen_id != submission.applicant.citizen_id:
            raise PermissionDenied("a citizen can file only with their own citizen ID")
        return
    raise PermissionDenied("this call needs one of the roles: citizen, officer, admin, service")


def may_see(principal: Principal, dossier: Dossier) -> bool:
    """An officer sees their agency's dossiers, a citizen the dossiers filed in their name."""
    if _unrestricted(principal):
        return True
    if "officer" in principal.roles and principal.agency_code == dossier.agency_code:
        return True
    return "citizen" in principal.roles and principal.citizen_id == dossier.applicant.citizen_id


def listing_scope(principal: Principal, agency_code: str, citizen_id: str) -> tuple[str, str]:
    """The (agency, applicant citizen ID) filters a listing is narrowed to: an officer's own
    agency, a citizen's own ID; asking for someone else's is refused, not silently narrowed."""
    if _unrestricted(principal):
        return agency_code, citizen_id
    if "officer" in principal.roles:
        if agency_code and agency_code != principal.agency_code:
            raise PermissionDenied("an officer lists only their own agency's dossiers")
        return principal.agency_code, citizen_id
    if "citizen" in principal.roles:
        if citizen_id not in ("", principal.citizen_id):
            raise PermissionDenied("a citizen lists only their own dossiers")
        return agency_code, principal.citizen_id
    raise PermissionDenied("listing dossiers needs a role")


def statistics_agency(principal: Principal, agency_code: str) -> str:
    """The agency whose statistics the caller gets: any (or all) for admins and services, the
    officer's own otherwise; citizens get none."""
    if _unrestricted(principal):
        return agency_code
    if "officer" not in principal.roles:
        raise PermissionDenied("statistics are for officers, admins and services")
    if agency_code and agency_code != principal.agency_code:
        raise PermissionDenied("an officer sees only their own agency's statistics")
    return principal.agency_code
