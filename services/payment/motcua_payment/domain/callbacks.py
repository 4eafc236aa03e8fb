"""What a gateway says about a payment, and the rules a callback must pass before it counts.

A gateway adapter turns a callback's parameters into a :class:`Notice` only after checking its
signature; the service then applies the generic rules here (fresh timestamp, known reference,
same amount and currency, not seen before). Any failure is a :class:`CallbackRejected` with one
:class:`RejectionReason` — the label of ``motcua_payment_callback_rejections_total``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from motcua_payment.domain.payment import Payment
from motcua_payment.domain.states import Trigger


class RejectionReason(Enum):
    """Why a callback was refused; values are the metric's ``reason`` label."""

    BAD_SIGNATURE = "bad_signature"  # missing or wrong HMAC
    MALFORMED = "malformed"  # signed, but a field is missing, repeated or unreadable
    STALE_TIMESTAMP = "stale_timestamp"  # outside the tolerance window
    REPLAY = "replay"  # this gateway transaction was already applied
    UNKNOWN_REFERENCE = "unknown_reference"  # no payment has this id
    AMOUNT_MISMATCH = "amount_mismatch"
    CURRENCY_MISMATCH = "currency_mismatch"
    STATE_CONFLICT = "state_conflict"  # e.g. "paid" for a payment already expired or cancelled


class CallbackRejected(Exception):
    """A callback refused; ``detail`` is safe to log (no secrets, no signature)."""

    def __init__(self, reason: RejectionReason, detail: str, reference: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
        self.reference = reference


class Outcome(Enum):
    """The gateway's view of one payment."""

    PAID = "paid"
    FAILED = "failed"
    PENDING = "pending"  # the payer has not finished
    NOT_FOUND = "not_found"  # the payer never opened the payment page
    CANCELLED = "cancelled"  # the gateway will no longer take money for it


@dataclass(frozen=True)
class Notice:
    """A gateway's signed word about one payment (from a callback or a query)."""

    reference: str  # our payment id (the gateway's order reference)
    outcome: Outcome
    transaction_id: str = ""  # the gateway's transaction number: the replay nonce
    amount_vnd: int | None = None
    currency: str = ""
    occurred_at: datetime | None = None
    code: str = ""  # the gateway's result code, e.g. "00", "24"

    @property
    def settles(self) -> bool:
        return self.outcome in (Outcome.PAID, Outcome.FAILED)


def check_fresh(notice: Notice, now: datetime, tolerance: timedelta) -> None:
    """Refuse a notice whose timestamp is outside ``now ± tolerance`` (stale or forged clock)."""
    if notice.occurred_at is None:
        raise CallbackRejected(
            RejectionReason.MALFORMED, "the notification has no timestamp", notice.reference
        )
    skew = abs(now - notice.occurred_at)
    if skew > tolerance:
        raise CallbackRejected(
            RejectionReason.STALE_TIMESTAMP,
            f"timestamp is {int(skew.total_seconds())}s away from now "
            f"(tolerance {int(tolerance.total_seconds())}s)",
            notice.reference,
        )


def check_matches(notice: Notice, payment: Payment) -> None:
    """Refuse a notice about other money than the payment's."""
    if notice.currency != payment.currency:
        raise CallbackRejected(
            RejectionReason.CURRENCY_MISMATCH,
            f"currency {notice.currency!r} is not the payment's {payment.currency}",
            payment.id,
        )
    if notice.amount_vnd != payment.amount_vnd:
        raise CallbackRejected(
            RejectionReason.AMOUNT_MISMATCH,
            f"amount {notice.amount_vnd} VND is not the payment's {payment.amount_vnd} VND",
            payment.id,
        )


def settling_trigger(notice: Notice) -> Trigger:
    """The move a settling notice asks for."""
    if notice.outcome is Outcome.PAID:
        return Trigger.SUCCEED
    if notice.outcome is Outcome.FAILED:
        return Trigger.FAIL
    raise ValueError(f"a {notice.outcome.value} notice settles nothing")
