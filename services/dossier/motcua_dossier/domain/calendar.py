"""The working-day calendar (lịch ngày làm việc) that appointment dates and deadlines count in.

Why two sources: public holidays, lunar Tết included, follow rules that the ``holidays``
package computes for any year; the days the government swaps each year (a bridge day off,
paid back by working a Saturday) are announced only weeks ahead, so they are data in
``holidays_extra.yaml`` that an operator adds without a release.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import holidays

from motcua_dossier.domain.reference_data import DATA_DIR, read_yaml

DayKind = Literal["day_off", "working_day"]
DAY_KINDS: tuple[DayKind, ...] = ("day_off", "working_day")

DEFAULT_OFFICE_CLOSE = time(17, 0)
DEFAULT_TIMEZONE = "Asia/Ho_Chi_Minh"

_SATURDAY = 5
_ONE_DAY = timedelta(days=1)


@dataclass(frozen=True)
class ExtraDay:
    """An announced exception: a weekday off, or a weekend day worked to make up for one."""

    day: date
    name: str
    kind: DayKind
    source: str | None = None


class WorkingCalendar:
    """Working days: Monday to Friday, minus public holidays, adjusted by announced swaps.

    ``office_close`` is local time in ``timezone``: a dossier submitted at or after it is
    received on the next working day.
    """

    def __init__(
        self,
        extra_days: Iterable[ExtraDay] = (),
        *,
        country: str = "VN",
        office_close: time = DEFAULT_OFFICE_CLOSE,
        timezone: str = DEFAULT_TIMEZONE,
    ) -> None:
        self.country = country
        self.office_close = office_close
        self.timezone = ZoneInfo(timezone)
        self.extra_days = tuple(extra_days)
        self._overrides = {extra.day: extra.kind == "working_day" for extra in self.extra_days}
        self._holidays_by_year: dict[int, frozenset[date]] = {}

    @classmethod
    def load(
        cls,
        directory: Path | None = None,
        *,
        office_close: time = DEFAULT_OFFICE_CLOSE,
        timezone: str = DEFAULT_TIMEZONE,
    ) -> WorkingCalendar:
        """Read ``holidays_extra.yaml`` (default: the package's data) and build the calendar."""
        path = (DATA_DIR if directory is None else Path(directory)) / "holidays_extra.yaml"
        data = read_yaml(path, ["country", "days"])
        country = data["country"].text()
        if country not in holidays.list_supported_countries():
            raise data["country"].error(f"the holidays package has no country {country!r}")
        extra_days: list[ExtraDay] = []
        first_line: dict[date, int] = {}
        for item in data["days"].items():
            f = item.fields(["date", "name", "kind"], ["source"])
            day = f["date"].calendar_date()
            if day in first_line:
                raise f["date"].error(f"{day} is listed twice (first on line {first_line[day]})")
            first_line[day] = f["date"].line
            kind = f["kind"].text()
            if kind not in DAY_KINDS:
                raise f["kind"].error(f"must be one of {', '.join(DAY_KINDS)}")
            weekend = day.weekday() >= _SATURDAY
            if kind == "working_day" and not weekend:
                raise f["kind"].error(f"{day} is a weekday; a make-up working day is a weekend day")
            if kind == "day_off" and weekend:
                raise f["kind"].error(f"{day} is already a weekend day")
            source = f["source"].text() if "source" in f else None
            extra_days.append(ExtraDay(day, f["name"].text(), kind, source))
        return cls(extra_days, country=country, office_close=office_close, timezone=timezone)

    def _public_holidays(self, year: int) -> frozenset[date]:
        # Cached per year: the holidays object computes a whole year at a time.
        if year not in self._holidays_by_year:
            self._holidays_by_year[year] = frozenset(
                holidays.country_holidays(self.country, years=year)
            )
        return self._holidays_by_year[year]

    def is_working_day(self, day: date) -> bool:
        day = self._local_date(day)
        if day in self._overrides:
            return self._overrides[day]
        return day.weekday() < _SATURDAY and day not in self._public_holidays(day.year)

    def next_working_day(self, day: date) -> date:
        """The first working day strictly after ``day``."""
        day = self._local_date(day) + _ONE_DAY
        while not self.is_working_day(day):
            day += _ONE_DAY
        return day

    def receipt_day(self, submitted: datetime | date) -> date:
        """The working day a submission counts as received (ngày tiếp nhận).

        A date means a submission during office hours. A naive datetime is local time; an
        aware one is converted to local time first.
        """
        day = self._local_date(submitted)
        if isinstance(submitted, datetime) and self._local(submitted).time() >= self.office_close:
            return self.next_working_day(day)
        return day if self.is_working_day(day) else self.next_working_day(day)

    def add_working_days(self, start: datetime | date, days: int) -> date:
        """The appointment date (ngày hẹn trả kết quả) ``days`` working days after receipt.

        Counting starts on the working day after the receipt day, so 0 days means the
        receipt day itself.
        """
        if days < 0:
            raise ValueError(f"days must not be negative, got {days}")
        day = self.receipt_day(start)
        for _ in range(days):
            day = self.next_working_day(day)
        return day

    def appointment_date(self, submitted: datetime | date, processing_days: int) -> date:
        """The date the result is due, for a procedure of ``processing_days`` working days."""
        return self.add_working_days(submitted, processing_days)

    def working_days_between(self, a: date, b: date) -> int:
        """Working days in the interval (a, b]; negative when b is before a.

        So ``working_days_between(receipt, add_working_days(receipt, n)) == n``, and a
        deadline is missed when the days since the appointment date are positive.
        """
        a, b = self._local_date(a), self._local_date(b)
        if b < a:
            return -self.working_days_between(b, a)
        count = 0
        day = a + _ONE_DAY
        while day <= b:
            count += self.is_working_day(day)
            day += _ONE_DAY
        return count

    def _local(self, moment: datetime) -> datetime:
        """A naive datetime is already local time; an aware one is converted to it."""
        return moment.astimezone(self.timezone) if moment.tzinfo else moment

    def _local_date(self, value: date) -> date:
        # A datetime is a date too; comparing it with the holiday dates needs its local date.
        return self._local(value).date() if isinstance(value, datetime) else value
