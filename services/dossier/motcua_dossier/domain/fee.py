"""Which payment may settle a dossier's fee (lệ phí): pure rules, no I/O (ADR 0022).

A dossier leaves "payment required" only for a success that matches its own open fee request:
a payment the payment service announced for this dossier while the fee was asked for, of the
dossier's own agency and exactly the dossier's fee. Anything else is refused — recorded, never
applied — so a payment made by mistake or by abuse can neither move the dossier nor block its
citizen from paying the right fee.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from motcua_dossier.domain.dossier import Dossier, Status


class PaymentRefusal(Enum):
    """Why a payment does not settle the dossier; the value is the metric and event label."""

    UNKNOWN_DOSSIER = "unknown_dossier"
    OTHER_DOSSIER = "other_dossier"  # the payment names another dossier than the event's key
    NO_FEE = "no_fee"
    NOT_REQUESTED = "not_requested"  # the dossier is not in "payment required"
    AGENCY = "agency"
    AMOUNT = "amount"
    UNKNOWN_PAYMENT = "unknown_payment"  # never announced for this dossier's fee request


@dataclass(frozen=True)
class PaymentClaim:
    """What a payment event says of itself."""

    payment_id: str
    dossier_code: str
    agency_code: str
    amount_vnd: int


def payment_refusal(
    dossier: Dossier | None, claim: PaymentClaim, *, announced: bool
) -> PaymentRefusal | None:
    """None when ``claim`` matches the dossier's open fee request; else why it does not.

    ``announced``: the payment service announced this payment id for this dossier's request
    (pass True to check an announcement itself).
    """
    if dossier is None:
        return PaymentRefusal.UNKNOWN_DOSSIER
    if claim.dossier_code != dossier.code:
        return PaymentRefusal.OTHER_DOSSIER
    if not dossier.fee_vnd:
        return PaymentRefusal.NO_FEE
    if dossier.status != Status.PAYMENT_REQUIRED:
        return PaymentRefusal.NOT_REQUESTED
    if claim.agency_code != dossier.agency_code:
        return PaymentRefusal.AGENCY
    if claim.amount_vnd != dossier.fee_vnd:
        return PaymentRefusal.AMOUNT
    if not announced:
        return PaymentRefusal.UNKNOWN_PAYMENT
    return None
