"""Lifecycle rules on real calendar dates: appointment from receipt, paused time, deadlines."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from motcua_dossier.domain.calendar import WorkingCalendar
from motcua_dossier.domain.catalogue import Catalogue
from motcua_dossier.domain.dossier import Actor, Applicant, Channel, Dossier, Status
from motcua_dossier.domain.lifecycle import (
    apply_action,
    check_deadline,
    completion_outcome,
)
from motcua_kit.errors import FailedPrecondition, InvalidArgument, PermissionDenied

VN = ZoneInfo("Asia/Ho_Chi_Minh")
OFFICER = Actor("officer-1", "officer", "STP")
CITIZEN = Actor("citizen-1", "citizen", "")
SERVICE = Actor("payment", "service", "")


@pytest.fixture(scope="module")
def calendar() -> WorkingCalendar:
    return WorkingCalendar.load()


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue.load()


def _dossier(status: Status = Status.NEW, **kw: object) -> Dossier:
    base = Dossier(
        code="STP-270129-0001",
        procedure_code="HT-004",
        agency_code="STP",
        applicant=Applicant("Nguyễn An", "079203004567", "0905123456", "", "Đà Nẵng"),
        documents=(),
        channel=Channel.ONLINE,
        status=status,
        version=1,
        submitted_at=datetime(2027, 1, 29, 2, 0, tzinfo=UTC),
        appointment_date=date(2027, 1, 29),
        fee_vnd=8000,
        submitted_by=CITIZEN,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def _local(*args: int) -> datetime:
    return datetime(*args, tzinfo=VN)


def test_five_working_days_from_the_friday_before_tet_2027(
    calendar: WorkingCalendar, catalogue: Catalogue
) -> None:
    # Tết 2027 holidays (official): Thu 4 Feb – Wed 10 Feb. Received Fri 29 Jan 10:00:
    # Mon 1, Tue 2, Wed 3 Feb, then Thu 11, Fri 12 Feb → appointment Fri 12 Feb 2027.
    workflow = catalogue.workflow("with_payment")
    t = apply_action(
        _dossier(),
        workflow,
        "receive",
        OFFICER,
        comment="",
        now=_local(2027, 1, 29, 10, 0),
        calendar=calendar,
        processing_days=5,
    )
    assert t.dossier.status == Status.RECEIVED
    assert t.dossier.appointment_date == date(2027, 2, 12)
    assert t.dossier.original_appointment_date == date(2027, 2, 12)
    assert t.dossier.received_at == _local(2027, 1, 29, 10, 0)
    assert t.dossier.version == 2


@pytest.mark.parametrize(
    ("hour", "minute", "expected"),
    [(16, 59, date(2026, 12, 8)), (17, 1, date(2026, 12, 9))],
)
def test_receipt_after_office_hours_counts_from_the_next_working_day(
    calendar: WorkingCalendar, catalogue: Catalogue, hour: int, minute: int, expected: date
) -> None:
    t = apply_action(
        _dossier(),
        catalogue.workflow("with_payment"),
        "receive",
        OFFICER,
        comment="",
        now=_local(2026, 12, 1, hour, minute),  # a Tuesday
        calendar=calendar,
        processing_days=5,
    )
    assert t.dossier.appointment_date == expected


def test_time_waiting_for_a_supplement_does_not_count(
    calendar: WorkingCalendar, catalogue: Catalogue
) -> None:
    workflow = catalogue.workflow("standard")
    d = _dossier(
        Status.PROCESSING,
        procedure_code="HT-001",
        received_at=_local(2026, 12, 1, 9, 0),
        appointment_date=date(2026, 12, 8),
        original_appointment_date=date(2026, 12, 8),
    )
    asked = apply_action(
        d,
        workflow,
        "request_supplement",
        OFFICER,
        comment="Thiếu bản sao CCCD",
        now=_local(2026, 12, 2, 9, 0),
        calendar=calendar,
        processing_days=5,
    ).dossier
    assert asked.status == Status.SUPPLEMENT_REQUESTED and asked.paused_since is not None
    # The citizen answers 3 working days later (Wed 2 → Mon 7 Dec: Thu, Fri, Mon).
    answered = apply_action(
        asked,
        workflow,
        "supplement",
        CITIZEN,
        comment="",
        now=_local(2026, 12, 7, 9, 0),
        calendar=calendar,
        processing_days=5,
    ).dossier
    assert answered.status == Status.PROCESSING
    assert answered.paused_since is None
    assert answered.appointment_date == date(2026, 12, 11)  # Tue 8 + 3 working days
    assert answered.original_appointment_date == date(2026, 12, 8)


def test_illegal_action_names_the_state_and_the_allowed_actions(
    calendar: WorkingCalendar, catalogue: Catalogue
) -> None:
    with pytest.raises(FailedPrecondition) as info:
        apply_action(
            _dossier(Status.NEW),
            catalogue.workflow("with_payment"),
            "approve",
            OFFICER,
            comment="",
            now=_local(2026, 12, 1, 9),
            calendar=calendar,
            processing_days=1,
        )
    message = info.value.message
    assert "state 1" in message and "receive" in message and "reject" in message


def test_wrong_role_is_permission_denied(calendar: WorkingCalendar, catalogue: Catalogue) -> None:
    with pytest.raises(PermissionDenied):
        apply_action(
            _dossier(Status.NEW),
            catalogue.workflow("with_payment"),
            "receive",
            CITIZEN,
            comment="",
            now=_local(2026, 12, 1, 9),
            calendar=calendar,
            processing_days=1,
        )


def test_reasons_are_required_where_the_citizen_must_be_told_why(
    calendar: WorkingCalendar, catalogue: Catalogue
) -> None:
    with pytest.raises(InvalidArgument) as info:
        apply_action(
            _dossier(Status.NEW),
            catalogue.workflow("with_payment"),
            "reject",
            OFFICER,
            comment="  ",
            now=_local(2026, 12, 1, 9),
            calendar=calendar,
            processing_days=1,
        )
    assert info.value.field == "comment"


def test_overdue_is_found_once_and_sets_a_new_appointment(calendar: WorkingCalendar) -> None:
    d = _dossier(
        Status.PROCESSING,
        received_at=_local(2026, 12, 1, 9),
        appointment_date=date(2026, 12, 8),
        original_appointment_date=date(2026, 12, 8),
    )
    notice = check_deadline(d, date(2026, 12, 10), calendar, due_soon_days=1, extension_days=3)
    assert notice is not None and notice.kind == "overdue"
    assert notice.working_days == 2
    assert notice.dossier.overdue and notice.dossier.overdue_notified
    assert notice.dossier.appointment_date == date(2026, 12, 15)
    again = check_deadline(
        notice.dossier, date(2026, 12, 16), calendar, due_soon_days=1, extension_days=3
    )
    assert again is None


def test_due_soon_once_and_never_for_waiting_dossiers(calendar: WorkingCalendar) -> None:
    d = _dossier(
        Status.RECEIVED,
        received_at=_local(2026, 12, 1, 9),
        appointment_date=date(2026, 12, 8),
    )
    assert check_deadline(d, date(2026, 12, 3), calendar, due_soon_days=1, extension_days=3) is None
    notice = check_deadline(d, date(2026, 12, 7), calendar, due_soon_days=1, extension_days=3)
    assert notice is not None and notice.kind == "due_soon" and notice.working_days == 1
    assert (
        check_deadline(
            notice.dossier, date(2026, 12, 8), calendar, due_soon_days=1, extension_days=3
        )
        is None
    )
    waiting = replace(d, status=Status.SUPPLEMENT_REQUESTED)
    assert (
        check_deadline(waiting, date(2026, 12, 20), calendar, due_soon_days=1, extension_days=3)
        is None
    )


@pytest.mark.parametrize(
    ("done", "overdue", "outcome"),
    [
        (date(2026, 12, 7), False, "early"),
        (date(2026, 12, 8), False, "on_time"),
        (date(2026, 12, 9), False, "late"),
        (date(2026, 12, 8), True, "late"),
    ],
)
def test_completion_outcome(
    calendar: WorkingCalendar, done: date, overdue: bool, outcome: str
) -> None:
    d = _dossier(
        Status.PROCESSED,
        appointment_date=date(2026, 12, 8),
        original_appointment_date=date(2026, 12, 8),
        completed_at=datetime.combine(done, datetime.min.time(), VN) + timedelta(hours=10),
        overdue=overdue,
    )
    assert completion_outcome(d, calendar) == outcome
