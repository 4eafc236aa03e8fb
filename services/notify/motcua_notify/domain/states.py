"""Delivery states and the one table of legal moves between them (GOV.UK Notify's names).

A notification is ``created`` when the consumer records the intent, ``sending`` while a
channel hands it over (and, for SMS and Zalo, until the provider's delivery receipt), then
``delivered`` or one of three failures. ``temporary-failure`` is retried with backoff until the
bound, after which it becomes ``permanent-failure``; ``technical-failure`` (motcua's own fault:
a template or configuration problem) is never retried.
"""

from __future__ import annotations

from enum import StrEnum


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


# (from, move) → to. Anything not listed is illegal. Drawn by motcua_notify.tools.draw_states.
TRANSITIONS: dict[tuple[State, Move], State] = {
    (State.CREATED, Move.CLAIM): State.SENDING,
    (State.TEMPORARY_FAILURE, Move.CLAIM): State.SENDING,
    (State.SENDING, Move.RECOVER): State.SENDING,
    (State.SENDING, Move.ACCEPT): State.SENDING,
    (State.SENDING, Move.DELIVER): State.DELIVERED,
    (State.SENDING, Move.FAIL_TEMPORARILY): State.TEMPORARY_FAILURE,
    (State.SENDING, Move.FAIL_PERMANENTLY): State.PERMANENT_FAILURE,
    (State.SENDING, Move.FAIL_TECHNICALLY): State.TECHNICAL_FAILURE,
    (State.CREATED, Move.FAIL_TECHNICALLY): State.TECHNICAL_FAILURE,
    # A receipt may arrive after the sender gave the attempt up as failed (e.g. it timed out
    # waiting for the provider, which delivered anyway): the receipt is the truth.
    (State.TEMPORARY_FAILURE, Move.DELIVER): State.DELIVERED,
    (State.TEMPORARY_FAILURE, Move.FAIL_PERMANENTLY): State.PERMANENT_FAILURE,
}


class IllegalTransition(Exception):
    """A move that the table does not allow from the current state."""

    def __init__(self, state: State, move: Move) -> None:
        super().__init__(f"{move.value} is not allowed from {state.value}")
        self.state = state
        self.move = move


def next_state(state: State, move: Move) -> State:
    """The state after ``move``; raises :class:`IllegalTransition` when the table forbids it."""
    try:
        return TRANSITIONS[(state, move)]
    except KeyError:
        raise IllegalTransition(state, move) from None
