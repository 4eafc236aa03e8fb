"""The payment and refund state machines: one table, illegal moves refused, docs in sync."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from motcua import topics
from motcua.payment.v1 import payment_pb2
from motcua_kit.errors import FailedPrecondition
from motcua_kit.transitions import IllegalTransition
from motcua_payment.domain.states import (
    TRANSITIONS,
    PaymentState,
    RefundState,
    Trigger,
    allowed,
    is_terminal,
    next_state,
    publishes,
)
from motcua_payment.tools import draw_states

ROOT = Path(__file__).resolve().parents[3]
P, R, T = PaymentState, RefundState, Trigger

EXPECTED_MOVES = {
    (P.CREATED, T.START): P.PENDING,
    (P.CREATED, T.EXPIRE): P.EXPIRED,
    (P.CREATED, T.CANCEL): P.CANCELLED,
    (P.PENDING, T.SUCCEED): P.SUCCEEDED,
    (P.PENDING, T.FAIL): P.FAILED,
    (P.PENDING, T.EXPIRE): P.EXPIRED,
    (P.PENDING, T.CANCEL): P.CANCELLED,
    (P.SUCCEEDED, T.REFUND): P.SUCCEEDED,
    (R.REQUESTED, T.REFUND_SUCCEED): R.SUCCEEDED,
    (R.REQUESTED, T.REFUND_FAIL): R.FAILED,
}
ALL_STATES = [*PaymentState, *RefundState]


def test_the_table_is_exactly_the_issue_s_state_machine() -> None:
    assert {(t.source, t.trigger): t.target for t in TRANSITIONS.rows} == EXPECTED_MOVES


@pytest.mark.parametrize(("source", "trigger"), list(itertools.product(ALL_STATES, Trigger)))
def test_every_move_not_in_the_table_is_refused(source, trigger) -> None:
    expected = EXPECTED_MOVES.get((source, trigger))
    if expected is None:
        assert not allowed(source, trigger)
        with pytest.raises(IllegalTransition) as err:
            next_state(source, trigger)
        assert isinstance(err.value, FailedPrecondition)  # → FAILED_PRECONDITION over gRPC
        assert source.value in err.value.message and trigger.value in err.value.message
    else:
        assert next_state(source, trigger) is expected


@given(st.lists(st.sampled_from(list(Trigger)), max_size=12))
def test_no_sequence_of_triggers_leaves_a_settled_payment(triggers) -> None:
    state: PaymentState | RefundState = P.CREATED
    for trigger in triggers:
        if allowed(state, trigger):
            before = state
            state = next_state(state, trigger)
            if before in (P.FAILED, P.EXPIRED, P.CANCELLED):
                pytest.fail(f"{before} moved on")  # pragma: no cover
            if before is P.SUCCEEDED:
                assert state is P.SUCCEEDED
    assert isinstance(state, PaymentState)


def test_terminal_states() -> None:
    assert {s for s in ALL_STATES if is_terminal(s)} == {
        P.SUCCEEDED,
        P.FAILED,
        P.EXPIRED,
        P.CANCELLED,
        R.SUCCEEDED,
        R.FAILED,
    }


def test_docs_are_drawn_from_the_table_and_up_to_date() -> None:
    page = draw_states.render_page()
    for t in TRANSITIONS.rows:
        assert f"{t.source.value} --> {t.target.value}: {t.trigger.value}" in page
    assert (ROOT / "docs/payment-states.md").read_text(encoding="utf-8") == page, (
        "docs/payment-states.md is stale: python -m motcua_payment.tools.draw_states"
    )


def test_draw_command_check_mode(tmp_path) -> None:
    out = tmp_path / "states.md"
    assert draw_states.main(["--output", str(out), "--check"]) == 1
    assert draw_states.main(["--output", str(out)]) == 0
    assert draw_states.main(["--output", str(out), "--check"]) == 0


def test_a_refused_move_says_what_it_is_and_what_it_cannot_do() -> None:
    with pytest.raises(IllegalTransition, match=r"^the payment is failed; it cannot succeed$"):
        next_state(P.FAILED, T.SUCCEED)
    refused = r"^the refund is succeeded; it cannot refund_fail$"
    with pytest.raises(IllegalTransition, match=refused):
        next_state(R.SUCCEEDED, T.REFUND_FAIL, "the refund")


def test_each_state_is_one_row_proto_value_event_and_page_text() -> None:
    """As GOV.UK Pay's ChargeStatus: the database name, the contract's enum value, the event
    entering the state publishes and the return page's words sit on the state itself."""
    for state in PaymentState:
        assert state.proto == payment_pb2.PaymentState.Value(f"PAYMENT_STATE_{state.name}")
        assert state.page_text
    for refund in RefundState:
        assert refund.proto == payment_pb2.RefundState.Value(f"REFUND_STATE_{refund.name}")
    assert P.CREATED.event == "" and R.REQUESTED.event == ""


def test_each_move_publishes_the_event_of_the_state_it_enters() -> None:
    for row in TRANSITIONS.rows:
        assert row.event == ("" if row.target is row.source else row.target.event)
        assert publishes(row.source, row.trigger) == row.event
    # Every payment event type is published by some move, and no move publishes another.
    assert {row.event for row in TRANSITIONS.rows if row.event} == set(topics.PAYMENT_TYPES)
    with pytest.raises(IllegalTransition):
        publishes(P.FAILED, T.SUCCEED)
