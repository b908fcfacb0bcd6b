import shutil
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import chinese_calendar
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.calendar import Calendar, CalendarActivities, CalendarError, CalendarYearMissing
from contract.calendar import WorkingDaysBetween, WorkingDaysRequest
from contract.common import SHANGHAI
from settings import ROOT

DATA = ROOT / "data" / "calendar"
UTC = timezone.utc


@pytest.fixture(scope="module")
def calendar() -> Calendar:
    return Calendar.load(DATA)


def shanghai(*args: int) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)


def write_year(directory: Path, year: int, holidays: str = "[]", workdays: str = "[]") -> Path:
    path = directory / f"{year}.toml"
    path.write_text(
        f'year = {year}\nversion = "{year}.1"\nsource = "test"\nholidays = {holidays}\nworkdays = {workdays}\n',
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize("year", [2025, 2026])
def test_every_day_agrees_with_chinese_calendar(calendar: Calendar, year: int) -> None:
    day = date(year, 1, 1)
    disagreements = []
    while day.year == year:
        if calendar.is_working_day(day) != chinese_calendar.is_workday(day):
            disagreements.append(day)
        day += timedelta(days=1)
    assert disagreements == []


def test_version_names_every_year(calendar: Calendar) -> None:
    assert calendar.version == "2025.1+2026.1"


def test_national_day_holiday_is_skipped_and_make_up_saturday_counts(calendar: Calendar) -> None:
    # Accepted Wednesday 2026-09-30; 10-01..10-07 are off, Saturday 10-10 is a make-up workday.
    result = calendar.working_days_after(shanghai(2026, 9, 30, 15, 0), 3)
    assert result.days == [date(2026, 10, 8), date(2026, 10, 9), date(2026, 10, 10)]
    assert result.due_at == datetime(2026, 10, 10, 16, 0, tzinfo=UTC)
    assert result.calendar_version == "2025.1+2026.1"


def test_acceptance_day_is_not_counted(calendar: Calendar) -> None:
    result = calendar.working_days_after(shanghai(2026, 3, 9, 10, 0), 1)  # Monday
    assert result.days == [date(2026, 3, 10)]
    assert result.due_at == shanghai(2026, 3, 11, 0, 0)  # Tuesday 24:00
    assert result.due_at == datetime(2026, 3, 10, 16, 0, tzinfo=UTC)


def test_late_evening_utc_acceptance_counts_from_the_next_shanghai_day(calendar: Calendar) -> None:
    # Monday 17:30 UTC is already Tuesday 01:30 in Shanghai: Tuesday is the acceptance day.
    result = calendar.working_days_after(datetime(2026, 3, 9, 17, 30, tzinfo=UTC), 1)
    assert result.days == [date(2026, 3, 11)]
    assert result.due_at == datetime(2026, 3, 11, 16, 0, tzinfo=UTC)


def test_make_up_saturday_is_a_working_day(calendar: Calendar) -> None:
    # Friday before the 2026 Spring Festival break; Saturday 02-14 is worked (调休).
    result = calendar.working_days_after(shanghai(2026, 2, 13, 9, 0), 2)
    assert result.days == [date(2026, 2, 14), date(2026, 2, 24)]


def test_zero_days_are_due_at_the_end_of_the_acceptance_day(calendar: Calendar) -> None:
    result = calendar.working_days_after(shanghai(2026, 3, 7, 11, 0), 0)  # a Saturday
    assert result.days == []
    assert result.due_at == datetime(2026, 3, 7, 16, 0, tzinfo=UTC)


def test_naive_start_is_refused(calendar: Calendar) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        calendar.working_days_after(datetime(2026, 3, 9, 10, 0), 1)


def test_year_without_a_file_is_an_error_not_a_guess(calendar: Calendar) -> None:
    with pytest.raises(CalendarYearMissing, match="2027") as raised:
        calendar.is_working_day(date(2027, 1, 4))
    assert str(DATA / "2027.toml") in str(raised.value)
    assert raised.value.year == 2027


def test_deadline_running_into_a_missing_year_is_an_error(calendar: Calendar) -> None:
    with pytest.raises(CalendarYearMissing, match="2027"):
        calendar.working_days_after(shanghai(2026, 12, 28, 10, 0), 5)


def test_holiday_from_another_year_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = write_year(tmp_path, 2026, holidays="[2025-10-01]")
    with pytest.raises(CalendarError, match="dates outside 2026: 2025-10-01") as raised:
        Calendar.load(tmp_path)
    assert str(path) in str(raised.value)


def test_make_up_workday_on_a_weekday_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = write_year(tmp_path, 2026, workdays="[2026-03-11]")  # a Wednesday
    refused = r"make-up workdays must fall on a Saturday or Sunday, not 2026-03-11 \(Wednesday\)"
    with pytest.raises(CalendarError, match=refused) as raised:
        Calendar.load(tmp_path)
    assert str(path) in str(raised.value)


def test_day_both_holiday_and_workday_is_refused(tmp_path: Path) -> None:
    write_year(tmp_path, 2026, holidays="[2026-10-10]", workdays="[2026-10-10]")
    with pytest.raises(CalendarError, match="both holiday and workday"):
        Calendar.load(tmp_path)


def test_file_named_for_another_year_is_refused(tmp_path: Path) -> None:
    write_year(tmp_path, 2026).rename(tmp_path / "2027.toml")
    with pytest.raises(CalendarError, match="2027.toml: holds year = 2026"):
        Calendar.load(tmp_path)


def test_working_days_between_skip_weekend_and_holiday(calendar: Calendar) -> None:
    # Thursday 04-02 to Wednesday 04-08: Fri 04-03, Tue 04-07, Wed 04-08 (清明 04-04..06 is off).
    count = calendar.working_days_between(shanghai(2026, 4, 2, 9, 0), shanghai(2026, 4, 8, 18, 0))
    assert count.days == 3
    assert count.calendar_version == "2025.1+2026.1"


def test_working_days_between_is_zero_when_end_is_not_after_start(calendar: Calendar) -> None:
    assert calendar.working_days_between(shanghai(2026, 4, 8), shanghai(2026, 4, 2)).days == 0
    assert calendar.working_days_between(shanghai(2026, 4, 8, 9), shanghai(2026, 4, 8, 17)).days == 0


async def test_activity_returns_days_and_calendar_version(calendar: Calendar) -> None:
    acts = CalendarActivities(calendar)
    request = WorkingDaysRequest(start=shanghai(2026, 9, 30, 15, 0), days=3)
    result = await ActivityEnvironment().run(acts.working_days_after, request)
    assert result.due_at == datetime(2026, 10, 10, 16, 0, tzinfo=UTC)
    assert result.calendar_version == "2025.1+2026.1"

    between = WorkingDaysBetween(start=shanghai(2026, 9, 30), end=shanghai(2026, 10, 10))
    count = await ActivityEnvironment().run(acts.working_days_between, between)
    assert (count.days, count.calendar_version) == (3, "2025.1+2026.1")


async def test_activity_reports_a_missing_year_as_retryable_application_error(calendar: Calendar) -> None:
    acts = CalendarActivities(calendar)
    request = WorkingDaysRequest(start=shanghai(2027, 3, 1, 10, 0), days=1)
    with pytest.raises(ApplicationError, match="2027") as raised:
        await ActivityEnvironment().run(acts.working_days_after, request)
    assert raised.value.type == "CalendarYearMissing"
    assert not raised.value.non_retryable


async def test_activity_picks_up_a_year_file_added_while_running(tmp_path: Path) -> None:
    shutil.copy(DATA / "2025.toml", tmp_path)
    acts = CalendarActivities(Calendar.load(tmp_path))
    shutil.copy(DATA / "2026.toml", tmp_path)  # the operator adds next year's file

    request = WorkingDaysRequest(start=shanghai(2026, 9, 30, 15, 0), days=3)
    result = await ActivityEnvironment().run(acts.working_days_after, request)
    assert result.days[-1] == date(2026, 10, 10)
    assert result.calendar_version == "2025.1+2026.1"
