"""Working-day time inside workflows: deadlines from a calendar answer, and waits that end at one.

The calendar itself is data read by an activity (activities/calendar.py), so the answer is in
history and a case replays the same after next year's holiday table ships.
"""

from datetime import date, datetime, time, timedelta, timezone
from typing import Callable

from temporalio import workflow

from contract.common import SHANGHAI


def end_of_day(day: date) -> datetime:
    """24:00 Asia/Shanghai of `day`, in UTC: a limit of N working days ends then (domain.md)."""
    return datetime.combine(day + timedelta(days=1), time(0), SHANGHAI).astimezone(timezone.utc)


def local_date(instant: datetime) -> date:
    return instant.astimezone(SHANGHAI).date()


async def wait_until(condition: Callable[[], bool], deadline: datetime, summary: str) -> bool:
    """Wait for `condition` until `deadline`; True if it held in time, False if the deadline passed."""
    remaining = deadline - workflow.now()
    if remaining <= timedelta(0):
        return condition()
    try:
        await workflow.wait_condition(condition, timeout=remaining, timeout_summary=summary)
        return True
    except TimeoutError:
        return condition()
