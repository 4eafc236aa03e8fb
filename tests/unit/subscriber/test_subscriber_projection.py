"""The example subscriber (examples/stats-projector) with the kit's test double: its verdicts,
its per-agency counts, and its indifference to redelivery and reordering."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from motcua.dossier.v1 import dossier_pb2
from motcua.dossier.v1 import events_pb2 as dossier_events
from motcua_subscriber.testing import FakeBroker
from stats_projector.calendar import WorkingDays
from stats_projector.projection import AgencyStatistics, build_subscriber, outcome, statistics

VN = ZoneInfo("Asia/Ho_Chi_Minh")
PROCESSED = "vn.motcua.dossier.processed.v1"
RECEIVED = "vn.motcua.dossier.received.v1"
CALENDAR = WorkingDays()


def _ts(moment: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(moment.astimezone(UTC))
    return ts


def _dossier(
    code: str,
    *,
    agency: str = "PHOIAN",
    version: int = 2,
    status: int = dossier_pb2.DOSSIER_STATUS_RECEIVED,
    received: datetime | None = datetime(2026, 3, 2, 9, 0, tzinfo=VN),
    completed: datetime | None = None,
    promised: str = "2026-03-23",
    appointment: str = "",
    overdue: bool = False,
) -> dossier_pb2.Dossier:
    d = dossier_pb2.Dossier(
        code=code,
        agency_code=agency,
        procedure_code="XD-001",
        version=version,
        status=status,
        original_appointment_date=promised,
        appointment_date=appointment or promised,
        overdue=overdue,
    )
    if received is not None:
        d.received_at.CopyFrom(_ts(received))
    if completed is not None:
        d.completed_at.CopyFrom(_ts(completed))
    return d


def _processed(code: str, completed: datetime, **kw: Any) -> dossier_pb2.Dossier:
    return _dossier(
        code, version=4, status=dossier_pb2.DOSSIER_STATUS_PROCESSED, completed=completed, **kw
    )


@pytest.fixture
def broker() -> Iterator[FakeBroker]:
    with FakeBroker(build_subscriber(CALENDAR)) as fake:
        yield fake


def _changed(broker: FakeBroker, dossier: dossier_pb2.Dossier, event_type: str) -> str:
    return broker.publish(dossier_events.DossierStatusChanged(dossier=dossier), type=event_type)


def _stats(broker: FakeBroker, **kw: Any) -> dict[str, AgencyStatistics]:
    with broker.session() as session:
        return {s.agency_code: s for s in statistics(session, **kw)}


@pytest.mark.parametrize(
    ("completed", "expected"),
    [
        (datetime(2026, 3, 20, 10, 0, tzinfo=VN), "early"),  # Friday before a Monday date
        (datetime(2026, 3, 23, 16, 59, tzinfo=VN), "on_time"),  # the promised day, in hours
        (datetime(2026, 3, 23, 17, 0, tzinfo=VN), "late"),  # after office close: next day
        (datetime(2026, 3, 21, 20, 0, tzinfo=VN), "on_time"),  # Saturday counts on Monday
        (datetime(2026, 3, 24, 8, 0, tzinfo=VN), "late"),
    ],
)
def test_the_verdict_counts_the_completion_on_its_working_day(
    completed: datetime, expected: str
) -> None:
    assert outcome(_processed("A-260302-0001", completed), CALENDAR) == expected


def test_an_overdue_dossier_is_late_even_when_done_before_its_new_date() -> None:
    d = _processed(
        "A-260302-0001",
        datetime(2026, 3, 25, 9, 0, tzinfo=VN),
        appointment="2026-03-26",
        overdue=True,
    )
    assert outcome(d, CALENDAR) == "late"


def test_a_public_holiday_is_no_working_day() -> None:
    # 1 January is a public holiday: done then, it counts on Friday 2 January.
    d = _processed("A-251231-0001", datetime(2026, 1, 1, 10, 0, tzinfo=VN), promised="2026-01-02")
    assert outcome(d, CALENDAR) == "on_time"


def test_an_announced_day_off_moves_the_counting_day(tmp_path: Path) -> None:
    extra = tmp_path / "holidays_extra.yaml"
    extra.write_text("country: VN\ndays:\n  - {date: 2026-03-20, name: nghỉ bù, kind: day_off}\n")
    calendar = WorkingDays.load(extra, office_close=time(17, 0))
    d = _processed("A-260302-0001", datetime(2026, 3, 20, 9, 0, tzinfo=VN))
    assert outcome(d, CALENDAR) == "early"
    assert outcome(d, calendar) == "on_time"  # Friday off: counts on Monday 23


def test_a_dossier_not_yet_completed_has_no_verdict() -> None:
    assert outcome(_dossier("A-260302-0001"), CALENDAR) is None


def test_counts_per_agency_follow_the_latest_snapshot(broker: FakeBroker) -> None:
    early = datetime(2026, 3, 10, 9, 0, tzinfo=VN)
    submitted = dossier_events.DossierSubmitted(
        dossier=_dossier(
            "PHOIAN-260302-0001", version=1, received=None, status=dossier_pb2.DOSSIER_STATUS_NEW
        )
    )
    assert broker.publish(submitted) == "processed"
    assert _stats(broker) == {}  # filed, not received: not counted yet
    assert _changed(broker, _dossier("PHOIAN-260302-0001"), RECEIVED) == "processed"
    _changed(broker, _processed("PHOIAN-260302-0002", early), PROCESSED)
    _changed(
        broker,
        _processed("PHOIAN-260302-0003", datetime(2026, 3, 30, 9, 0, tzinfo=VN)),
        PROCESSED,
    )
    _changed(
        broker,
        _dossier("PHOIAN-260302-0004", status=dossier_pb2.DOSSIER_STATUS_WITHDRAWN, version=3),
        "vn.motcua.dossier.withdrawn.v1",
    )
    _changed(broker, _processed("STP-260302-0001", early, agency="STP"), PROCESSED)
    stats = _stats(broker)
    assert stats["PHOIAN"] == AgencyStatistics("PHOIAN", 4, 1, 0, 1, 1)
    assert stats["STP"] == AgencyStatistics("STP", 1, 1, 0, 0, 0)
    assert stats["PHOIAN"].on_time_ratio == 0.5
    assert _stats(broker, agency_code="STP").keys() == {"STP"}


def test_an_older_snapshot_arriving_late_changes_nothing(broker: FakeBroker) -> None:
    done = _processed("PHOIAN-260302-0001", datetime(2026, 3, 10, 9, 0, tzinfo=VN))
    _changed(broker, done, PROCESSED)
    assert _changed(broker, _dossier("PHOIAN-260302-0001", version=2), RECEIVED) == "processed"
    assert _stats(broker)["PHOIAN"] == AgencyStatistics("PHOIAN", 1, 1, 0, 0, 0)


def test_a_deadline_event_marks_the_dossier_overdue(broker: FakeBroker) -> None:
    late = _dossier("PHOIAN-260302-0001", version=3, appointment="2026-03-26", overdue=True)
    deadline = dossier_events.DossierDeadline(dossier=late, due_date="2026-03-23")
    assert broker.publish(deadline, type="vn.motcua.dossier.overdue.v1") == "processed"
    _changed(
        broker,
        _processed(
            "PHOIAN-260302-0001",
            datetime(2026, 3, 25, 9, 0, tzinfo=VN),
            appointment="2026-03-26",
            overdue=True,
        ),
        PROCESSED,
    )
    assert _stats(broker)["PHOIAN"].late == 1


def test_the_period_is_the_local_day_of_receipt(broker: FakeBroker) -> None:
    # 23:30 on 2 March in Vietnam (16:30 UTC): 2 March, as GetStatistics counts it.
    late_evening = datetime(2026, 3, 2, 23, 30, tzinfo=VN)
    _changed(broker, _dossier("PHOIAN-260302-0001", received=late_evening), RECEIVED)
    assert (
        _stats(broker, from_date=date(2026, 3, 2), to_date=date(2026, 3, 2))["PHOIAN"].received == 1
    )
    assert _stats(broker, from_date=date(2026, 3, 3)) == {}
