"""The delivery state machine (one table) and the retry rules after a send or a receipt."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from motcua_kit.transitions import IllegalTransition
from motcua_notify.domain.notification import (
    RECEIPT_WORDS,
    Notification,
    ReceiptStatus,
    SendResult,
    Verdict,
    after_receipt,
    after_receipt_timeout,
    after_send,
)
from motcua_notify.domain.retry import RetryPolicy
from motcua_notify.domain.states import (
    FINAL_STATES,
    TRANSITIONS,
    Channel,
    Move,
    Published,
    State,
    next_state,
)

NOW = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
POLICY = RetryPolicy(max_attempts=3, base_seconds=10, max_delay_seconds=60, jitter=0.5)


def sending(attempts: int = 1, provider_ref: str = "") -> Notification:
    return Notification(
        id="n1",
        event_id="e1",
        event_type="t",
        dossier_code="D",
        agency_code="A",
        citizen_id="079203004567",
        template="receipt",
        channel=Channel.SMS,
        recipient="0905123456",
        subject="",
        body="x",
        payload={},
        sms_segments=1,
        state=State.SENDING,
        attempts=attempts,
        reference=f"n1.{attempts}",
        provider="",
        provider_ref=provider_ref,
        created_at=NOW,
        updated_at=NOW,
        next_attempt_at=None,
    )


def test_the_states_are_exactly_gov_uk_notify_s() -> None:
    assert [s.value for s in State] == [
        "created",
        "sending",
        "delivered",
        "temporary-failure",
        "permanent-failure",
        "technical-failure",
    ]


def test_final_states_have_no_way_out() -> None:
    assert not [r for r in TRANSITIONS.rows if r.source in FINAL_STATES]


@pytest.mark.parametrize(
    ("state", "move"),
    [
        (State.CREATED, Move.DELIVER),
        (State.DELIVERED, Move.CLAIM),
        (State.PERMANENT_FAILURE, Move.CLAIM),
        (State.TECHNICAL_FAILURE, Move.FAIL_TEMPORARILY),
        (State.CREATED, Move.RECOVER),
    ],
)
def test_illegal_moves_are_refused(state: State, move: Move) -> None:
    with pytest.raises(IllegalTransition):
        next_state(state, move)


def test_provider_acceptance_publishes_sent_and_waits_for_the_receipt() -> None:
    change = after_send(
        sending(), SendResult(Verdict.ACCEPTED, "sms-a", "m1"), POLICY, NOW, random.Random(1)
    )
    assert change.state is State.SENDING
    assert change.publish == (Published.SENT,)


def test_synchronous_delivery_publishes_sent_and_delivered() -> None:
    change = after_send(sending(), SendResult(Verdict.DELIVERED), POLICY, NOW, random.Random(1))
    assert change.state is State.DELIVERED
    assert change.publish == (Published.SENT, Published.DELIVERED)


def test_temporary_failure_schedules_a_retry_within_the_jittered_ceiling() -> None:
    change = after_send(
        sending(1), SendResult(Verdict.TEMPORARY, detail="500"), POLICY, NOW, random.Random(7)
    )
    assert change.state is State.TEMPORARY_FAILURE
    assert change.publish == ()
    assert change.next_attempt_at is not None
    assert NOW + timedelta(seconds=5) <= change.next_attempt_at <= NOW + timedelta(seconds=10)


def test_the_bound_turns_a_temporary_failure_permanent_and_publishes_failed() -> None:
    change = after_send(
        sending(3), SendResult(Verdict.TEMPORARY, detail="500"), POLICY, NOW, random.Random(7)
    )
    assert change.state is State.PERMANENT_FAILURE
    assert change.gave_up
    assert change.publish == (Published.FAILED,)
    assert "gave up after 3 attempts" in change.detail


@pytest.mark.parametrize(
    ("verdict", "state"),
    [(Verdict.PERMANENT, State.PERMANENT_FAILURE), (Verdict.TECHNICAL, State.TECHNICAL_FAILURE)],
)
def test_permanent_and_technical_failures_are_final_and_published(verdict, state) -> None:
    change = after_send(sending(), SendResult(verdict), POLICY, NOW, random.Random(1))
    assert change.state is state
    assert change.publish == (Published.FAILED,)


def test_delivery_receipt_delivers_including_after_a_temporary_failure() -> None:
    n = sending(provider_ref="m1")
    change = after_receipt(n, ReceiptStatus.DELIVERED, "", POLICY, NOW, random.Random(1))
    assert change is not None and change.state is State.DELIVERED
    assert change.publish == (Published.DELIVERED,)
    late = replace(n, state=State.TEMPORARY_FAILURE)
    change = after_receipt(late, ReceiptStatus.DELIVERED, "", POLICY, NOW, random.Random(1))
    assert change is not None and change.state is State.DELIVERED


def test_a_receipt_that_overtakes_the_send_answer_also_says_sent() -> None:
    change = after_receipt(sending(), ReceiptStatus.DELIVERED, "", POLICY, NOW, random.Random(1))
    assert change is not None and change.publish == (Published.SENT, Published.DELIVERED)


def test_repeated_or_late_receipts_change_nothing() -> None:
    done = replace(sending(provider_ref="m1"), state=State.DELIVERED)
    for status in ReceiptStatus:
        assert after_receipt(done, status, "", POLICY, NOW, random.Random(1)) is None


def test_temporary_failure_receipt_schedules_a_retry() -> None:
    change = after_receipt(
        sending(1, "m1"),
        ReceiptStatus.TEMPORARY_FAILURE,
        "phone off",
        POLICY,
        NOW,
        random.Random(1),
    )
    assert change is not None and change.state is State.TEMPORARY_FAILURE
    assert change.next_attempt_at is not None


def test_provider_receipt_words_map_to_our_states() -> None:
    assert RECEIPT_WORDS["delivrd"] is ReceiptStatus.DELIVERED
    assert RECEIPT_WORDS["undeliv"] is ReceiptStatus.PERMANENT_FAILURE
    assert RECEIPT_WORDS["expired"] is ReceiptStatus.TEMPORARY_FAILURE


def test_a_missing_receipt_times_out_as_failed_and_only_a_message_a_provider_took() -> None:
    taken = replace(sending(provider_ref="sms-a-7"), provider="sms-a")
    change = after_receipt_timeout(taken, 72)
    assert change is not None
    assert (change.state, change.publish) == (State.PERMANENT_FAILURE, (Published.FAILED,))
    assert change.next_attempt_at is None  # not resent: it may have arrived
    assert change.detail == "no delivery receipt from sms-a within 72 h"
    assert after_receipt_timeout(sending(), 72) is None  # still with its sender (lease rules)
    assert after_receipt_timeout(replace(taken, state=State.DELIVERED), 72) is None
