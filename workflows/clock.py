"""Working-day time inside workflows: deadlines from a calendar answer, and waits that end at one.

The calendar itself is data read by an activity (activities/calendar.py), so the answer is in
history and a case replays the same after next year's holiday table ships.
"""

import asyncio
from datetime import date, datetime, time, timedelta, timezone
from typing import Callable

from temporalio import workflow

from contract.calendar import WorkingDays
from contract.common import SHANGHAI


def end_of_day(day: date) -> datetime:
    """24:00 Asia/Shanghai of `day`, in UTC: a limit of N working days ends then (domain.md)."""
    return datetime.combine(day + timedelta(days=1), time(0), SHANGHAI).astimezone(timezone.utc)


def local_date(instant: datetime) -> date:
    return instant.astimezone(SHANGHAI).date()


def within(schedule: WorkingDays | None, start: datetime, days: int) -> WorkingDays | None:
    """The first `days` working days after `start`'s date, read off `schedule` (a calendar answer
    already in history) when it reaches that far: no lookup, no event. None when it does not."""
    if schedule is None or days < 1 or local_date(start) < local_date(schedule.start):
        return None
    # The schedule lists every working day after its own start date, so the ones after a later
    # date are the same days the calendar would give.
    after = [d for d in schedule.days if d > local_date(start)]
    if len(after) < days:
        return None
    return WorkingDays(start=start, days=after[:days], due_at=end_of_day(after[days - 1]), calendar_version=schedule.calendar_version)


async def wait_until(condition: Callable[[], bool], deadline: datetime, summary: str, cancel: bool = True) -> bool:
    """Wait for `condition` until `deadline`; True if it held in time, False if the deadline passed.

    cancel=False leaves the timer running once the condition holds, for a wait the run ends soon
    after (a timer still pending when a workflow completes costs no event; cancelling it, one)."""
    remaining = deadline - workflow.now()
    if remaining <= timedelta(0):
        return condition()
    if not cancel:
        timer = asyncio.ensure_future(workflow.sleep(remaining, summary=summary))
        await workflow.wait_condition(lambda: condition() or timer.done())
        return condition()
    try:
        await workflow.wait_condition(condition, timeout=remaining, timeout_summary=summary)
        return True
    except TimeoutError:
        return condition()


class CaseClock:
    """The case's promised and statutory limits in working days, paused while the case waits on
    the applicant (补正) or a special procedure: each paused working day moves both due dates."""

    # Yellow warning when this share of the promised time is used (domain.md).
    WARN_SHARE = 0.8

    def __init__(self, schedule: "WorkingDays", promised_days: int, statutory_days: int) -> None:
        self.schedule = schedule  # working days after acceptance, long enough for the statutory limit
        self.promised_days = promised_days
        self.statutory_days = statutory_days
        self.paused_days = 0
        self.paused_since: datetime | None = None
        self.revision = 0  # bumps whenever the due dates move, so watchers re-arm their timers

    @property
    def promised_due(self) -> datetime:
        return end_of_day(self.schedule.days[self.promised_days + self.paused_days - 1])

    @property
    def statutory_due(self) -> datetime:
        return end_of_day(self.schedule.days[self.statutory_days + self.paused_days - 1])

    @property
    def warn_at(self) -> datetime:
        """When WARN_SHARE of the promised working time is used, each working day counted as 24 h."""
        elapsed = self.WARN_SHARE * self.promised_days
        whole = int(elapsed)
        day_start = end_of_day(self.schedule.days[whole + self.paused_days]) - timedelta(days=1)
        return day_start + timedelta(days=elapsed - whole)

    def days_used(self, now: datetime) -> int:
        today = local_date(self.paused_since or now)
        return max(0, sum(1 for d in self.schedule.days if d <= today) - self.paused_days)

    def days_needed(self) -> int:
        """How many working days the schedule must hold after `paused_days` more."""
        return self.statutory_days + self.paused_days
