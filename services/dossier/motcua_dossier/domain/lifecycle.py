"""What happens to a dossier when a workflow action is taken, and when its deadline nears.

Pure functions over :class:`~motcua_dossier.domain.dossier.Dossier`: they return the changed
dossier and leave persistence and events to the caller. The rules:

* the appointment date (ngày hẹn trả) is computed from the time of receipt, in working days;
  a receipt after office hours counts from the next working day;
* time waiting on the citizen (supplement requested, payment required) does not count: on
  resuming, the appointment moves by the working days spent waiting;
* a dossier whose appointment passes before a result is overdue once: it gets a new
  appointment date and the citizen an apology (the event says so).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Protocol

from motcua_dossier.domain.catalogue import Procedure
from motcua_dossier.domain.dossier import Actor, Document, Dossier, Status, Submission, dossier_code
from motcua_dossier.domain.workflow import ActionNotAllowed, Workflow
from motcua_kit.errors import Aborted, FailedPrecondition, InvalidArgument, PermissionDenied
from motcua_kit.transitions import IllegalTransition

#: States in which the clock stops: the agency waits on the citizen.
PAUSED = frozenset({Status.SUPPLEMENT_REQUESTED, Status.PAYMENT_REQUIRED})
#: States in which the agency owes a result by the appointment date.
RUNNING = frozenset({Status.NEW, Status.RECEIVED, Status.PROCESSING})
#: Actions that must say why.
NEEDS_COMMENT = frozenset({"reject", "request_supplement", "stop", "withdraw"})


class Calendar(Protocol):
    def appointment_date(self, submitted: datetime | date, processing_days: int) -> date: ...
    def add_working_days(self, start: datetime | date, days: int) -> date: ...
    def working_days_between(self, a: date, b: date) -> int: ...
    def receipt_day(self, submitted: datetime | date) -> date: ...


@dataclass(frozen=True)
class AppliedAction:
    """One applied action: the dossier after it, and what the event will say (not to be
    confused with a :class:`~motcua_kit.transitions.Transition`, a row of the workflow's
    table)."""

    dossier: Dossier
    previous_status: Status
    action: str
    actor: Actor
    comment: str
    at: datetime


def file_dossier(
    submission: Submission,
    procedure: Procedure,
    *,
    local_day: date,
    sequence: int,
    now: datetime,
    appointment_date: date,
    submitted_by: Actor,
) -> Dossier:
    """The new dossier a submission becomes: numbered in its agency's daily sequence, in state
    NEW, at version 1, with the procedure's fee and the appointment the calendar gave."""
    return Dossier(
        code=dossier_code(procedure.agency_code, local_day, sequence),
        procedure_code=procedure.code,
        agency_code=procedure.agency_code,
        applicant=submission.applicant,
        documents=submission.documents,
        channel=submission.channel,
        status=Status.NEW,
        version=1,
        submitted_at=now,
        appointment_date=appointment_date,
        fee_vnd=procedure.fee_vnd,
        submitted_by=submitted_by,
        idempotency_fingerprint=submission.fingerprint(),
    )


def check_action_request(code: str, action: str, expected_version: int) -> None:
    """An action request names the dossier and the action, and the version last read
    (optimistic concurrency: no blind writes)."""
    if not code:
        raise InvalidArgument("code", "is required")
    if not action:
        raise InvalidArgument("action", "is required")
    if expected_version <= 0:
        raise InvalidArgument("expected_version", "is required (the version you last read)")


def check_action_applies(dossier: Dossier, workflow: Workflow, action: str, expected: int) -> None:
    """The action is one of the dossier's workflow, and the caller read its current version."""
    if action not in {a.name for a in workflow.actions}:
        known = ", ".join(a.name for a in workflow.actions)
        raise InvalidArgument("action", f"unknown action {action!r}; known: {known}")
    if dossier.version != expected:
        raise Aborted(
            f"dossier {dossier.code} is at version {dossier.version}, not {expected}; "
            "re-read it and retry"
        )


