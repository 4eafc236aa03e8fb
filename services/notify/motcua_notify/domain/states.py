"""Delivery states and the one table of legal moves between them (GOV.UK Notify's names).

A notification is ``created`` when the consumer records the intent, ``sending`` while a
channel hands it over (and, for SMS and Zalo, until the provider's delivery receipt), then
``delivered`` or one of three failures. ``temporary-failure`` is retried with backoff until the
bound, after which it becomes ``permanent-failure``; ``technical-failure`` (motcua's own fault:
a template or configuration problem) is never retried.
"""

from __future__ import annotations

from enum import StrEnum

from motcua_kit.transitions import Transition, TransitionTable


class Channel(StrEnum):
    """How a notification travels; the values are stored and used as metric labels."""

    EMAIL = "email"
    SMS = "sms"
    ZALO = "zalo"
    WEBHOOK = "webhook"

    @property
    def addresses_citizens(self) -> bool:
        """Email, SMS and Zalo reach a person (opt-outs apply); webhooks reach systems."""
        return self is not Channel.WEBHOOK


class State(StrEnum):
    """Delivery states; the values are what the database, metrics and docs spell."""

    CREATED = "created"
    SENDING = "sending"
    DELIVERED = "delivered"
    TEMPORARY_FAILURE = "temporary-failure"
    PERMANENT_FAILURE = "permanent-failure"
    TECHNICAL_FAILURE = "technical-failure"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset({State.DELIVERED, State.PERMANENT_FAILURE, State.TECHNICAL_FAILURE})


class Move(StrEnum):
    """What happens to a notification (the events of the state machine)."""

    CLAIM = "claim"  # the sender takes a due notification to send it
    RECOVER = "recover"  # the sender retakes one whose sender died mid-send (lease expired)
    ACCEPT = "accept"  # the provider took it; a delivery receipt will follow
    DELIVER = "deliver"  # delivery confirmed (receipt, SMTP acceptance, webhook 2xx)
    FAIL_TEMPORARILY = "fail-temporarily"  # worth retrying later
    FAIL_PERMANENTLY = "fail-permanently"  # retrying cannot help (or retries exhausted)
    FAIL_TECHNICALLY = "fail-technically"  # motcua's own fault


class Published(StrEnum):
    """Which notify event a move publishes (the table's event column)."""

    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"


# The legal moves, and what each publishes; anything not listed is refused with the kit's
# IllegalTransition. Drawn into docs/notify.md by motcua_notify.tools.draw_states.
TRANSITIONS: TransitionTable[State, Move] = TransitionTable(
    "the notification",
    [
        Transition(State.CREATED, Move.CLAIM, State.SENDING),
        Transition(State.TEMPORARY_FAILURE, Move.CLAIM, State.SENDING),
        Transition(State.SENDING, Move.RECOVER, State.SENDING),
        Transition(State.SENDING, Move.ACCEPT, State.SENDING, Published.SENT),
        Transition(State.SENDING, Move.DELIVER, State.DELIVERED, Published.DELIVERED),
        Transition(State.SENDING, Move.FAIL_TEMPORARILY, State.TEMPORARY_FAILURE),
        Transition(State.SENDING, Move.FAIL_PERMANENTLY, State.PERMANENT_FAILURE, Published.FAILED),
        Transition(State.SENDING, Move.FAIL_TECHNICALLY, State.TECHNICAL_FAILURE, Published.FAILED),
        Transition(State.CREATED, Move.FAIL_TECHNICALLY, State.TECHNICAL_FAILURE, Published.FAILED),
        # A receipt may arrive after the sender gave the attempt up as failed (e.g. it timed
        # out waiting for the provider, which delivered anyway): the receipt is the truth.
        Transition(State.TEMPORARY_FAILURE, Move.DELIVER, State.DELIVERED, Published.DELIVERED),
        Transition(
            State.TEMPORARY_FAILURE,
            Move.FAIL_PERMANENTLY,
            State.PERMANENT_FAILURE,
            Published.FAILED,
        ),
    ],
)


def next_state(state: State, move: Move) -> State:
    """The state after ``move``; raises the kit's :class:`IllegalTransition` when the table
    has no such row."""
    return TRANSITIONS.next_state(state, move)


def published(state: State, move: Move) -> tuple[Published, ...]:
    """What ``move`` from ``state`` publishes (nothing, or one event); refuses as above."""
    event = TRANSITIONS.row(state, move).event
    return (Published(event),) if event else ()
