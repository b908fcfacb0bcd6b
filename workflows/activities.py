"""Typed stubs for the activities workflows call: names, timeouts and retries in one place.

Activities are called by name so workflows/ never imports the database or I/O modules
(activities/ registers functions under the same names).
"""

from datetime import timedelta
from typing import Any, Callable

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from contract.calendar import WorkingDayCount, WorkingDays, WorkingDaysBetween, WorkingDaysRequest
from contract.org import Directory
from contract.rating import FeedbackPolicy, Rating
from contract.suggestion import PublicationRecord
from contract.risk import RiskEntry, RiskPolicy
from contract.records import AuditEntry, Step
from contract.terms import CaseTerms, CaseTermsRequest
from workflows.clock import within

# Store and notifications retry without limit: a database outage delays a case, never loses a step.
_STORE = dict(start_to_close_timeout=timedelta(seconds=30), retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)))
# The calendar answers from memory; a missing year retries until an operator adds its file, and
# as a regular (not local) activity that error shows on the pending activity in the Web UI.
_LOOKUP = dict(start_to_close_timeout=timedelta(seconds=10), retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=10)))
# First as a local activity: one marker event in the workflow task that asked, instead of three
# events and a workflow task of their own. A few quick attempts; then the regular activity.
_LOCAL = dict(
    start_to_close_timeout=timedelta(seconds=10),
    schedule_to_close_timeout=timedelta(seconds=20),
    retry_policy=RetryPolicy(maximum_attempts=3, maximum_interval=timedelta(seconds=2)),
)


class _Lookups:
    """Local lookups a workflow has in flight. Its trail and search attributes wait while there are
    any (workflows/trail.py, attributes.py): the code that asked goes on recording once the answer
    is in, in the same workflow task, so the step goes out as one write and one upsert."""

    def __init__(self) -> None:
        self.count = 0


def _lookups() -> _Lookups:
    return workflow.instance().__dict__.setdefault("_lookups_in_flight", _Lookups())


def lookups_idle() -> bool:
    return _lookups().count == 0


async def quiet(size: Callable[[], int]) -> None:
    """Return once no lookup is in flight and `size()` (what is waiting to go out) held still for
    two passes of the workflow's event loop: the code woken by the same message or timer has
    recorded what it will before it next waits, so a step goes out as one write and one upsert."""
    still = 0
    while still < 2:
        await workflow.wait_condition(lookups_idle)
        before = size()
        await workflow.wait_condition(lambda: True)  # one pass: conditions checked, woken code run
        still = still + 1 if size() == before and lookups_idle() else 0


async def _lookup(name: str, *args: Any, result_type: Any, summary: str, **options: Any) -> Any:
    lookups = _lookups()
    lookups.count += 1
    try:
        return await workflow.execute_local_activity(name, args=list(args), result_type=result_type, summary=summary, **options)
    finally:
        lookups.count -= 1


async def local_first(name: str, *args: Any, result_type: Any = None, summary: str, regular: dict, lookup: bool = True) -> Any:
    """Run a short, idempotent activity locally; if it gives up (the database away, a calendar
    year missing), run it as a regular activity with `regular`'s retries, which shows its error
    on the pending activity in the Web UI until an operator fixes the cause (and holds nothing
    else back meanwhile). `lookup`: a read the workflow's next records may follow from."""
    try:
        if lookup:
            return await _lookup(name, *args, result_type=result_type, summary=summary, **_LOCAL)
        return await workflow.execute_local_activity(name, args=list(args), result_type=result_type, summary=summary, **_LOCAL)
    except (ActivityError, ApplicationError) as err:  # a local activity's may come unwrapped
        cause = err.cause if isinstance(err, ActivityError) else err
        if isinstance(cause, ApplicationError) and cause.non_retryable:
            raise  # the input is wrong: a regular activity would be refused the same way
        workflow.logger.warning("local_activity_gave_up", extra={"activity": name})
        return await workflow.execute_activity(name, args=list(args), result_type=result_type, summary=summary, **regular)


async def case_terms(req: CaseTermsRequest) -> CaseTerms:
    # Local: the catalog, the calendar and the feedback settings from memory, kept as one marker.
    return await _lookup("case_terms", req, result_type=CaseTerms, summary=f"terms: {req.matter_code}", **_LOOKUP)


async def org_directory() -> Directory:
    # Local, like the catalog: the worker's copy from memory, kept in history as one marker.
    return await workflow.execute_local_activity(
        "org_directory", result_type=Directory, summary="organisation directory", **_LOOKUP
    )


async def working_days_after(req: WorkingDaysRequest, summary: str, known: WorkingDays | None = None) -> WorkingDays:
    """`known`: a schedule already in history (the case's); read off it when it reaches far enough."""
    return within(known, req.start, req.days) or await local_first(
        "working_days_after", req, result_type=WorkingDays, summary=summary, regular=_LOOKUP
    )


async def working_days_between(req: WorkingDaysBetween) -> WorkingDayCount:
    return await local_first(
        "working_days_between", req, result_type=WorkingDayCount, summary="count working days", regular=_LOOKUP
    )


async def record_audit(entry: AuditEntry) -> None:
    await workflow.execute_activity("record_audit", entry, result_type=bool, summary=f"audit: {entry.action}", **_STORE)


async def feedback_policy() -> FeedbackPolicy:
    return await local_first("feedback_policy", result_type=FeedbackPolicy, summary="feedback settings", regular=_LOOKUP)


async def publish_answer(record: PublicationRecord) -> None:
    await workflow.execute_activity(
        "publish_answer", record, result_type=bool, summary="publish answer (采纳公示)", **_STORE
    )


async def risk_policy() -> RiskPolicy:
    return await local_first("risk_policy", result_type=RiskPolicy, summary="risk matrix", regular=_LOOKUP)


async def record_risk(entry: RiskEntry) -> None:
    await workflow.execute_activity(
        "record_risk", entry, summary=f"risk register: {entry.level} {entry.state}", **_STORE
    )


async def send_rating_to_watch(rating: Rating) -> None:
    await local_first(
        "send_rating_to_watch", rating, summary=f"rating to the {rating.department} watch", regular=_STORE, lookup=False
    )


async def record_step(step: Step, summary: str) -> None:
    await local_first("record_step", step, result_type=int, summary=summary, regular=_STORE, lookup=False)
