"""GetStatistics' figures: received, early, on time, late and in progress, for a period.

Pure: the dossiers received in the period come in, the counts go out. The period is given as
local dates (the agency's day, not UTC's), as the national reporting counts it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from motcua_dossier.domain.dossier import Dossier, Status
from motcua_dossier.domain.lifecycle import Calendar, completion_outcome
from motcua_kit.errors import InvalidArgument

# Statuses that end a dossier without a result: neither done nor still in progress.
TERMINAL = frozenset({Status.NOT_RECEIVED, Status.WITHDRAWN, Status.STOPPED})


@dataclass(frozen=True)
class Statistics:
    received: int
    early: int
    on_time: int
    late: int
    in_progress: int

    @property
    def on_time_ratio(self) -> float:
        done = self.early + self.on_time + self.late
        return (self.early + self.on_time) / done if done else 0.0


def tally(dossiers: Iterable[Dossier], calendar: Calendar) -> Statistics:
    """Count the dossiers by completion outcome; unfinished and not terminal is in progress."""
    counts = {"early": 0, "on_time": 0, "late": 0}
    received = in_progress = 0
    for d in dossiers:
        received += 1
        outcome = completion_outcome(d, calendar)
        if outcome:
            counts[outcome] += 1
        elif d.status not in TERMINAL:
            in_progress += 1
    return Statistics(received, counts["early"], counts["on_time"], counts["late"], in_progress)


def receipt_period(start: str, end: str, timezone: str) -> tuple[datetime | None, datetime | None]:
    """The [from, before) instants of receipt for the local dates ``start``..``end`` (both
    included, either open when empty)."""
    tz = ZoneInfo(timezone)
    first = _parse_date("from_date", start)
    last = _parse_date("to_date", end)
    if first and last and last < first:
        raise InvalidArgument("to_date", "must not be before from_date")
    return (
        datetime.combine(first, time(), tz) if first else None,
        datetime.combine(last + timedelta(days=1), time(), tz) if last else None,
    )


def _parse_date(field: str, value: str) -> date | None:
    if not value.strip():
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise InvalidArgument(field, "must be a date YYYY-MM-DD") from None
