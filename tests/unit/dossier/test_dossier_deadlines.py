"""The deadline scanner and appointment dates, in-process with a controlled clock.

The service host runs the real service class on a real database (SQLite and PostgreSQL); only
the clock is replaced — the one-line dependency override the kit offers.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from motcua_dossier import events
from motcua_dossier.adapters.db import outbox
from motcua_dossier.domain.dossier import Applicant, DocumentInput, Status, validate_submission
from motcua_dossier.service import DossierService
from motcua_dossier.settings import DossierSettings
from motcua_kit.auth import Principal
from motcua_kit.service import ServiceHost

VN = ZoneInfo("Asia/Ho_Chi_Minh")
OFFICER = Principal("officer-1", frozenset({"officer"}), agency_code="PHOIAN")
CITIZEN_ID = "079203004567"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _host(url: str, clock: Clock) -> ServiceHost:
    host = ServiceHost(
        DossierService, DossierSettings(database_url=url), overrides={"clock": clock}
    )
    host.migrate()
    return host


def _submit(service: DossierService, key: str) -> str:
    submission = validate_submission(
        procedure_code="XD-001",  # PHOIAN, 15 working days, with payment
        applicant=Applicant.validated(
            "Lê Văn Bình", CITIZEN_ID, "0905123456", "", "Hội An, Đà Nẵng"
        ),
        documents=[DocumentInput("Đơn đề nghị", "application/pdf", 10, "a" * 64)],
        channel=1,
        idempotency_key=key,
    )
    dossier, _ = service.submit(OFFICER, submission)
    return dossier.code


def _events(host: ServiceHost, event_type: str) -> list[str]:
    with host.sessions() as session:
        return list(
            session.scalars(select(outbox.c.event_key).where(outbox.c.event_type == event_type))
        )


@pytest.mark.parametrize(
    ("hour", "minute", "expected"),
    [(16, 59, date(2026, 12, 22)), (17, 1, date(2026, 12, 23))],
)
def test_appointment_is_counted_from_receipt_in_working_days(
    database: Callable[[str], str], hour: int, minute: int, expected: date
) -> None:
    clock = Clock(datetime(2026, 12, 1, 9, 0, tzinfo=VN))
    host = _host(database("dossier"), clock)
    service = host.service
    assert isinstance(service, DossierService)
    code = _submit(service, "k1")
    clock.now = datetime(2026, 12, 1, hour, minute, tzinfo=VN)  # Tuesday
    received = service.transition(OFFICER, code, "receive", "", 1)
    # 15 working days from Tue 1 Dec 2026 (receipt day) → Tue 22 Dec; after 17:00 → Wed 23 Dec.
    assert received.appointment_date == expected
    host.engine.dispose()


def test_overdue_scanner_run_twice_emits_one_event_per_dossier(
    database: Callable[[str], str],
) -> None:
    clock = Clock(datetime(2026, 12, 1, 9, 0, tzinfo=VN))
    host = _host(database("dossier"), clock)
    service = host.service
    assert isinstance(service, DossierService)
    codes = [_submit(service, f"k{i}") for i in range(3)]
    for code in codes[:2]:
        service.transition(OFFICER, code, "receive", "", 1)  # appointment Tue 22 Dec
    # One day before: due soon for the two received dossiers, nothing for the new one.
    clock.now = datetime(2026, 12, 21, 8, 0, tzinfo=VN)
    assert service.scan_deadlines() == 2
    assert service.scan_deadlines() == 0
    assert sorted(_events(host, events.DUE_SOON)) == sorted(codes[:2])
    # After the appointment: overdue, once each, with a new appointment and an apology event.
    clock.now = datetime(2026, 12, 24, 8, 0, tzinfo=VN)
    assert service.scan_deadlines() == 2
    assert service.scan_deadlines() == 0
    clock.now = datetime(2027, 1, 20, 8, 0, tzinfo=VN)
    assert service.scan_deadlines() == 0
    assert sorted(_events(host, events.OVERDUE)) == sorted(codes[:2])
    late = service.get(OFFICER, codes[0])
    assert late.overdue and late.status == Status.RECEIVED
    assert late.original_appointment_date == date(2026, 12, 22)
    assert late.appointment_date == date(2026, 12, 29)  # Thu 24 + 3 working days
    host.engine.dispose()


def test_statistics_count_a_dossier_under_its_local_day_of_receipt(
    database: Callable[[str], str],
) -> None:
    """Received at 00:30 in Vietnam is 17:30 UTC the day before: it counts for the local day,
    on SQLite (which drops zones) as on PostgreSQL. The service's clock runs in UTC."""
    clock = Clock(datetime(2026, 11, 30, 17, 0, tzinfo=UTC))
    host = _host(database("dossier"), clock)
    service = host.service
    assert isinstance(service, DossierService)
    code = _submit(service, "k-midnight")
    clock.now = datetime(2026, 11, 30, 17, 30, tzinfo=UTC)  # 1 Dec 2026, 00:30 in Hà Nội
    service.transition(OFFICER, code, "receive", "", 1)

    def received(day: str) -> int:
        return service.statistics(OFFICER, "", "", day, day).received

    assert received("2026-12-01") == 1
    assert received("2026-11-30") == 0
    host.engine.dispose()
