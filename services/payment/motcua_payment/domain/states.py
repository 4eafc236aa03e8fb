"""The payment and refund state machines: ONE table of (from, trigger, to), nothing else.

Every state change in the service goes through :func:`next_state`; a move that is not a row of
:data:`TRANSITIONS` is refused with :class:`IllegalTransition`. ``docs/payment-states.md`` is
drawn from this table (``python -m motcua_payment.tools.draw_states``), so the picture cannot
drift from the rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from motcua_kit.errors import FailedPrecondition


class PaymentState(Enum):
    """States of a payment (thanh toán lệ phí); values are the names used in the database."""

    CREATED = "created"
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class RefundState(Enum):
    """States of one refund (hoàn tiền) of a succeeded payment."""

    REQUESTED = "requested"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


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


@dataclass(frozen=True)
class Transition:
    """One row of the table."""

    source: State
    trigger: Trigger
    target: State


P, R, T = PaymentState, RefundState, Trigger

TRANSITIONS: tuple[Transition, ...] = (
    # payment
    Transition(P.CREATED, T.START, P.PENDING),
    Transition(P.CREATED, T.EXPIRE, P.EXPIRED),
    Transition(P.CREATED, T.CANCEL, P.CANCELLED),
    Transition(P.PENDING, T.SUCCEED, P.SUCCEEDED),
    Transition(P.PENDING, T.FAIL, P.FAILED),
    Transition(P.PENDING, T.EXPIRE, P.EXPIRED),
    Transition(P.PENDING, T.CANCEL, P.CANCELLED),
    Transition(P.SUCCEEDED, T.REFUND, P.SUCCEEDED),
    # refund
    Transition(R.REQUESTED, T.REFUND_SUCCEED, R.SUCCEEDED),
    Transition(R.REQUESTED, T.REFUND_FAIL, R.FAILED),
)

_BY_SOURCE_AND_TRIGGER: dict[tuple[State, Trigger], State] = {
    (t.source, t.trigger): t.target for t in TRANSITIONS
}
if len(_BY_SOURCE_AND_TRIGGER) != len(TRANSITIONS):  # pragma: no cover - a table bug
    raise AssertionError("the transition table has two rows for one (state, trigger)")

#: States a payment starts in, and a refund starts in.
PAYMENT_INITIAL = PaymentState.CREATED
REFUND_INITIAL = RefundState.REQUESTED

#: Payments not yet settled: they may still be paid, expire or be cancelled.
OPEN_STATES = frozenset({PaymentState.CREATED, PaymentState.PENDING})


class IllegalTransition(FailedPrecondition):
    """The table has no row for this (state, trigger): the move is refused."""

    def __init__(self, what: str, state: State, trigger: Trigger) -> None:
        super().__init__(f"{what} is {state.value}; it cannot {trigger.value}")
        self.state = state
        self.trigger = trigger


def allowed(state: State, trigger: Trigger) -> bool:
    return (state, trigger) in _BY_SOURCE_AND_TRIGGER


def next_state(state: State, trigger: Trigger, what: str = "the payment") -> State:
    """The state after ``trigger``; refuses a move the table does not have."""
    try:
        return _BY_SOURCE_AND_TRIGGER[(state, trigger)]
    except KeyError:
        raise IllegalTransition(what, state, trigger) from None


def is_terminal(state: State) -> bool:
    """No row leaves this state (a self-loop such as succeeded --refund--> does not count)."""
    return not any(t.source == state and t.target != state for t in TRANSITIONS)
