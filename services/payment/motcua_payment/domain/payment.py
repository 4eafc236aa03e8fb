"""Payments (thanh toán lệ phí), refunds and receipts: pure Python, no I/O.

Money is whole Vietnamese đồng held in ``int`` — VND has no minor unit, and a float never
touches an amount. A :class:`Payment` changes only through its methods, and each method asks
the transition table (:mod:`motcua_payment.domain.states`) first.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import uuid
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from enum import Enum
from typing import Any

from motcua_kit import text as text_rules
from motcua_kit.errors import FailedPrecondition, InvalidArgument
from motcua_kit.text import normalise_text as normalise_text  # one rule, re-exported
from motcua_payment.domain.states import (
    OPEN_STATES,
    PAYMENT_INITIAL,
    REFUND_INITIAL,
    PaymentState,
    RefundState,
    Trigger,
    next_state,
)

CURRENCY = "VND"
#: Above any fee in the catalogue by orders of magnitude; a typo guard, not a business limit.
MAX_AMOUNT_VND = 100_000_000_000
MAX_TEXT = 255

_DOSSIER_CODE = re.compile(r"[A-Z0-9][A-Z0-9._-]{0,39}")
_AGENCY_CODE = re.compile(r"[A-Z0-9][A-Z0-9_-]{0,19}")
_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,128}")
_PAYMENT_ID = re.compile(r"[0-9a-f]{32}")


_PAY_TOKEN = re.compile(r"[A-Za-z0-9_-]{12}")


def new_pay_token() -> str:
    """12 URL-safe characters (72 random bits): short enough for an SMS, unguessable."""
    return secrets.token_urlsafe(9)


def valid_pay_token(value: str) -> bool:
    return bool(_PAY_TOKEN.fullmatch(value))


def new_id() -> str:
    """A payment or refund id: 32 hex digits, also the gateway's order reference."""
    return uuid.uuid4().hex


def validate_amount(field: str, value: object) -> int:
    """A positive whole number of đồng. ``bool`` and ``float`` are refused, not rounded."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(field, "must be a whole number of đồng")
    if value <= 0:
        raise InvalidArgument(field, "must be greater than 0")
    if value > MAX_AMOUNT_VND:
        raise InvalidArgument(field, f"must be at most {MAX_AMOUNT_VND} VND")
    return value


def format_vnd(amount: int) -> str:
    """``150000`` → ``150.000 ₫`` (Vietnamese thousands separator)."""
    return f"{amount:,}".replace(",", ".") + " ₫"


def _text(field: str, value: str, *, required: bool, max_len: int = MAX_TEXT) -> str:
    """A description or reason: the kit's free-text rule (no control or bidi characters)."""
    return text_rules.free_text(field, value, max_len=max_len, required=required)


def validate_dossier_code(field: str, value: str) -> str:
    code = value.strip()
    if not code:
        raise InvalidArgument(field, "is required")
    if not _DOSSIER_CODE.fullmatch(code):
        raise InvalidArgument(field, "must look like <AGENCY>-<YYMMDD>-<NNNN>")
    return code


def validate_agency_code(field: str, value: str) -> str:
    code = value.strip()
    if not code:
        raise InvalidArgument(field, "is required")
    if not _AGENCY_CODE.fullmatch(code):
        raise InvalidArgument(field, "must be an agency code like SXD (capitals, digits, -, _)")
    return code


def validate_idempotency_key(field: str, value: str) -> str:
    if not value:
        raise InvalidArgument(field, "is required")
    if not _IDEMPOTENCY_KEY.fullmatch(value):
        raise InvalidArgument(field, "must be 1-128 printable ASCII characters without spaces")
    return value


def validate_payment_id(field: str, value: str) -> str:
    pid = value.strip().lower()
    if not pid:
        raise InvalidArgument(field, "is required")
    if not _PAYMENT_ID.fullmatch(pid):
        raise InvalidArgument(field, "must be 32 hexadecimal digits")
    return pid


@dataclass(frozen=True)
class Actor:
    """Who did something (token subject, role, agency); ``system`` for the jobs and gateway."""

    subject: str
    role: str
    agency_code: str = ""


SYSTEM = Actor("motcua-payment", "service")


@dataclass(frozen=True)
class Payer:
    """The dossier's applicant, who pays (người nộp lệ phí). Personal data."""

    full_name: str
    citizen_id: str
    phone: str = ""
    email: str = ""

    @classmethod
    def validated(cls, full_name: str, citizen_id: str, phone: str = "", email: str = "") -> Payer:
        cid = text_rules.citizen_id("payer.citizen_id", citizen_id)
        tel = text_rules.phone_number("payer.phone", phone, mobile_only=False, required=False)
        mail = normalise_text(email).lower()
        if mail and (len(mail) > 254 or not _EMAIL.fullmatch(mail)):
            raise InvalidArgument("payer.email", "is not a valid email address")
        return cls(
            full_name=text_rules.identifying_text("payer.full_name", full_name, max_len=200),
            citizen_id=cid,
            phone=tel,
            email=mail,
        )


