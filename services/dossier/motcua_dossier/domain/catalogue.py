"""The procedure catalogue: agencies, procedures (thủ tục hành chính) and their workflows.

Why data: which agencies exist, what each procedure costs and how long it may take change
with every reorganisation (Quảng Nam became part of Đà Nẵng in 2025), so nothing here is
hard-coded: :meth:`Catalogue.load` reads ``agencies.yaml``, ``procedures.yaml`` and
``workflows.yaml`` and refuses a bad file with :class:`ReferenceDataError`.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from motcua_dossier.domain.reference_data import (
    DATA_DIR,
    ReferenceDataError,
    YamlValue,
    read_yaml,
)
from motcua_dossier.domain.workflow import (
    NATIONAL_STATUS_CODES,
    ROLES,
    Action,
    State,
    Workflow,
)

OnlineLevel = Literal["full", "partial"]
ONLINE_LEVELS: tuple[OnlineLevel, ...] = ("full", "partial")

#: The payment-required national status: fee-bearing procedures need a workflow with it.
PAYMENT_STATE = 6

# Agency codes are the first part of a dossier code `<AGENCY>-<YYMMDD>-<NNNN>`.
_AGENCY_CODE = re.compile(r"[A-Z][A-Z0-9]{1,11}")
_IDENTIFIER = re.compile(r"[a-z][a-z0-9_]*")
_PROCEDURE_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-]*")


class UnknownReference(KeyError):
    """A lookup by code found nothing; ``str()`` gives the plain message."""

    def __str__(self) -> str:
        return str(self.args[0])


class UnknownAgency(UnknownReference):
    pass


class UnknownProcedure(UnknownReference):
    pass


class UnknownWorkflow(UnknownReference):
    pass


@dataclass(frozen=True)
class Agency:
    """An agency (cơ quan), the tenant that owns and processes dossiers."""

    code: str
    name: str
    province: str


@dataclass(frozen=True)
class RequiredDocument:
    """A document (thành phần hồ sơ) the applicant attaches; optional ones are situational."""

    name: str
    mandatory: bool


@dataclass(frozen=True)
class Procedure:
    """An administrative procedure; ``fee_vnd`` None means no fee, days are working days."""

    code: str
    name: str
    agency_code: str
    fee_vnd: int | None
    processing_days: int
    required_documents: tuple[RequiredDocument, ...]
    online_level: OnlineLevel
    workflow_id: str

    @property
    def requires_payment(self) -> bool:
        return bool(self.fee_vnd)


#: The event type an action (by name) emits.
EventOf = Callable[[str], str]


def no_event(action: str) -> str:
    """No event names (reading the data only, e.g. to validate it)."""
    return ""


class Catalogue:
    """Agencies, procedures and workflows, looked up by code; read-only once built."""

    def __init__(
        self,
        agencies: Mapping[str, Agency],
        procedures: Mapping[str, Procedure],
        workflows: Mapping[str, Workflow],
    ) -> None:
        self._agencies = dict(agencies)
        self._procedures = dict(procedures)
        self._workflows = dict(workflows)

    @classmethod
    def load(cls, directory: Path | None = None, *, event_of: EventOf = no_event) -> Catalogue:
        """Read and validate the three catalogue files (default: the package's data).

        ``event_of`` names the event type each action emits, for the workflows' transition
        tables: event names are the service's (its ``events`` module), not the domain's.
        """
        directory = DATA_DIR if directory is None else Path(directory)
        agencies = _load_agencies(directory / "agencies.yaml")
        workflows = _load_workflows(directory / "workflows.yaml", event_of)
        procedures = _load_procedures(directory / "procedures.yaml", agencies, workflows)
        return cls(agencies, procedures, workflows)

    def agency(self, code: str) -> Agency:
        try:
            return self._agencies[code]
        except KeyError:
            raise UnknownAgency(f"no agency with code {code!r}") from None

    def procedure(self, code: str) -> Procedure:
        try:
            return self._procedures[code]
        except KeyError:
            raise UnknownProcedure(f"no procedure with code {code!r}") from None

    def workflow(self, workflow_id: str) -> Workflow:
        try:
            return self._workflows[workflow_id]
        except KeyError:
            raise UnknownWorkflow(f"no workflow with id {workflow_id!r}") from None

    def agencies(self) -> tuple[Agency, ...]:
        return tuple(self._agencies.values())

    def workflows(self) -> tuple[Workflow, ...]:
        return tuple(self._workflows.values())

    def procedures(self, agency_code: str | None = None) -> tuple[Procedure, ...]:
        """All procedures in data order, or those of one agency (which must exist)."""
        if agency_code is None:
            return tuple(self._procedures.values())
        self.agency(agency_code)
        return tuple(p for p in self._procedures.values() if p.agency_code == agency_code)


def _unique(value: YamlValue, key: str, seen: dict[str, int], kind: str) -> str:
    """Refuse a second use of ``key``; ``seen`` maps keys to the line of first use."""
    if key in seen:
        raise value.error(f"duplicate {kind} {key!r} (first on line {seen[key]})")
    seen[key] = value.line
    return key


def _matching(value: YamlValue, pattern: re.Pattern[str], what: str) -> str:
    text = value.text()
    if not pattern.fullmatch(text):
        raise value.error(f"{text!r} is not a valid {what}")
    return text


def _load_agencies(path: Path) -> dict[str, Agency]:
    agencies: dict[str, Agency] = {}
    lines: dict[str, int] = {}
    for item in read_yaml(path, ["agencies"])["agencies"].items():
        f = item.fields(["code", "name", "province"])
        code = _matching(f["code"], _AGENCY_CODE, "agency code (uppercase ASCII, no hyphen)")
        _unique(f["code"], code, lines, "agency code")
        agencies[code] = Agency(code, f["name"].text(), f["province"].text())
    if not agencies:
        raise ReferenceDataError(path, None, "agencies", "no agency defined")
    return agencies


def _load_procedures(
    path: Path, agencies: Mapping[str, Agency], workflows: Mapping[str, Workflow]
) -> dict[str, Procedure]:
    procedures: dict[str, Procedure] = {}
    lines: dict[str, int] = {}
    required = [
        "code",
        "name",
        "agency",
        "fee_vnd",
        "processing_days",
        "required_documents",
        "online_level",
        "workflow",
    ]
    for item in read_yaml(path, ["procedures"])["procedures"].items():
        f = item.fields(required)
        code = _unique(
            f["code"], _matching(f["code"], _PROCEDURE_CODE, "procedure code"), lines, "code"
        )
        agency = f["agency"].text()
        if agency not in agencies:
            raise f["agency"].error(f"unknown agency {agency!r} (known: {', '.join(agencies)})")
        workflow_id = f["workflow"].text()
        if workflow_id not in workflows:
            raise f["workflow"].error(
                f"unknown workflow {workflow_id!r} (known: {', '.join(workflows)})"
            )
        fee = f["fee_vnd"].optional_integer(minimum=0)
        has_payment_step = any(s.code == PAYMENT_STATE for s in workflows[workflow_id].states)
        if bool(fee) != has_payment_step:
            reason = (
                f"the fee is {fee} VND, so the workflow needs the payment state {PAYMENT_STATE}"
                if fee
                else f"there is no fee, so the workflow must not have the payment state "
                f"{PAYMENT_STATE}"
            )
            raise f["workflow"].error(f"{reason}; workflow {workflow_id!r} does not fit")
        level = f["online_level"].text()
        if level not in ONLINE_LEVELS:
            raise f["online_level"].error(f"must be one of {', '.join(ONLINE_LEVELS)}")
        documents = []
        for doc in f["required_documents"].items():
            d = doc.fields(["name", "mandatory"])
            documents.append(RequiredDocument(d["name"].text(), d["mandatory"].boolean()))
        procedures[code] = Procedure(
            code=code,
            name=f["name"].text(),
            agency_code=agency,
            fee_vnd=fee,
            processing_days=f["processing_days"].integer(minimum=0),
            required_documents=tuple(documents),
            online_level=level,
            workflow_id=workflow_id,
        )
    return procedures


def _load_workflows(path: Path, event_of: EventOf) -> dict[str, Workflow]:
    workflows: dict[str, Workflow] = {}
    lines: dict[str, int] = {}
    for item in read_yaml(path, ["workflows"])["workflows"].items():
        f = item.fields(["id", "name", "states", "initial", "actions"])
        workflow_id = _unique(
            f["id"], _matching(f["id"], _IDENTIFIER, "workflow id"), lines, "workflow id"
        )
        workflows[workflow_id] = _read_workflow(workflow_id, f, event_of)
    if not workflows:
        raise ReferenceDataError(path, None, "workflows", "no workflow defined")
    return workflows


def _read_workflow(workflow_id: str, f: dict[str, YamlValue], event_of: EventOf) -> Workflow:
    """Build one workflow and check it is a sound state machine; errors point at the data."""
    states: dict[int, State] = {}
    state_values: dict[int, YamlValue] = {}
    for item in f["states"].items():
        s = item.fields(["code", "name", "sla_days", "terminal"])
        code = s["code"].integer(min(NATIONAL_STATUS_CODES), max(NATIONAL_STATUS_CODES))
        if code in states:
            raise s["code"].error(
                f"duplicate state {code} (first on line {state_values[code].line})"
            )
        states[code] = State(
            code, s["name"].text(), s["sla_days"].optional_integer(0), s["terminal"].boolean()
        )
        state_values[code] = item

    def known_state(value: YamlValue) -> int:
        code = value.integer()
        if code not in states:
            raise value.error(f"unknown state {code} (states: {', '.join(map(str, states))})")
        return code

    initial = known_state(f["initial"])
    if states[initial].terminal:
        raise f["initial"].error(f"initial state {initial} is terminal")

    actions: list[Action] = []
    names: dict[str, int] = {}
    for item in f["actions"].items():
        a = item.fields(["name", "from", "to", "roles"])
        name = _unique(a["name"], _matching(a["name"], _IDENTIFIER, "action name"), names, "action")
        origins: list[int] = []
        for origin_value in a["from"].items():
            origin = known_state(origin_value)
            if states[origin].terminal:
                raise origin_value.error(
                    f"terminal state {origin} cannot have an exit (action {name!r})"
                )
            if origin not in origins:
                origins.append(origin)
        if not origins:
            raise a["from"].error("must list at least one state")
        roles: list[str] = []
        for role_value in a["roles"].items():
            role = role_value.text()
            if role not in ROLES:
                raise role_value.error(f"unknown role {role!r} (roles: {', '.join(sorted(ROLES))})")
            if role not in roles:
                roles.append(role)
        if not roles:
            raise a["roles"].error("must list at least one role")
        to_state = known_state(a["to"])
        actions.append(Action(name, tuple(origins), to_state, tuple(roles), event_of(name)))

    exits = {code: {a.to_state for a in actions if code in a.from_states} for code in states}
    for code, state in states.items():
        if not state.terminal and not exits[code]:
            raise state_values[code].error(f"non-terminal state {code} has no exit")
    reachable = _closure(initial, exits)
    for code in states:
        if code not in reachable:
            raise state_values[code].error(f"state {code} is unreachable from initial {initial}")
    entries = {code: {o for o in states if code in exits[o]} for code in states}
    ending = set().union(*(_closure(c, entries) for c in states if states[c].terminal))
    for code in states:
        if code not in ending:
            raise state_values[code].error(f"no path from state {code} to a terminal state")
    return Workflow(workflow_id, f["name"].text(), tuple(states.values()), initial, tuple(actions))


def _closure(start: int, edges: Mapping[int, set[int]]) -> set[int]:
    """States reachable from ``start`` (itself included) along ``edges``."""
    seen = {start}
    queue = deque([start])
    while queue:
        for nxt in edges[queue.popleft()]:
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return seen
