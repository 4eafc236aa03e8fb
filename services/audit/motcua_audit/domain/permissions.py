"""Who may call what on the audit log: the audit service's authorisation policy.

Reading proofs, tree heads and public keys is open to every authenticated caller (they reveal
hashes only). So is a document's proof (GetDocumentProof): to ask, one must hold the paper
(its SHA-256 is the question), and the entry returned says nothing the paper does not (its
id, dossier code and issuing service), so a citizen or a court checks a paper with any token.
Other entry contents are for admins and services (any entry) and officers (the trails of
their own agency's dossiers); recording an access is for officers, admins and services;
listing entries and signing a head on demand are for admins and services. (Whom an access
record may name as its actor is :func:`~motcua_audit.domain.access.acting_actor`'s rule.)

Pure decisions on the kit's plain ``Principal`` dataclass; entrypoints call them first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from motcua_kit.errors import PermissionDenied

if TYPE_CHECKING:
    from motcua_kit.auth import Principal

RECORDERS = ("officer", "admin", "service")
"""Who records accesses and reads dossier trails (officers: their own agency's only)."""
OPERATORS = ("admin", "service")
"""Who reads any entry, lists the log and signs heads on demand."""


def require_recorder(principal: Principal) -> None:
    """Recording an access, and reading a trail, needs an officer, an admin or a service."""
    principal.require_any(*RECORDERS)


def require_operator(principal: Principal) -> None:
    """Listing entries and signing a head on demand needs an admin or a service."""
    principal.require_any(*OPERATORS)


def check_trail_agency(principal: Principal, dossier_code: str) -> None:
    """An officer reads only the trails of their own agency's dossiers (the code's prefix)."""
    if not principal.has_any(*OPERATORS) and dossier_code.split("-", 1)[0] != principal.agency_code:
        raise PermissionDenied("an officer reads only the trails of their own agency")
