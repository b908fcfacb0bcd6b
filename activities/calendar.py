"""Working days: China's public holidays and make-up workdays (调休), one data file per year.

行政许可法 §82: time limits for administrative licensing count working days, statutory holidays
excluded. Weekends are rest days (国务院关于职工工作时间的规定 §7) unless the year's State Council
notice moves a working day onto them. The notice changes every year, so the calendar is data
(data/calendar/<year>.toml), and a year without a file is an error, never a guess.
"""

import tomllib
from collections.abc import Callable
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import TypeVar

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from temporalio import activity
from temporalio.exceptions import ApplicationError

from contract.calendar import WorkingDayCount, WorkingDays, WorkingDaysBetween, WorkingDaysRequest
from contract.common import SHANGHAI

log = structlog.get_logger()
T = TypeVar("T")


class CalendarError(ValueError):
    """A calendar file is unreadable or contradicts itself."""


class CalendarYearMissing(CalendarError):
    def __init__(self, year: int, directory: Path) -> None:
        self.year = year
        self.directory = directory
        super().__init__(
            f"no working-day calendar for {year}: add {directory / f'{year}.toml'} "
            f"from the State Council notice on the {year} public holidays"
        )


class CalendarYear(BaseModel):
    """One data/calendar/<year>.toml file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    year: int = Field(ge=2000, le=2100)
    version: str = Field(min_length=1)
    source: str = Field(min_length=1)
    # Every official day off, weekend days included, so the file reads like the notice.
    holidays: frozenset[date]
    # 调休上班: weekend days worked in exchange for days off.
    workdays: frozenset[date] = frozenset()

    @model_validator(mode="after")
    def _consistent(self) -> "CalendarYear":
        if stray := sorted(d for d in self.holidays | self.workdays if d.year != self.year):
            raise ValueError(f"dates outside {self.year}: {_days(stray)}")
        if both := sorted(self.holidays & self.workdays):
            raise ValueError(f"dates both holiday and workday: {_days(both)}")
        if weekdays := sorted(d for d in self.workdays if d.weekday() < 5):
            raise ValueError(f"make-up workdays must fall on a Saturday or Sunday, not {_days(weekdays)}")
        return self


def _days(days: list[date]) -> str:
    return ", ".join(f"{d.isoformat()} ({d:%A})" for d in days)


def load_year(path: Path) -> CalendarYear:
    try:
        with path.open("rb") as file:
            year = CalendarYear.model_validate(tomllib.load(file))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise CalendarError(f"{path}: {err}") from err
    except ValidationError as err:
        problems = "; ".join(
            (f"{'.'.join(map(str, e['loc']))}: " if e["loc"] else "") + e["msg"].removeprefix("Value error, ")
            for e in err.errors()
        )
        raise CalendarError(f"{path}: {problems}") from err
    # Dates are looked up by the file name's year, so a misnamed file would hide its year.
    if path.stem != str(year.year):
        raise CalendarError(f"{path}: holds year = {year.year}; name it {year.year}.toml")
    return year


class Calendar:
    def __init__(self, directory: Path, years: dict[int, CalendarYear]) -> None:
        self.directory = directory
        self._years = dict(sorted(years.items()))

    @classmethod
    def load(cls, directory: Path) -> "Calendar":
        if not directory.is_dir():
            raise CalendarError(f"{directory}: calendar directory not found")
        years = [load_year(path) for path in sorted(directory.glob("*.toml"))]
        calendar = cls(directory, {year.year: year for year in years})
        log.info("calendar_loaded", directory=str(directory), version=calendar.version)
        return calendar

    @property
    def version(self) -> str:
        """Every year's version, e.g. "2025.1+2026.1": a deadline records which data it was computed with."""
        return "+".join(year.version for year in self._years.values())

    def is_working_day(self, day: date) -> bool:
        year = self._years.get(day.year)
        if year is None:
            raise CalendarYearMissing(day.year, self.directory)
        if day in year.workdays:
            return True
        return day.weekday() < 5 and day not in year.holidays

    def working_days_after(self, start: datetime, days: int) -> WorkingDays:
        if days < 0:
            raise ValueError(f"days must be >= 0, got {days}")
        # 民法典 §201: the day a period starts is not counted.
        day = last = _shanghai_date(start)
        found: list[date] = []
        while len(found) < days:
            day += timedelta(days=1)
            if self.is_working_day(day):
                found.append(day)
        if found:
            last = found[-1]
        return WorkingDays(start=start, days=found, due_at=_end_of(last), calendar_version=self.version)

    def working_days_between(self, start: datetime, end: datetime) -> WorkingDayCount:
        first, last = _shanghai_date(start), _shanghai_date(end)
        days = sum(self.is_working_day(first + timedelta(days=n)) for n in range(1, (last - first).days + 1))
        return WorkingDayCount(days=days, calendar_version=self.version)


