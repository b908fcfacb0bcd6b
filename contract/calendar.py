"""Working-day arithmetic requests and answers (computed by activities/calendar.py)."""

from datetime import date

from pydantic import BaseModel, Field

from contract.common import Instant


class WorkingDaysRequest(BaseModel):
    start: Instant
    days: int = Field(ge=0, le=400)


class WorkingDays(BaseModel):
    """The working days after `start`'s date in Asia/Shanghai; the start day itself is not counted."""

    start: Instant
    # days[i] is the (i+1)-th working day after the start date.
    days: list[date]
    # 24:00 Asia/Shanghai of the last day (or of the start date when days is empty), in UTC.
    due_at: Instant
    calendar_version: str


class WorkingDaysBetween(BaseModel):
    start: Instant
    end: Instant


class WorkingDayCount(BaseModel):
    """Working days d with start_date < d <= end_date (Asia/Shanghai dates)."""

    days: int
    calendar_version: str
