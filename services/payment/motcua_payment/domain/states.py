"""The payment and refund state machines: ONE kit table of (from, trigger, to, event).

Every state change in the service goes through :data:`TRANSITIONS` (the kit's
:class:`~motcua_kit.transitions.TransitionTable`); a move that is not a row is refused with the
kit's :class:`~motcua_kit.transitions.IllegalTransition` (FAILED_PRECONDITION over gRPC). Each
state is one row too, as GOV.UK Pay's ``ChargeStatus`` is: its database name, its protobuf
value, the event a payment entering it publishes and the return page's words for it.
``docs/payment-states.md`` is drawn from these rows (``python -m tools.generate
payment-states``), so the picture cannot drift from the rules.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from motcua import topics as t
from motcua.payment.v1 import payment_pb2 as pb
from motcua_kit.transitions import Transition, TransitionTable


class PaymentState(Enum):
    """States of a payment (thanh toán lệ phí): database name, proto value, event published on
    entering it ("" for none) and what the payer's return page says (trang kết quả)."""

    _value_: str
    proto: pb.PaymentState.ValueType
    event: str
    page_text: str

    def __new__(cls, value: str, *row: Any) -> PaymentState:
        """Builds each member from its row; ``PaymentState("created")`` looks one up."""
        member = object.__new__(cls)
        member._value_ = value
        member.proto, member.event, member.page_text = row
        return member

    # CREATED publishes nothing: it is the moment before the gateway issued the redirect,
    # committed together with PENDING.
    CREATED = ("created", pb.PAYMENT_STATE_CREATED, "", "Yêu cầu thanh toán đã được tạo")
    PENDING = (
        "pending",
        pb.PAYMENT_STATE_PENDING,
        t.PAYMENT_REQUESTED,
        "Giao dịch đang được xử lý",
    )
    SUCCEEDED = (
        "succeeded",
        pb.PAYMENT_STATE_SUCCEEDED,
        t.PAYMENT_SUCCEEDED,
        "Thanh toán thành công",
    )
    FAILED = ("failed", pb.PAYMENT_STATE_FAILED, t.PAYMENT_FAILED, "Thanh toán không thành công")
    EXPIRED = (
        "expired",
        pb.PAYMENT_STATE_EXPIRED,
        t.PAYMENT_EXPIRED,
        "Yêu cầu thanh toán đã hết hạn",
    )
    CANCELLED = (
        "cancelled",
        pb.PAYMENT_STATE_CANCELLED,
        t.PAYMENT_CANCELLED,
        "Yêu cầu thanh toán đã bị hủy",
    )


class RefundState(Enum):
    """States of one refund (hoàn tiền) of a succeeded payment: database name, proto value and
    event published on entering it (no page shows a refund)."""

    _value_: str
    proto: pb.RefundState.ValueType
    event: str

    def __new__(cls, value: str, *row: Any) -> RefundState:
        """Builds each member from its row; ``RefundState("requested")`` looks one up."""
        member = object.__new__(cls)
        member._value_ = value
        member.proto, member.event = row
        return member

    # Requesting a refund publishes nothing: its outcome does.
    REQUESTED = ("requested", pb.REFUND_STATE_REQUESTED, "")
    SUCCEEDED = ("succeeded", pb.REFUND_STATE_SUCCEEDED, t.PAYMENT_REFUND_SUCCEEDED)
    FAILED = ("failed", pb.REFUND_STATE_FAILED, t.PAYMENT_REFUND_FAILED)


class Trigger(Enum):
    """What can happen to a payment or a refund."""

    START = "start"  # the gateway issued the redirect URL
    SUCCEED = "succeed"  # the gateway confirmed the money was taken
    FAIL = "fail"  # the gateway reported the payment failed (declined, abandoned)
    EXPIRE = "expire"  # not paid within the expiry time
    CANCEL = "cancel"  # a person cancelled it before it was paid
    REFUND = "refund"  # a refund was requested (the payment stays succeeded)
    REFUND_SUCCEED = "refund_succeed"  # the gateway gave the money back
    REFUND_FAIL = "refund_fail"  # the gateway refused the refund


State = PaymentState | RefundState


def _move(source: State, trigger: Trigger, target: State) -> Transition[State, Trigger]:
    """A row whose event is the one its target state publishes; staying put publishes none."""
    return Transition(source, trigger, target, "" if target is source else target.event)


P, R, T = PaymentState, RefundState, Trigger

TRANSITIONS: TransitionTable[State, Trigger] = TransitionTable(
    "the payment",
    [
        # payment
        _move(P.CREATED, T.START, P.PENDING),
        _move(P.CREATED, T.EXPIRE, P.EXPIRED),
        _move(P.CREATED, T.CANCEL, P.CANCELLED),
        _move(P.PENDING, T.SUCCEED, P.SUCCEEDED),
        _move(P.PENDING, T.FAIL, P.FAILED),
        _move(P.PENDING, T.EXPIRE, P.EXPIRED),
        _move(P.PENDING, T.CANCEL, P.CANCELLED),
        _move(P.SUCCEEDED, T.REFUND, P.SUCCEEDED),
        # refund
        _move(R.REQUESTED, T.REFUND_SUCCEED, R.SUCCEEDED),
        _move(R.REQUESTED, T.REFUND_FAIL, R.FAILED),
    ],
)

#: States a payment starts in, and a refund starts in.
PAYMENT_INITIAL = PaymentState.CREATED
REFUND_INITIAL = RefundState.REQUESTED

#: Payments not yet settled: they may still be paid, expire or be cancelled.
OPEN_STATES = frozenset({PaymentState.CREATED, PaymentState.PENDING})


def allowed(state: State, trigger: Trigger) -> bool:
    return TRANSITIONS.allowed(state, trigger)


def next_state(state: State, trigger: Trigger, what: str = "the payment") -> State:
    """The state after ``trigger``; the kit's IllegalTransition for a move the table lacks."""
    return TRANSITIONS.next_state(state, trigger, what)


def publishes(state: State, trigger: Trigger) -> str:
    """The event type ``trigger`` from ``state`` publishes ("" for none); refuses as above."""
    return TRANSITIONS.row(state, trigger).event


def is_terminal(state: State) -> bool:
    """No row leaves this state (a self-loop such as succeeded --refund--> does not count)."""
    return TRANSITIONS.is_terminal(state)