@dataclass(frozen=True)
class PaymentRequest:
    """A validated request for a fee to be paid: from the API or a dossier event."""

    dossier_code: str
    agency_code: str
    amount_vnd: int
    description: str
    payer: Payer

    @classmethod
    def validated(
        cls,
        *,
        dossier_code: str,
        agency_code: str,
        amount_vnd: object,
        description: str,
        payer: Payer,
    ) -> PaymentRequest:
        code = validate_dossier_code("dossier_code", dossier_code)
        return cls(
            dossier_code=code,
            agency_code=validate_agency_code("agency_code", agency_code),
            amount_vnd=validate_amount("amount_vnd", amount_vnd),
            description=_text("description", description, required=False) or f"Lệ phí hồ sơ {code}",
            payer=payer,
        )

    def fingerprint(self) -> str:
        """SHA-256 of the normalised body: what "the same body" means for idempotency."""
        body = json.dumps(asdict(self), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(body.encode()).hexdigest()


@dataclass(frozen=True)
class Receipt:
    """The electronic receipt (biên lai điện tử) of a succeeded payment."""

    number: str
    issued_at: datetime


def receipt_number(agency_code: str, year: int, sequence: int) -> str:
    """``<AGENCY>-<YYYY>-<NNNNNN>``: numbered per agency and calendar year."""
    if sequence < 1:
        raise ValueError("receipt sequence starts at 1")
    return f"{agency_code}-{year:04d}-{sequence:06d}"


@dataclass(frozen=True)
class Refund:
    """Money given back from a succeeded payment, in full or in part."""

    id: str
    payment_id: str
    amount_vnd: int
    state: RefundState
    reason: str
    requested_by: Actor
    requested_at: datetime
    gateway_transaction_id: str = ""
    failure_code: str = ""
    settled_at: datetime | None = None

    def succeeded(self, transaction_id: str, now: datetime) -> Refund:
        state = next_state(self.state, Trigger.REFUND_SUCCEED, "the refund")
        assert isinstance(state, RefundState)
        return replace(self, state=state, gateway_transaction_id=transaction_id, settled_at=now)

    def failed(self, code: str, now: datetime) -> Refund:
        state = next_state(self.state, Trigger.REFUND_FAIL, "the refund")
        assert isinstance(state, RefundState)
        return replace(self, state=state, failure_code=code, settled_at=now)


@dataclass(frozen=True)
class Payment:
    """A fee to be paid for one dossier, through one gateway."""

    id: str
    dossier_code: str
    agency_code: str
    amount_vnd: int
    description: str
    payer: Payer
    state: PaymentState
    gateway: str
    created_by: Actor
    created_at: datetime
    expires_at: datetime
    currency: str = CURRENCY
    redirect_url: str = ""
    #: The short pay link (``<public callback host>/p/<pay_token>``) that redirects to
    #: ``redirect_url`` while the payment is open: what an SMS carries (160 characters).
    pay_token: str = ""
    pay_url: str = ""
    gateway_transaction_id: str = ""
    failure_code: str = ""
    receipt: Receipt | None = None
    settled_at: datetime | None = None
    refunds: tuple[Refund, ...] = ()

    @classmethod
    def new(
        cls,
        request: PaymentRequest,
        *,
        payment_id: str,
        gateway: str,
        created_by: Actor,
        now: datetime,
        expires_at: datetime,
    ) -> Payment:
        if expires_at <= now:
            raise ValueError("a payment must expire after it is created")
        return cls(
            id=payment_id,
            dossier_code=request.dossier_code,
            agency_code=request.agency_code,
            amount_vnd=request.amount_vnd,
            description=request.description,
            payer=request.payer,
            state=PAYMENT_INITIAL,
            gateway=gateway,
            created_by=created_by,
            created_at=now,
            expires_at=expires_at,
        )

    # -- moves (each asks the table) ------------------------------------------------------------
    def _to(self, trigger: Trigger) -> PaymentState:
        state = next_state(self.state, trigger)
        assert isinstance(state, PaymentState)
        return state

    def started(self, redirect_url: str, pay_token: str = "", pay_url: str = "") -> Payment:
        return replace(
            self,
            state=self._to(Trigger.START),
            redirect_url=redirect_url,
            pay_token=pay_token,
            pay_url=pay_url,
        )

    def pay_link_target(self, now: datetime) -> str | None:
        """Where the short pay link leads now: the gateway's page while the payment can
        still be paid; None once it is settled, cancelled or past its expiry."""
        if self.state is PaymentState.PENDING and now < self.expires_at and self.redirect_url:
            return self.redirect_url
        return None

    def succeeded(self, transaction_id: str, receipt: Receipt, now: datetime) -> Payment:
        return replace(
            self,
            state=self._to(Trigger.SUCCEED),
            gateway_transaction_id=transaction_id,
            receipt=receipt,
            settled_at=now,
        )

    def failed(self, transaction_id: str, code: str, now: datetime) -> Payment:
        return replace(
            self,
            state=self._to(Trigger.FAIL),
            gateway_transaction_id=transaction_id,
            failure_code=code,
            settled_at=now,
        )

    def expired(self, now: datetime) -> Payment:
        return replace(self, state=self._to(Trigger.EXPIRE), settled_at=now)

    def cancelled(self, now: datetime) -> Payment:
        return replace(self, state=self._to(Trigger.CANCEL), settled_at=now)

    # -- refunds ---------------------------------------------------------------------------------
    @property
    def refunded_vnd(self) -> int:
        """What has been given back (succeeded refunds)."""
        return sum(r.amount_vnd for r in self.refunds if r.state is RefundState.SUCCEEDED)

    @property
    def refundable_vnd(self) -> int:
        """What may still be refunded: paid minus refunds succeeded or in flight."""
        held = sum(r.amount_vnd for r in self.refunds if r.state is not RefundState.FAILED)
        return self.amount_vnd - held if self.state is PaymentState.SUCCEEDED else 0

    def request_refund(
        self, *, refund_id: str, amount_vnd: object, reason: str, actor: Actor, now: datetime
    ) -> Refund:
        """A new refund; never more, in total, than was paid."""
        amount = validate_amount("amount_vnd", amount_vnd)
        why = _text("reason", reason, required=True)
        self._to(Trigger.REFUND)  # refunds only of a succeeded payment (the table says so)
        if amount > self.refundable_vnd:
            raise FailedPrecondition(
                f"refund of {amount} VND refused: only {self.refundable_vnd} VND of "
                f"{self.amount_vnd} VND remains refundable"
            )
        return Refund(
            id=refund_id,
            payment_id=self.id,
            amount_vnd=amount,
            state=REFUND_INITIAL,
            reason=why,
            requested_by=actor,
            requested_at=now,
        )

    def with_refund(self, refund: Refund) -> Payment:
        """This payment with ``refund`` added or replaced (by id)."""
        others = tuple(r for r in self.refunds if r.id != refund.id)
        return replace(self, refunds=tuple(sorted((*others, refund), key=_refund_order)))

    def refund(self, refund_id: str) -> Refund:
        for r in self.refunds:
            if r.id == refund_id:
                return r
        raise KeyError(refund_id)


def _refund_order(refund: Refund) -> tuple[Any, str]:
    return (refund.requested_at, refund.id)


def cancel_reason(value: str) -> str:
    return _text("reason", value, required=False) or "cancelled"


class Origin(Enum):
    """What moved a payment: recorded in its history and published with its events."""

    API = "api"
    DOSSIER_EVENT = "dossier_event"
    GATEWAY_NOTIFICATION = "gateway_notification"
    RECONCILIATION = "reconciliation"
    EXPIRY = "expiry"


def live_payment(payments: list[Payment]) -> Payment | None:
    """The dossier's payment that still counts: open, or paid and not fully refunded."""
    for p in reversed(payments):
        if p.state in OPEN_STATES:
            return p
        if p.state is PaymentState.SUCCEEDED and p.refunded_vnd < p.amount_vnd:
            return p
    return None


def check_no_live_payment(code: str, existing: list[Payment]) -> None:
    """One open or paid payment per dossier: a second one would take the fee twice."""
    live = live_payment(existing)
    if live is not None and live.state in OPEN_STATES:
        raise FailedPrecondition(
            f"dossier {code} already has an open payment {live.id}; pay or cancel it first"
        )
    if live is not None:
        number = live.receipt.number if live.receipt else "-"
        raise FailedPrecondition(f"dossier {code} is already paid (receipt {number})")


def event_scope(event_id: str) -> str:
    """The idempotency scope of a payment a dossier event asked for: one per event."""
    return f"event\x1f{event_id}"


def refund_fingerprint(payment_id: str, amount_vnd: int, reason: str) -> str:
    """SHA-256 of a refund call's normalised body: what "the same refund" means for a key."""
    body = json.dumps([payment_id, amount_vnd, normalise_text(reason)], ensure_ascii=False)
    return hashlib.sha256(body.encode()).hexdigest()
