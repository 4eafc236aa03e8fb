"""The kit's one state-machine shape (motcua_kit.transitions)."""

from __future__ import annotations

from enum import Enum

import pytest

from motcua_kit.errors import FailedPrecondition
from motcua_kit.transitions import IllegalTransition, Transition, TransitionTable


class Light(Enum):
    RED = "red"
    GREEN = "green"
    BROKEN = "broken"


class Push(Enum):
    GO = "go"
    STOP = "stop"
    SMASH = "smash"
    CHECK = "check"


TABLE = TransitionTable(
    "the light",
    [
        Transition(Light.RED, Push.GO, Light.GREEN, "light.green"),
        Transition(Light.GREEN, Push.STOP, Light.RED, "light.red"),
        Transition(Light.GREEN, Push.CHECK, Light.GREEN),
        Transition(Light.RED, Push.SMASH, Light.BROKEN),
    ],
)


def test_a_row_moves_and_names_its_event() -> None:
    assert TABLE.next_state(Light.RED, Push.GO) is Light.GREEN
    assert TABLE.row(Light.GREEN, Push.STOP).event == "light.red"
    assert TABLE.allowed(Light.GREEN, Push.CHECK)
    assert not TABLE.allowed(Light.GREEN, Push.GO)


def test_a_move_without_a_row_is_refused_as_a_failed_precondition() -> None:
    with pytest.raises(IllegalTransition) as refused:
        TABLE.next_state(Light.BROKEN, Push.GO)
    assert isinstance(refused.value, FailedPrecondition)
    assert str(refused.value) == "the light is broken; it cannot go"
    assert refused.value.state is Light.BROKEN and refused.value.trigger is Push.GO
    with pytest.raises(IllegalTransition, match=r"^the lamp is broken; it cannot stop$"):
        TABLE.next_state(Light.BROKEN, Push.STOP, what="the lamp")


def test_two_rows_for_one_state_and_trigger_are_refused_at_load() -> None:
    with pytest.raises(ValueError, match=r"two rows for \(red, go\)"):
        TransitionTable(
            "t",
            [
                Transition(Light.RED, Push.GO, Light.GREEN),
                Transition(Light.RED, Push.GO, Light.RED),
            ],
        )


def test_terminal_states_and_triggers_from_a_state() -> None:
    assert TABLE.is_terminal(Light.BROKEN)
    assert not TABLE.is_terminal(Light.GREEN)  # the self-loop does not count, stop leaves
    assert TABLE.triggers(Light.RED) == (Push.GO, Push.SMASH)
    assert TABLE.states() == (Light.RED, Light.GREEN, Light.BROKEN)


def test_the_drawings_are_the_rows() -> None:
    assert TABLE.mermaid([Light.RED]) == [
        "```mermaid",
        "stateDiagram-v2",
        "    [*] --> red",
        "    red --> green: go",
        "    green --> red: stop",
        "    green --> green: check",
        "    red --> broken: smash",
        "    broken --> [*]",
        "```",
        "",
    ]
    table = TABLE.markdown([("Event", lambda r: r.event or "—")], only=lambda r: r.event != "")
    assert table == [
        "| From | Trigger | To | Event |",
        "|---|---|---|---|",
        "| `red` | `go` | `green` | light.green |",
        "| `green` | `stop` | `red` | light.red |",
        "",
    ]


def test_plain_values_work_as_states_and_triggers() -> None:
    """Dossier's workflows use integer status codes and action names from YAML."""
    table = TransitionTable("the dossier", [Transition(1, "receive", 2)])
    assert table.next_state(1, "receive") == 2
    with pytest.raises(IllegalTransition, match=r"^the dossier is 2; it cannot receive$"):
        table.next_state(2, "receive")


def test_states_may_be_drawn_with_display_names() -> None:
    """Dossier's states are status codes: the diagram names them (``state "…" as s1``)."""
    table = TransitionTable("the dossier", [Transition(1, "receive", 2), Transition(2, "x", 3)])
    drawn = table.mermaid([1], node=lambda code: f"s{code}", names=lambda code: f"{code} · name")
    assert drawn == [
        "```mermaid",
        "stateDiagram-v2",
        '    state "1 · name" as s1',
        '    state "2 · name" as s2',
        '    state "3 · name" as s3',
        "    [*] --> s1",
        "    s1 --> s2: receive",
        "    s2 --> s3: x",
        "    s3 --> [*]",
        "```",
        "",
    ]
