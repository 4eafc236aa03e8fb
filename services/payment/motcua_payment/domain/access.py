"""Who may see and do what with payments: pure policy over the authenticated caller.

The caller is described by a protocol (the kit's ``Principal`` fits it), so the rules need no
token library and are decided here, never in an adapter or the service object.
"""

from __future__ import annotations

from typing import Protocol

from motcua_payment.domain.payment import Actor, Payment


class Caller(Protocol):
    """The authenticated caller, as the access rules need it."""

    @property
    def subject(self) -> str: ...
    @property
    def roles(self) -> frozenset[str]: ...
    @property
    def agency_code(self) -> str: ...
    @property
    def citizen_id(self) -> str: ...
    @property
    def primary_role(self) -> str: ...


def actor_of(caller: Caller) -> Actor:
    """The actor a caller's change is recorded and published under."""
    return Actor(caller.subject, caller.primary_role, caller.agency_code)


def may_see(caller: Caller, payment: Payment) -> bool:
    """Admins and services see all; an officer, their agency's; a citizen, their own.

    A payment the caller may not see is reported as not found, so its existence leaks nothing.
    """
    if caller.roles & {"admin", "service"}:
        return True
    if "officer" in caller.roles and caller.agency_code == payment.agency_code:
        return True
    return bool(
        "citizen" in caller.roles
        and caller.citizen_id
        and caller.citizen_id == payment.payer.citizen_id
    )


def idempotency_scope(caller: Caller, key: str) -> str:
    """A caller's idempotency key is theirs alone: another caller's same key is another call."""
    return f"{caller.subject}\x1f{key}"