def acting_role(roles: frozenset[str], workflow: Workflow, action: str) -> str:
    """The caller's role this action is taken under (the first of theirs the action allows)."""
    try:
        allowed = workflow.action(action).roles
    except KeyError:
        return sorted(roles)[0] if roles else ""
    for role in ("officer", "citizen", "service", "admin"):
        if role in roles and role in allowed:
            return role
    return next(iter(sorted(roles)), "")


def apply_action(
    dossier: Dossier,
    workflow: Workflow,
    action: str,
    actor: Actor,
    *,
    comment: str,
    now: datetime,
    calendar: Calendar,
    processing_days: int,
    documents: tuple[Document, ...] = (),
) -> AppliedAction:
    """Take ``action``; an illegal step is refused naming the state and the allowed actions."""
    if action in NEEDS_COMMENT and not comment.strip():
        raise InvalidArgument("comment", f"is required for {action!r} (say why)")
    try:
        target = Status(workflow.next_state(int(dossier.status), action, actor.role))
    except IllegalTransition:
        allowed = [a.name for a in workflow.allowed_actions(int(dossier.status), actor.role)]
        raise FailedPrecondition(
            f"action {action!r} is not allowed: dossier {dossier.code} is in state "
            f"{int(dossier.status)} ({workflow.state(int(dossier.status)).name}); "
            f"allowed actions for {actor.role}: {', '.join(allowed) or 'none'}"
        ) from None
    except ActionNotAllowed as exc:
        raise PermissionDenied(str(exc)) from None

    changed = replace(
        dossier,
        status=target,
        version=dossier.version + 1,
        documents=dossier.documents + documents,
    )
    if action == "receive":
        appointment = calendar.appointment_date(now, processing_days)
        changed = replace(
            changed,
            received_at=now,
            appointment_date=appointment,
            original_appointment_date=appointment,
        )
    if dossier.status in PAUSED and target not in PAUSED and dossier.paused_since is not None:
        waited = calendar.working_days_between(
            calendar.receipt_day(dossier.paused_since), calendar.receipt_day(now)
        )
        if waited > 0:
            changed = replace(
                changed,
                appointment_date=calendar.add_working_days(changed.appointment_date, waited),
            )
        changed = replace(changed, paused_since=None)
    if target in PAUSED and dossier.status not in PAUSED:
        changed = replace(changed, paused_since=now)
    if target == Status.PROCESSED:
        changed = replace(changed, completed_at=now)
    return AppliedAction(changed, dossier.status, action, actor, comment.strip(), now)


@dataclass(frozen=True)
class DeadlineNotice:
    """A due-soon or overdue finding for one dossier."""

    kind: str  # "due_soon" | "overdue"
    dossier: Dossier
    due_date: date
    working_days: int


def check_deadline(
    dossier: Dossier,
    today: date,
    calendar: Calendar,
    *,
    due_soon_days: int,
    extension_days: int,
) -> DeadlineNotice | None:
    """At most one notice per kind per dossier: the flags on the dossier say what was sent."""
    if dossier.status not in RUNNING or dossier.received_at is None:
        return None
    due = dossier.appointment_date
    if today > due and not dossier.overdue_notified:
        late_by = calendar.working_days_between(due, today)
        new_date = calendar.add_working_days(today, extension_days)
        changed = replace(
            dossier,
            overdue=True,
            overdue_notified=True,
            appointment_date=new_date,
            version=dossier.version + 1,
        )
        return DeadlineNotice("overdue", changed, due, late_by)
    if today <= due and not dossier.due_soon_notified and not dossier.overdue:
        left = calendar.working_days_between(today, due)
        if left <= due_soon_days:
            changed = replace(dossier, due_soon_notified=True, version=dossier.version + 1)
            return DeadlineNotice("due_soon", changed, due, left)
    return None


def completion_outcome(dossier: Dossier, calendar: Calendar) -> str | None:
    """early / on_time / late for a processed dossier (against the first promised date)."""
    if dossier.completed_at is None or dossier.original_appointment_date is None:
        return None
    done = calendar.receipt_day(dossier.completed_at)
    promised = dossier.original_appointment_date
    if dossier.overdue or done > dossier.appointment_date:
        return "late"
    return "early" if done < promised else "on_time"
