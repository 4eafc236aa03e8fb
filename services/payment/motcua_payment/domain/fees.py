"""What the payment service knows of a dossier's fee, and who may ask to pay it: pure Python.

The facts come from the dossier service's own events — ``submitted`` makes a dossier known,
``payment_requested`` opens its fee request with the amount and the agency, and the dossier
leaving "payment required" (paid, withdrawn, stopped) closes it. A caller of ``CreatePayment``
names the dossier and nothing more that counts: the amount, the agency and the payer are taken
from the fact, and whatever the caller says of them must agree with it (ADR 0022).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from enum import Enum
from typing import Protocol

from motcua_kit.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from motcua_payment.domain.payment import (
    Payer,
    PaymentRequest,
    format_vnd,
    normalise_text,
    validate_agency_code,
    validate_amount,
    validate_dossier_code,
)


class FeeState(Enum):
    """Where a dossier's fee request stands, as the dossier's events told it."""

    NONE = "none"  # the dossier is known; no fee has been asked for
    OPEN = "open"  # the dossier is in "payment required": its fee may be paid
    CLOSED = "closed"  # it left "payment required" (paid, withdrawn, stopped)


@dataclass(frozen=True)
class DossierFee:
    """One dossier as the payment service knows it: its agency, applicant and fee request."""

    dossier_code: str
    agency_code: str
    procedure_code: str
    payer: Payer
    state: FeeState = FeeState.NONE
    amount_vnd: int | None = None
    request_event_id: str = ""

    def requested(self, amount_vnd: int, event_id: str, payer: Payer) -> DossierFee:
        """The dossier asked for its fee (again): the request is open for this amount."""
        return replace(
            self,
            state=FeeState.OPEN,
            amount_vnd=validate_amount("dossier.fee_vnd", amount_vnd),
            request_event_id=event_id,
            payer=payer,
        )

    def closed(self) -> DossierFee:
        return replace(self, state=FeeState.CLOSED) if self.state is FeeState.OPEN else self


@dataclass(frozen=True)
class PaymentOrder:
    """What a caller of ``CreatePayment`` asks for. Only the dossier code chooses anything;
    agency, amount and payer citizen ID may be left empty, and if given must be the fact's."""

    dossier_code: str
    agency_code: str = ""
    amount_vnd: int = 0
    description: str = ""
    payer_citizen_id: str = ""

    @classmethod
    def validated(
        cls,
        *,
        dossier_code: str,
        agency_code: str = "",
        amount_vnd: object = 0,
        description: str = "",
        payer_citizen_id: str = "",
    ) -> PaymentOrder:
        code = validate_dossier_code("dossier_code", dossier_code)
        agency = validate_agency_code("agency_code", agency_code) if agency_code.strip() else ""
        amount = 0 if amount_vnd == 0 else validate_amount("amount_vnd", amount_vnd)
        if payer_citizen_id.strip():
            # Only to compare with the applicant; Payer.validated checks its shape.
            payer_citizen_id = Payer.validated("-", payer_citizen_id).citizen_id
        return cls(code, agency, amount, normalise_text(description), payer_citizen_id)

    def fingerprint(self) -> str:
        """SHA-256 of the caller's normalised body: what "the same body" means for idempotency."""
        body = json.dumps(asdict(self), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(body.encode()).hexdigest()


class Caller(Protocol):
    """The authenticated caller, as the access rules need it."""

    @property
    def roles(self) -> frozenset[str]: ...
    @property
    def agency_code(self) -> str: ...
    @property
    def citizen_id(self) -> str: ...


def authorise_payment_for(caller: Caller, fee: DossierFee | None, dossier_code: str) -> DossierFee:
    """May this caller ask to pay this dossier's fee? Unknown dossiers are NOT_FOUND."""
    if fee is None:
        raise NotFound(f"dossier {dossier_code} not found")
    roles = caller.roles
    if roles & {"admin", "service"}:
        return fee
    if "officer" in roles:
        if caller.agency_code != fee.agency_code:
            raise PermissionDenied(
                f"an officer of {caller.agency_code or 'no agency'} cannot request "
                f"payments for agency {fee.agency_code}"
            )
        return fee
    if "citizen" in roles:
        if not caller.citizen_id or caller.citizen_id != fee.payer.citizen_id:
            raise PermissionDenied("a citizen can pay only for their own dossiers")
        return fee
    raise PermissionDenied("this call needs one of the roles: citizen, officer, admin, service")


def payment_request(order: PaymentOrder, fee: DossierFee) -> PaymentRequest:
    """The payment the fact allows: its amount, agency and payer, never the caller's."""
    code = fee.dossier_code
    if order.agency_code and order.agency_code != fee.agency_code:
        raise InvalidArgument(
            "agency_code", f"must be the dossier's agency {fee.agency_code}, or empty"
        )
    if fee.state is not FeeState.OPEN or fee.amount_vnd is None:
        raise FailedPrecondition(
            f"dossier {code} has no open fee request: its fee can be paid only while the "
            "dossier is in 'payment required'"
        )
    if order.amount_vnd and order.amount_vnd != fee.amount_vnd:
        raise InvalidArgument(
            "amount_vnd", f"must be the dossier's fee, {format_vnd(fee.amount_vnd)}, or 0"
        )
    if order.payer_citizen_id and order.payer_citizen_id != fee.payer.citizen_id:
        raise InvalidArgument("payer.citizen_id", "must be the dossier's applicant, or empty")
    return PaymentRequest.validated(
        dossier_code=code,
        agency_code=fee.agency_code,
        amount_vnd=fee.amount_vnd,
        description=order.description,
        payer=fee.payer,
    )
