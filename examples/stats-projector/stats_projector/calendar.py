"""The working-day rule an on-time verdict needs: which day a completion counts on.

The events carry when a dossier was completed and the dates it was promised for, not the
verdict. The verdict compares the *working day* of the completion with those dates: a result
signed after office hours, or on a weekend or public holiday, counts on the next working day.
This module is that rule for an outside system: Monday to Friday, minus the public holidays of
the ``holidays`` package (lunar Tết included), adjusted by the government's announced swaps
(the same ``holidays_extra.yaml`` format the province publishes for motcua).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import holidays

_SATURDAY = 5
_ONE_DAY = timedelta(days=1)


@dataclass
class WorkingDays:
    """Working days of state agencies, in the agencies' time zone."""

    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Ho_Chi_Minh"))
    office_close: time = time(17, 0)
    country: str = "VN"
    overrides: dict[date, bool] = field(default_factory=dict)  # day → is a working day
    _cache: dict[int, frozenset[date]] = field(default_factory=dict, repr=False)

    @classmethod
    def load(
        cls,
        extra_days_file: Path | None = None,
        *,
        timezone: str = "Asia/Ho_Chi_Minh",
        office_close: time = time(17, 0),
    ) -> WorkingDays:
        """The calendar, with the announced swaps of ``extra_days_file`` when given."""
        overrides: dict[date, bool] = {}
        country = "VN"
        if extra_days_file is not None:
            import yaml

            data: Any = yaml.safe_load(extra_days_file.read_text(encoding="utf-8")) or {}
            country = str(data.get("country", country))
            for item in data.get("days") or []:
                day = item["date"]
                day = day if isinstance(day, date) else date.fromisoformat(str(day))
                if item["kind"] not in ("day_off", "working_day"):
                    raise ValueError(
                        f"{extra_days_file}: {day}: kind must be day_off or working_day"
                    )
                overrides[day] = item["kind"] == "working_day"
        return cls(ZoneInfo(timezone), office_close, country, overrides)

    def is_working_day(self, day: date) -> bool:
        if day in self.overrides:
            return self.overrides[day]
        if day.year not in self._cache:
            self._cache[day.year] = frozenset(
                holidays.country_holidays(self.country, years=day.year)
            )
        return day.weekday() < _SATURDAY and day not in self._cache[day.year]

    def next_working_day(self, day: date) -> date:
        day += _ONE_DAY
        while not self.is_working_day(day):
            day += _ONE_DAY
        return day

    def counting_day(self, moment: datetime) -> date:
        """The working day ``moment`` counts on (after office hours: the next one)."""
        local = moment.astimezone(self.timezone)
        day = local.date()
        if local.time() >= self.office_close:
            return self.next_working_day(day)
        return day if self.is_working_day(day) else self.next_working_day(day)

    def local_date(self, moment: datetime) -> date:
        return moment.astimezone(self.timezone).date()
