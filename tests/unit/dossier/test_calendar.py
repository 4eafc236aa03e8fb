"""The working-day calendar: holidays, make-up Saturdays, appointment dates, bad data files."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from motcua_dossier.domain.calendar import ExtraDay, WorkingCalendar
from motcua_dossier.domain.reference_data import ReferenceDataError

CALENDAR = WorkingCalendar.load()


def local(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    """A naive datetime, which the calendar reads as Asia/Ho_Chi_Minh local time."""
    return datetime(year, month, day, hour, minute)


# -- which days are worked -------------------------------------------------------------------


@pytest.mark.parametrize("day", [16, 17, 18, 19, 20])
def test_tet_2026_days_are_not_working_days(day):
    assert not CALENDAR.is_working_day(date(2026, 2, day))


def test_working_resumes_after_tet_2026():
    assert CALENDAR.is_working_day(date(2026, 2, 13))  # the Friday before
    assert CALENDAR.is_working_day(date(2026, 2, 23))  # the Monday after


@pytest.mark.parametrize("year", [2025, 2026, 2027])
def test_national_day_is_not_a_working_day(year):
    assert not CALENDAR.is_working_day(date(year, 9, 2))


def test_weekends_are_not_working_days():
    assert CALENDAR.is_working_day(date(2026, 3, 6))  # Friday
    assert not CALENDAR.is_working_day(date(2026, 3, 7))
    assert not CALENDAR.is_working_day(date(2026, 3, 8))
    assert CALENDAR.is_working_day(date(2026, 3, 9))


def test_announced_swaps_apply():
    assert not CALENDAR.is_working_day(date(2026, 1, 2))  # Friday bridged to New Year
    assert CALENDAR.is_working_day(date(2026, 1, 10))  # the Saturday that pays it back
    assert not CALENDAR.is_working_day(date(2025, 5, 2))
    assert CALENDAR.is_working_day(date(2025, 4, 26))


def test_calendar_without_announcements_knows_only_holidays_and_weekends():
    bare = WorkingCalendar()
    assert bare.is_working_day(date(2026, 1, 2))
    assert not bare.is_working_day(date(2026, 1, 10))
    assert not bare.is_working_day(date(2026, 2, 17))


# -- appointment dates -----------------------------------------------------------------------


def test_friday_afternoon_submission_with_three_days_is_due_wednesday():
    assert CALENDAR.add_working_days(local(2026, 3, 6, 16, 0), 3) == date(2026, 3, 11)
    assert CALENDAR.appointment_date(local(2026, 3, 6, 16, 0), 3) == date(2026, 3, 11)


def test_after_hours_submission_counts_from_the_next_working_day():
    assert CALENDAR.receipt_day(local(2026, 3, 6, 17, 30)) == date(2026, 3, 9)
    assert CALENDAR.add_working_days(local(2026, 3, 6, 17, 30), 3) == date(2026, 3, 12)
    # Closing time itself is already after hours.
    assert CALENDAR.add_working_days(local(2026, 3, 6, 17, 0), 3) == date(2026, 3, 12)


def test_aware_datetimes_are_read_in_local_time():
    # 09:30 UTC is 16:30 in Việt Nam (UTC+7), 10:30 UTC is 17:30.
    assert CALENDAR.receipt_day(datetime(2026, 3, 6, 9, 30, tzinfo=UTC)) == date(2026, 3, 6)
    assert CALENDAR.receipt_day(datetime(2026, 3, 6, 10, 30, tzinfo=UTC)) == date(2026, 3, 9)
    # 20:00 UTC on Thursday is already Friday 03:00 local.
    assert CALENDAR.receipt_day(datetime(2026, 3, 5, 20, 0, tzinfo=UTC)) == date(2026, 3, 6)


def test_office_close_is_configurable():
    early = WorkingCalendar(office_close=time(16, 30))
    assert early.receipt_day(local(2026, 3, 6, 16, 0)) == date(2026, 3, 6)
    assert early.receipt_day(local(2026, 3, 6, 16, 45)) == date(2026, 3, 9)


def test_zero_days_means_the_same_working_day():
    assert CALENDAR.add_working_days(local(2026, 3, 4, 9, 0), 0) == date(2026, 3, 4)
    # Filed on a Saturday: received, and done, on Monday.
    assert CALENDAR.add_working_days(local(2026, 3, 7, 9, 0), 0) == date(2026, 3, 9)
    assert CALENDAR.add_working_days(date(2026, 3, 7), 0) == date(2026, 3, 9)


def test_submission_before_tet_skips_the_whole_holiday():
    assert CALENDAR.add_working_days(local(2026, 2, 13, 16, 0), 3) == date(2026, 2, 25)


def test_make_up_saturday_counts_as_a_working_day():
    assert CALENDAR.add_working_days(local(2026, 1, 9, 10, 0), 1) == date(2026, 1, 10)


def test_new_year_bridge_is_skipped():
    # 1 Jan holiday, 2 Jan bridged, then the weekend.
    assert CALENDAR.add_working_days(local(2025, 12, 31, 10, 0), 2) == date(2026, 1, 6)


def test_negative_days_are_refused():
    with pytest.raises(ValueError, match="negative"):
        CALENDAR.add_working_days(date(2026, 3, 6), -1)


def test_working_days_between_counts_the_half_open_interval():
    assert CALENDAR.working_days_between(date(2026, 3, 6), date(2026, 3, 11)) == 3
    assert CALENDAR.working_days_between(date(2026, 3, 11), date(2026, 3, 6)) == -3
    assert CALENDAR.working_days_between(date(2026, 3, 6), date(2026, 3, 6)) == 0
    assert CALENDAR.working_days_between(date(2026, 2, 13), date(2026, 2, 23)) == 1


# -- properties ------------------------------------------------------------------------------

starts = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2027, 10, 31))
day_counts = st.integers(min_value=0, max_value=40)


@given(start=starts, days=day_counts)
def test_appointment_always_lands_on_a_working_day(start, days):
    assert CALENDAR.is_working_day(CALENDAR.add_working_days(start, days))


@given(start=starts, days=day_counts)
def test_working_days_between_inverts_add_working_days(start, days):
    due = CALENDAR.add_working_days(start, days)
    counted = CALENDAR.working_days_between(start.date(), due)
    received_later = CALENDAR.receipt_day(start) != start.date()
    assert counted == days + (1 if received_later else 0)
    assert CALENDAR.working_days_between(CALENDAR.receipt_day(start), due) == days


@given(start=starts, days=day_counts)
def test_one_more_day_is_always_later(start, days):
    assert CALENDAR.add_working_days(start, days + 1) > CALENDAR.add_working_days(start, days)


# -- the data file ---------------------------------------------------------------------------


def extra_days_file(tmp_path, days: str) -> WorkingCalendar:
    (tmp_path / "holidays_extra.yaml").write_text(f"country: VN\ndays:\n{days}", encoding="utf-8")
    return WorkingCalendar.load(tmp_path)


def test_shipped_announcements_load_with_their_sources():
    kinds = {extra.day: extra.kind for extra in CALENDAR.extra_days}
    assert kinds[date(2026, 1, 10)] == "working_day"
    assert all(extra.source for extra in CALENDAR.extra_days)


def test_extra_day_entries_are_read(tmp_path):
    calendar = extra_days_file(
        tmp_path,
        "  - {date: 2027-03-06, name: Làm bù, kind: working_day}\n"
        "  - {date: 2027-03-05, name: Nghỉ bù, kind: day_off, source: Văn bản thử}\n",
    )
    assert calendar.is_working_day(date(2027, 3, 6))
    assert not calendar.is_working_day(date(2027, 3, 5))
    assert calendar.extra_days[1] == ExtraDay(date(2027, 3, 5), "Nghỉ bù", "day_off", "Văn bản thử")


def refused(tmp_path, days: str) -> ReferenceDataError:
    with pytest.raises(ReferenceDataError) as caught:
        extra_days_file(tmp_path, days)
    assert caught.value.file.name == "holidays_extra.yaml"
    return caught.value


def test_make_up_day_on_a_weekday_is_refused(tmp_path):
    error = refused(
        tmp_path,
        "  - {date: 2026-01-10, name: ok, kind: working_day}\n"
        "  - {date: 2026-01-12, name: Thứ Hai, kind: working_day}\n",
    )
    assert (error.line, error.field) == (4, "days[1].kind")
    assert "weekday" in error.reason


def test_repeated_date_is_refused(tmp_path):
    error = refused(
        tmp_path,
        "  - {date: 2026-01-02, name: a, kind: day_off}\n"
        "  - {date: 2026-01-02, name: b, kind: day_off}\n",
    )
    assert (error.line, error.field) == (4, "days[1].date")
    assert "first on line 3" in error.reason


def test_unknown_kind_is_refused(tmp_path):
    error = refused(tmp_path, "  - {date: 2026-01-02, name: a, kind: holiday}\n")
    assert (error.line, error.field) == (3, "days[0].kind")


def test_malformed_date_is_refused(tmp_path):
    error = refused(tmp_path, "  - {date: 2/1/2026, name: a, kind: day_off}\n")
    assert (error.line, error.field) == (3, "days[0].date")
    assert "YYYY-MM-DD" in error.reason


def test_missing_name_is_refused(tmp_path):
    error = refused(tmp_path, "  - date: 2026-01-02\n    kind: day_off\n")
    assert (error.line, error.field) == (3, "days[0].name")


def test_unknown_country_is_refused(tmp_path):
    (tmp_path / "holidays_extra.yaml").write_text("country: XX\ndays: []\n", encoding="utf-8")
    with pytest.raises(ReferenceDataError, match=r"holidays_extra.yaml:1: country: "):
        WorkingCalendar.load(tmp_path)
