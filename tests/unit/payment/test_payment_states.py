"""The payment and refund state machines: one table, illegal moves refused, docs in sync."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from motcua_kit.errors import FailedPrecondition
from motcua_payment.domain.states import (
    TRANSITIONS,
    IllegalTransition,
    PaymentState,
    RefundState,
    Trigger,
    allowed,
    is_terminal,
    next_state,
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
    assert {(t.source, t.trigger): t.target for t in TRANSITIONS} == EXPECTED_MOVES


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
    for t in TRANSITIONS:
        assert f"{t.source.value} --> {t.target.value}: {t.trigger.value}" in page
    assert (ROOT / "docs/payment-states.md").read_text(encoding="utf-8") == page, (
        "docs/payment-states.md is stale: python -m motcua_payment.tools.draw_states"
    )


def test_draw_command_check_mode(tmp_path) -> None:
    out = tmp_path / "states.md"
    assert draw_states.main(["--output", str(out), "--check"]) == 1
    assert draw_states.main(["--output", str(out)]) == 0
    assert draw_states.main(["--output", str(out), "--check"]) == 0