def _shanghai_date(instant: datetime) -> date:
    # A naive time is ambiguous between halls (and astimezone would read it as the server's zone).
    if instant.tzinfo is None:
        raise ValueError(f"a timezone-aware datetime is required, got {instant}")
    return instant.astimezone(SHANGHAI).date()


def _end_of(day: date) -> datetime:
    # 民法典 §203: a period ends at 24:00 of its last day, i.e. 00:00 of the next one.
    return datetime.combine(day + timedelta(days=1), time(), SHANGHAI).astimezone(timezone.utc)


def with_placeholders(source: Path, target: Path, until: date) -> list[int]:
    """A DEVELOPMENT calendar: `source`'s files copied to `target`, plus a weekends-only file for
    each year up to `until` that `source` lacks. Returns the placeholder years.

    For `make run` and the end-to-end tests only, so a demo still runs in December before the
    State Council's table for next year is in data/calendar. Production reads data/calendar and
    waits for the official file instead (a placeholder would be a guess). The placeholder's
    version says so, and every deadline computed with it records that version.

    Only `<year>.toml` files of `target` are removed or written; `target` may not be, contain or
    lie inside `source` (ValueError).
    """
    import re
    import shutil

    # Only `<year>.toml` files are ever removed or written: OUT may be any directory an operator
    # names, and what else it holds (data/'s matters.toml, org.toml, risk.toml...) is not ours.
    year_file = re.compile(r"\d{4}\.toml")
    source_dir, target_dir = source.resolve(), target.resolve()
    if source_dir == target_dir or source_dir.is_relative_to(target_dir) or target_dir.is_relative_to(source_dir):
        raise ValueError(f"{target} overlaps the calendar directory it is copied from ({source})")
    target.mkdir(parents=True, exist_ok=True)
    for old in target.glob("*.toml"):
        if year_file.fullmatch(old.name) and old.is_file():
            old.unlink()
    for path in source.glob("*.toml"):
        if year_file.fullmatch(path.name):
            shutil.copy(path, target / path.name)
    missing = [year for year in range(date.today().year, until.year + 1) if not (source / f"{year}.toml").exists()]
    for year in missing:
        (target / f"{year}.toml").write_text(
            f'year = {year}\nversion = "placeholder-{year}"\n'
            f'source = "development placeholder: weekends only, NOT the official {year} calendar"\n'
            "holidays = []\nworkdays = []\n",
            encoding="utf-8",
        )
    return missing


class CalendarActivities:
    def __init__(self, calendar: Calendar, directory: Path | None = None) -> None:
        self.calendar = calendar
        self.directory = directory or calendar.directory

    @activity.defn(name="working_days_after")
    async def working_days_after(self, request: WorkingDaysRequest) -> WorkingDays:
        return self._compute(lambda calendar: calendar.working_days_after(request.start, request.days))

    @activity.defn(name="working_days_between")
    async def working_days_between(self, request: WorkingDaysBetween) -> WorkingDayCount:
        return self._compute(lambda calendar: calendar.working_days_between(request.start, request.end))

    def _compute(self, compute: Callable[[Calendar], T]) -> T:
        try:
            return compute(self.calendar)
        except CalendarYearMissing as missing:
            # An operator may just have added next year's file: look once more before failing.
            log.warning("calendar_reloading", year=missing.year, directory=str(self.directory))
        # Both failures below stay retryable on purpose: the activity waits until the file is
        # added or fixed, and the message in the Web UI tells the operator which file.
        try:
            self.calendar = Calendar.load(self.directory)
            return compute(self.calendar)
        except CalendarYearMissing as err:
            log.error("calendar_year_missing", year=err.year, directory=str(err.directory))
            raise ApplicationError(str(err), type="CalendarYearMissing") from err
        except CalendarError as err:
            log.error("calendar_invalid", error=str(err))
            raise ApplicationError(str(err), type="CalendarError") from err
