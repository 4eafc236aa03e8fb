"""Dossier workflows (quy trình xử lý hồ sơ): state machines loaded from data.

Why data: each procedure's steps, who may take them and how long a dossier may wait in each
state are decided by the province, not by programmers; the rules live in ``workflows.yaml``
as one table of (from, action, to, roles), are validated when loaded
(:mod:`motcua_dossier.domain.catalogue`) into the kit's :class:`TransitionTable` (the shape
payment's and notify's state machines share), which decides the moves, refuses the others
with the kit's :class:`IllegalTransition` and draws the docs (:func:`render_workflow_mermaid`),
so picture and behaviour cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from motcua_kit.transitions import IllegalTransition, Transition, TransitionTable

#: Roles carried in the caller's token; an action names the roles allowed to take it.
ROLES: frozenset[str] = frozenset({"citizen", "officer", "admin", "service"})

#: The national dossier status list; workflow state codes must be among these.
NATIONAL_STATUS_CODES: range = range(1, 11)


class ActionNotAllowed(Exception):
    """The action is legal from this state, but not for the caller's role."""

    def __init__(
        self, workflow_id: str, state: int, action: str, role: str, allowed: tuple[str, ...]
    ) -> None:
        self.workflow_id = workflow_id
        self.state = state
        self.action = action
        self.role = role
        super().__init__(
            f"workflow {workflow_id!r}: role {role!r} may not take action {action!r} in state "
            f"{state}; allowed roles: {', '.join(allowed)}"
        )


class UnknownAction(KeyError):
    """No action of that name in the workflow."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class State:
    """A dossier state, coded by the national status list; ``sla_days`` in working days."""

    code: int
    name: str
    sla_days: int | None
    terminal: bool


@dataclass(frozen=True)
class Action:
    """A named step from any of ``from_states`` to ``to_state``, open to ``roles``; ``event``
    is the CloudEvents type it emits, as the catalogue's loader was told (else empty)."""

    name: str
    from_states: tuple[int, ...]
    to_state: int
    roles: tuple[str, ...]
    event: str = ""


@dataclass(frozen=True)
class Workflow:
    """A validated state machine; build it with the catalogue loader, which checks it."""

    id: str
    name: str
    states: tuple[State, ...]
    initial: int
    actions: tuple[Action, ...]
    #: The legal moves: one row per (from state, action), with the action's event.
    table: TransitionTable[int, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        rows = [
            Transition(origin, a.name, a.to_state, a.event)
            for a in self.actions
            for origin in a.from_states
        ]
        object.__setattr__(self, "table", TransitionTable(f"workflow {self.id!r}", rows))

    def state(self, code: int) -> State:
        for state in self.states:
            if state.code == code:
                return state
        raise KeyError(f"workflow {self.id!r} has no state {code}")

    def action(self, name: str) -> Action:
        for action in self.actions:
            if action.name == name:
                return action
        known = ", ".join(a.name for a in self.actions)
        raise UnknownAction(f"workflow {self.id!r} has no action {name!r} (known: {known})")

    def next_state(self, current: int, action: str, role: str) -> int:
        """The state after ``role`` takes ``action`` in ``current``; refuses otherwise.

        Legality is checked before the role, so a caller learns first that the step does not
        exist here at all, which no other role could change.
        """
        if not any(state.code == current for state in self.states):
            raise self._illegal(current, action, f"unknown state {current}")
        try:
            step = self.action(action)
        except UnknownAction as exc:
            raise self._illegal(current, action, str(exc)) from None
        if not self.table.allowed(current, action):
            origins = ", ".join(str(code) for code in step.from_states)
            raise self._illegal(
                current,
                action,
                f"action {action!r} is not allowed in state {current} "
                f"({self.state(current).name}); it is allowed from: {origins}",
            )
        if role not in step.roles:
            raise ActionNotAllowed(self.id, current, action, role, step.roles)
        return self.table.next_state(current, action)

    def _illegal(self, current: int, action: str, reason: str) -> IllegalTransition:
        """The kit's refusal, worded as dossier's clients have always read it."""
        return IllegalTransition(self.table.what, current, action, f"{self.table.what}: {reason}")

    def allowed_actions(self, state: int, role: str) -> tuple[Action, ...]:
        """The actions ``role`` may take in ``state``, in the order the data lists them."""
        return tuple(a for a in self.actions if state in a.from_states and role in a.roles)


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;").replace(":", "#58;").replace(";", "#59;")


def _state_name(state: State) -> str:
    label = f"{state.code} · {state.name}"
    if state.sla_days is not None:
        label += f" (SLA {state.sla_days} ngày làm việc)"
    return _mermaid_text(label)


def render_workflow_mermaid(workflow: Workflow) -> str:
    """The workflow as a fenced Mermaid ``stateDiagram-v2``, drawn by the kit from its table:
    one edge per (from, action, to), labelled with the roles that may take it."""

    def label(row: Transition[int, str]) -> str:
        roles = ", ".join(workflow.action(row.trigger).roles)
        return f"{_mermaid_text(row.trigger)} ({roles})"

    lines = workflow.table.mermaid(
        [workflow.initial],
        node=lambda code: f"s{code}",
        label=label,
        names=lambda code: _state_name(workflow.state(code)),
    )
    return "\n".join(lines)
