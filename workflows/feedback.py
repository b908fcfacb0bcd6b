"""What the feedback loops (rectification of bad reviews, public suggestions) and risks share: a
step with a working-day deadline that is reminded the day before and escalated when missed, then
stays open until done."""

from datetime import datetime, timedelta
from typing import Awaitable, Callable

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contract import search
    from contract.calendar import WorkingDaysRequest
    from workflows import activities as act
    from workflows.clock import end_of_day, local_date, wait_until


async def deadline(start: datetime, days: int, what: str) -> datetime:
    """24:00 Asia/Shanghai of the `days`-th working day after `start`, from the calendar activity."""
    answer = await act.working_days_after(
        WorkingDaysRequest(start=start, days=days), summary=f"{what}: {days} working days"
    )
    return end_of_day(answer.days[days - 1])


def show_day(due: datetime) -> str:
    """The last day of a deadline ending at 24:00, as people read it."""
    return str(local_date(due - timedelta(seconds=1)))


async def chase(
    what: str,
    due: Callable[[], datetime],
    done: Callable[[], bool],
    remind: Callable[[], Awaitable[None]],
    escalate: Callable[[], Awaitable[None]],
) -> None:
    """Wait for `done`; remind at 00:00 of the deadline's last working day; escalate once at the
    deadline, then keep waiting: an overdue step stays open until done. `due` may move (it is read
    again whenever `moved` work changes it), so the waits are re-armed in a loop."""
    reminded = escalated = False
    while not done():
        at = due()
        target = at - timedelta(days=1) if not reminded else at
        if escalated:
            await workflow.wait_condition(lambda: done() or due() != at)
            if due() != at:
                escalated = reminded = False  # a later deadline: a new reminder and escalation
            continue
        summary = f"{what} {'reminder' if not reminded else 'due'} {show_day(at)}"
        if await wait_until(lambda: done() or due() != at, target, summary):
            if not done():
                reminded = escalated = False  # the deadline moved: re-arm from the start
            continue
        if not reminded:
            reminded = True
            if workflow.now() < at:
                await remind()
            continue
        escalated = True
        await escalate()


def overdue_flags(overdue: bool, due: datetime | None) -> list:
    updates = [search.STEP_OVERDUE.value_set(overdue)]
    if due is not None:
        updates.append(search.STEP_DUE_AT.value_set(due))
    return updates
