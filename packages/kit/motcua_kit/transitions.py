"""One shape for every state machine: rows of (from, trigger, to, event), nothing else.

Payment's payments and refunds, notify's deliveries and dossier's workflows (loaded from
their YAML) are each a :class:`TransitionTable`. A move that is not a row is refused with the
one :class:`IllegalTransition` (FAILED_PRECONDITION over gRPC), and the pages in docs/ are
drawn from the same rows by :meth:`TransitionTable.mermaid` and
:meth:`TransitionTable.markdown`, so the pictures cannot drift from the rules.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

from motcua_kit.errors import FailedPrecondition

S = TypeVar("S", bound=Hashable)
T = TypeVar("T", bound=Hashable)


def spelled(value: object) -> str:
    """How a state or trigger is written in messages and pages: an enum's value, else str()."""
    return str(value.value) if isinstance(value, Enum) else str(value)


@dataclass(frozen=True)
class Transition(Generic[S, T]):
    """One row: ``trigger`` moves ``source`` to ``target`` and publishes ``event`` (or none)."""

    source: S
    trigger: T
    target: S
    event: str = ""


class IllegalTransition(FailedPrecondition):
    """The table has no row for this (state, trigger): the move is refused, nothing changes."""

    def __init__(self, what: str, state: object, trigger: object, reason: str = "") -> None:
        super().__init__(reason or f"{what} is {spelled(state)}; it cannot {spelled(trigger)}")
        self.what = what
        self.state = state
        self.trigger = trigger


class TransitionTable(Generic[S, T]):
    """The legal moves of one state machine; ``what`` names its subject in refusals."""

    def __init__(self, what: str, rows: Iterable[Transition[S, T]]) -> None:
        self.what = what
        self.rows: tuple[Transition[S, T], ...] = tuple(rows)
        self._next: dict[tuple[S, T], Transition[S, T]] = {}
        for row in self.rows:
            key = (row.source, row.trigger)
            if key in self._next:
                raise ValueError(
                    f"{what}: two rows for ({spelled(row.source)}, {spelled(row.trigger)})"
                )
            self._next[key] = row

    def allowed(self, state: S, trigger: T) -> bool:
        return (state, trigger) in self._next

    def row(self, state: S, trigger: T, what: str = "") -> Transition[S, T]:
        """The row for this move; :class:`IllegalTransition` when there is none."""
        try:
            return self._next[(state, trigger)]
        except KeyError:
            raise IllegalTransition(what or self.what, state, trigger) from None

    def next_state(self, state: S, trigger: T, what: str = "") -> S:
        """The state after ``trigger``; refuses a move the table does not have."""
        return self.row(state, trigger, what).target

    def triggers(self, state: S) -> tuple[T, ...]:
        """What may happen in ``state``, in table order."""
        return tuple(r.trigger for r in self.rows if r.source == state)

    def states(self) -> tuple[S, ...]:
        """Every state a row names, in order of first appearance."""
        seen: dict[S, None] = {}
        for r in self.rows:
            seen.setdefault(r.source)
            seen.setdefault(r.target)
        return tuple(seen)

    def is_terminal(self, state: S) -> bool:
        """No row leaves this state (a self-loop, such as a refund of a payment, does not)."""
        return not any(r.source == state and r.target != state for r in self.rows)

    def mermaid(
        self,
        initial: Sequence[S],
        *,
        node: Callable[[S], str] = spelled,
        label: Callable[[Transition[S, T]], str] | None = None,
        only: Callable[[Transition[S, T]], bool] | None = None,
        names: Callable[[S], str] | None = None,
    ) -> list[str]:
        """A ``stateDiagram-v2`` of the rows (those ``only`` keeps), fenced for Markdown.

        ``names`` gives states a display name (``state "name" as node``), for when the
        node, such as a status code, says too little; the caller escapes it for Mermaid.
        """
        rows = [r for r in self.rows if only is None or only(r)]
        text = label or (lambda r: spelled(r.trigger))
        kept = {s for r in rows for s in (r.source, r.target)}
        lines = ["```mermaid", "stateDiagram-v2"]
        if names is not None:
            lines += [f'    state "{names(s)}" as {node(s)}' for s in self.states() if s in kept]
        lines += [f"    [*] --> {node(s)}" for s in initial]
        lines += [f"    {node(r.source)} --> {node(r.target)}: {text(r)}" for r in rows]
        lines += [
            f"    {node(s)} --> [*]" for s in self.states() if s in kept and self.is_terminal(s)
        ]
        return [*lines, "```", ""]

    def markdown(
        self,
        columns: Sequence[tuple[str, Callable[[Transition[S, T]], str]]] = (),
        *,
        only: Callable[[Transition[S, T]], bool] | None = None,
    ) -> list[str]:
        """A Markdown table of the rows: From, Trigger, To, then ``columns`` (name, cell)."""
        head = ["From", "Trigger", "To", *(name for name, _ in columns)]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.rows:
            if only is not None and not only(r):
                continue
            cells = [f"`{spelled(r.source)}`", f"`{spelled(r.trigger)}`", f"`{spelled(r.target)}`"]
            cells += [cell(r) for _, cell in columns]
            lines.append("| " + " | ".join(cells) + " |")
        return [*lines, ""]
