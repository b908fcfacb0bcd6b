"""意见征集 → 研究采纳 → 结果反馈: answered on a working-day deadline, published, submitter told."""

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WithStartWorkflowOperation, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError
from temporalio.worker import Worker

from activities.calendar import Calendar, CalendarActivities
from activities.catalog import CatalogActivities
from activities.publication import PublicationActivities
from contract.calendar import WorkingDays, WorkingDaysRequest
from contract import search
from contract.suggestion import (
    Publication,
    PublicationRecord,
    Reclassify,
    Respond,
    Suggestion,
    SuggestionStage,
    suggestion_workflow_id,
)
from tests.builders import WEDNESDAY_BEFORE_NATIONAL_DAY, eventually, wait_status
from tests.temporal_fixtures import TEST_CALENDAR, travel_to
from worker import INTERCEPTORS, hallflow_activities
from workflows.suggestion import SuggestionWorkflow

# Submitted Wed 2099-09-30 10:00 +08:00, the eve of National Day (10-01..07 off, Sat 10-10 a
# make-up workday, tests/data/calendar/2099.toml). The day of submission is not counted.
# General, 15 working days: 1 10-08, 2 10-09, 3 Sat 10-10, [Sun 10-11], 4 10-12, 5 10-13, 6 10-14,
# 7 10-15, 8 10-16, 9 10-19, 10 10-20, 11 10-21, 12 10-22, 13 10-23, 14 10-26, 15 10-27
# -> due Tue 10-27 24:00 (+08:00) = 16:00 UTC.
# Complex, 30: 16 10-28, 17 10-29, 18 10-30, 19 11-02, 20 11-03, 21 11-04, 22 11-05, 23 11-06,
# 24 11-09, 25 11-10, 26 11-11, 27 11-12, 28 11-13, 29 11-16, 30 11-17 -> due Tue 11-17 24:00.
GENERAL_DUE = datetime(2099, 10, 27, 16, tzinfo=timezone.utc)
COMPLEX_DUE = datetime(2099, 11, 17, 16, tzinfo=timezone.utc)
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)


def suggestion(no: str = "SUG-0001", complexity: str = "general") -> Suggestion:
    return Suggestion(
        suggestion_no=no,
        submitter_id="citizen-8812",
        topic="延长周六办理时间",
        content="建议不动产登记窗口周六开放到下午五点。",
        department="natural-resources",
        complexity=complexity,
    )


async def _start(env, tq, s: Suggestion):
    if await env.get_current_time() < WEDNESDAY_BEFORE_NATIONAL_DAY:
        await travel_to(env, WEDNESDAY_BEFORE_NATIONAL_DAY)
    handle = await env.client.start_workflow(
        SuggestionWorkflow.run, s, id=suggestion_workflow_id(s.suggestion_no), task_queue=tq,
        execution_timeout=timedelta(days=400),
    )
    return handle, await _wait(handle, lambda st: st.due_at is not None)


async def _wait(handle, check):
    return await wait_status(handle, check, query=SuggestionWorkflow.status)


def _actions(store, no: str) -> list[str]:
    return [e.action for e in store.audit_trail("suggestion", no)]


async def _refusal(handle, update, arg) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await handle.execute_update(update, arg)
    return str(err.value.cause)


async def test_general_and_complex_deadlines_count_working_days_across_national_day(env, hall_worker):
    async with hall_worker(env.client) as tq:
        _, general = await _start(env, tq, suggestion("SUG-G"))
        _, complex_ = await _start(env, tq, suggestion("SUG-C", "complex"))

    assert general.due_at == GENERAL_DUE and complex_.due_at == COMPLEX_DUE


async def test_reclassify_recomputes_the_deadline_from_the_original_submission(env, hall_worker, sqlite_store):
    async with hall_worker(env.client) as tq:
        handle, _ = await _start(env, tq, suggestion())
        await travel_to(env, datetime(2099, 10, 20, 2, tzinfo=timezone.utc))
        moved = await handle.execute_update(
            SuggestionWorkflow.reclassify, Reclassify(complexity="complex", reason="needs a staffing study", by="coordinator-1")
        )
        same = await _refusal(handle, SuggestionWorkflow.reclassify, Reclassify(complexity="complex", reason="x", by="coordinator-1"))
        desc = await handle.describe()

    assert moved.complexity == "complex" and moved.due_at == COMPLEX_DUE
    assert "already complex" in same
    (entry,) = [e for e in sqlite_store.audit_trail("suggestion", "SUG-0001") if e.action == "reclassified"]
    assert entry.reason == "needs a staffing study" and entry.details["from"] == "general"
    assert desc.typed_search_attributes.get(search.STEP_DUE_AT) == COMPLEX_DUE


async def test_an_answer_is_published_and_the_submitter_told(env, hall_worker, sqlite_store):
    async with hall_worker(env.client) as tq:
        adopted_handle, _ = await _start(env, tq, suggestion("SUG-A"))
        adopted = await adopted_handle.execute_update(
            SuggestionWorkflow.respond,
            Respond(department="natural-resources", officer="officer-zhou", adopted=True, measures="周六开放至17:00，11月起试行"),
        )
        refused_handle, _ = await _start(env, tq, suggestion("SUG-R"))
        refused = await refused_handle.execute_update(
            SuggestionWorkflow.respond,
            Respond(department="natural-resources", officer="officer-zhou", adopted=False, reason="周六已有预约办理"),
        )
        desc = await refused_handle.describe()
        # Answered means done: the run has completed, so the server itself refuses any later Update.
        with pytest.raises(RPCError):
            await refused_handle.execute_update(
                SuggestionWorkflow.reclassify, Reclassify(complexity="complex", reason="x", by="coordinator-1")
            )

    public = PublicationActivities(sqlite_store.engine).published()
    assert {(p.suggestion_no, p.adopted, p.reason, p.measures) for p in public} == {
        ("SUG-A", True, "", "周六开放至17:00，11月起试行"),
        ("SUG-R", False, "周六已有预约办理", ""),
    }
    assert all(p.on_time for p in public)
    assert "citizen-8812" not in str([p.model_dump() for p in public]) + str(desc.typed_search_attributes)
    assert adopted.stage == SuggestionStage.ANSWERED and adopted.answer is not None and adopted.answer.adopted
    assert refused.answer is not None and not refused.answer.adopted
    told = [n for n in sqlite_store.notices("SUG-R") if n.kind == "suggestion_answered"]
    assert [n.recipient for n in told] == ["submitter:citizen-8812"] and "周六已有预约办理" in told[0].body
    assert _actions(sqlite_store, "SUG-R") == ["submitted", "answered", "published"]
    assert desc.typed_search_attributes.get(search.FEEDBACK_STAGE) == "answered"
    # The submitter's id is only ever a notice recipient: never in the audit trail or a notice text.
    trail = sqlite_store.audit_trail("suggestion", "SUG-A") + sqlite_store.audit_trail("suggestion", "SUG-R")
    notices = sqlite_store.notices("SUG-A") + sqlite_store.notices("SUG-R")
    assert "citizen-8812" not in str([e.model_dump() for e in trail])
    assert "citizen-8812" not in str([n.model_dump(exclude={"recipient"}) for n in notices])


async def test_non_adoption_without_reason_and_the_wrong_department_are_refused(env, hall_worker):
    async with hall_worker(env.client) as tq:
        handle, _ = await _start(env, tq, suggestion())
        with pytest.raises(WorkflowUpdateFailedError) as no_reason:
            await handle.execute_update(
                "respond", {"department": "natural-resources", "officer": "officer-zhou", "adopted": False}
            )
        # An officer of natural-resources answering in taxation's name: the suggestion's own check.
        other = await _refusal(
            handle, SuggestionWorkflow.respond, Respond(department="taxation", officer="officer-zhou", adopted=True)
        )
        # taxation's own officer: the directory does not let them answer for natural-resources.
        outsider = await _refusal(
            handle, SuggestionWorkflow.respond, Respond(department="taxation", officer="tax-01", adopted=True)
        )
        history = await handle.fetch_history()

    assert "reason" in str(no_reason.value.cause)
    assert "for natural-resources to answer, not taxation" in other
    assert outsider.startswith("Forbidden") and "tax-01 may not respond" in outsider
    accepted = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED]
    assert accepted == []


async def test_reminded_the_day_before_then_escalated_at_the_deadline_and_answered_late(env, hall_worker, sqlite_store):
    async with hall_worker(env.client) as tq:
        handle, _ = await _start(env, tq, suggestion())
        await travel_to(env, GENERAL_DUE - timedelta(days=1) - MINUTE)
        await handle.query(SuggestionWorkflow.status)
        early = [n.kind for n in sqlite_store.notices("SUG-0001")]
        await travel_to(env, GENERAL_DUE - MINUTE)
        await eventually(lambda: "reminded" in _actions(sqlite_store, "SUG-0001"))
        before = await handle.query(SuggestionWorkflow.status)
        await travel_to(env, GENERAL_DUE + MINUTE)
        late = await _wait(handle, lambda s: s.overdue)
        await eventually(lambda: "step_overdue" in _actions(sqlite_store, "SUG-0001"))
        desc = await handle.describe()
        answered = await handle.execute_update(
            SuggestionWorkflow.respond,
            Respond(department="natural-resources", officer="officer-zhou", adopted=False, reason="超出本部门职责"),
        )

    assert "suggestion_reminder" not in early
    (reminder,) = [n for n in sqlite_store.notices("SUG-0001") if n.kind == "suggestion_reminder"]
    assert abs(reminder.at - (GENERAL_DUE - timedelta(days=1))) < timedelta(seconds=5)
    assert not before.overdue and late.overdue and late.stage == SuggestionStage.OPEN
    (escalation,) = [n for n in sqlite_store.notices("SUG-0001") if n.kind == "suggestion_overdue"]
    assert escalation.recipient == "head:natural-resources" and abs(escalation.at - GENERAL_DUE) < timedelta(seconds=5)
    assert desc.typed_search_attributes.get(search.STEP_OVERDUE) is True
    assert answered.answer is not None and answered.answer.on_time is False
    (published,) = PublicationActivities(sqlite_store.engine).published(department="natural-resources")
    assert published.on_time is False


async def test_an_overdue_suggestion_reclassified_as_complex_is_no_longer_overdue_and_is_chased_again(
    env, hall_worker, sqlite_store
):
    async with hall_worker(env.client) as tq:
        handle, _ = await _start(env, tq, suggestion())
        await travel_to(env, GENERAL_DUE + MINUTE)
        await _wait(handle, lambda s: s.overdue)
        await eventually(lambda: "step_overdue" in _actions(sqlite_store, "SUG-0001"))
        moved = await handle.execute_update(
            SuggestionWorkflow.reclassify, Reclassify(complexity="complex", reason="needs a staffing study", by="coordinator-1")
        )
        moved_attrs = (await handle.describe()).typed_search_attributes
        # The complex deadline gets its own reminder and escalation.
        await travel_to(env, COMPLEX_DUE - timedelta(days=1) + MINUTE)
        await eventually(lambda: _actions(sqlite_store, "SUG-0001").count("reminded") == 2)
        await travel_to(env, COMPLEX_DUE + MINUTE)
        again = await _wait(handle, lambda s: s.overdue)
        await eventually(lambda: _actions(sqlite_store, "SUG-0001").count("step_overdue") == 2)
        again_attrs = (await handle.describe()).typed_search_attributes

    assert moved.due_at == COMPLEX_DUE and not moved.overdue and moved.stage == SuggestionStage.OPEN
    assert moved_attrs.get(search.STEP_OVERDUE) is False and moved_attrs.get(search.STEP_DUE_AT) == COMPLEX_DUE
    assert again.overdue and again_attrs.get(search.STEP_OVERDUE) is True
    assert _actions(sqlite_store, "SUG-0001") == [
        "submitted", "reminded", "step_overdue", "reclassified", "reminded", "step_overdue"
    ]
    chased = [(n.kind, n.recipient, n.at) for n in sqlite_store.notices("SUG-0001") if n.kind != "suggestion_received"]
    assert [(kind, to) for kind, to, _ in chased] == [
        ("suggestion_reminder", "natural-resources"),
        ("suggestion_overdue", "head:natural-resources"),
        ("suggestion_reminder", "natural-resources"),
        ("suggestion_overdue", "head:natural-resources"),
    ]
    expected = [GENERAL_DUE - timedelta(days=1), GENERAL_DUE, COMPLEX_DUE - timedelta(days=1), COMPLEX_DUE]
    assert all(abs(at - want) < timedelta(seconds=5) for (_, _, at), want in zip(chased, expected))


async def test_an_answer_sent_with_the_start_is_refused_until_the_deadline_is_known(env, hall_worker, sqlite_store):
    s = suggestion()
    async with hall_worker(env.client) as tq:
        await travel_to(env, WEDNESDAY_BEFORE_NATIONAL_DAY)
        start = WithStartWorkflowOperation(
            SuggestionWorkflow.run, s, id=suggestion_workflow_id(s.suggestion_no), task_queue=tq,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL, execution_timeout=timedelta(days=400),
        )
        with pytest.raises(WorkflowUpdateFailedError) as early:
            await env.client.execute_update_with_start_workflow(
                SuggestionWorkflow.respond,
                Respond(department="natural-resources", officer="officer-zhou", adopted=True),
                start_workflow_operation=start,
            )
        handle = await start.workflow_handle()
        registered = await _wait(handle, lambda st: st.due_at is not None)
        answered = await handle.execute_update(
            SuggestionWorkflow.respond, Respond(department="natural-resources", officer="officer-zhou", adopted=True)
        )

    assert "still being registered" in str(early.value.cause) and "again in a moment" in str(early.value.cause)
    assert registered.due_at == GENERAL_DUE
    assert answered.stage == SuggestionStage.ANSWERED and answered.answer is not None and answered.answer.on_time


class HeldCalendar(CalendarActivities):
    """The real test calendar, except that its second answer waits until the test releases it."""

    def __init__(self) -> None:
        super().__init__(Calendar.load(TEST_CALENDAR))
        self.asked = 0
        self.release = asyncio.Event()

    @activity.defn(name="working_days_after")
    async def working_days_after(self, request: WorkingDaysRequest) -> WorkingDays:
        self.asked += 1
        if self.asked > 1:
            await self.release.wait()
        return self.calendar.working_days_after(request.start, request.days)


async def test_an_answer_while_a_reclassification_is_being_applied_is_refused_then_accepted(
    env, sqlite_store, catalog
):
    calendar = HeldCalendar()
    activities = hallflow_activities(sqlite_store, calendar, CatalogActivities(catalog))  # with the held calendar
    tq = f"suggestion-test-{uuid.uuid4()}"
    answer = Respond(department="natural-resources", officer="officer-zhou", adopted=False, reason="超出本部门职责")
    with ThreadPoolExecutor(max_workers=4) as executor:
        async with Worker(
            env.client, task_queue=tq, workflows=[SuggestionWorkflow], interceptors=INTERCEPTORS, activities=activities, activity_executor=executor
        ):
            handle, _ = await _start(env, tq, suggestion())
            reclassifying = asyncio.create_task(
                handle.execute_update(
                    SuggestionWorkflow.reclassify, Reclassify(complexity="complex", reason="staffing study", by="coordinator-1")
                )
            )
            await eventually(lambda: calendar.asked == 2)  # the new deadline is being computed
            busy = await _refusal(handle, SuggestionWorkflow.respond, answer)
            calendar.release.set()
            reclassified = await reclassifying
            answered = await handle.execute_update(SuggestionWorkflow.respond, answer)

    assert "SUG-0001 is being reclassified; send the answer again in a moment" in busy
    assert reclassified.due_at == COMPLEX_DUE
    assert answered.answer is not None and answered.answer.complexity == "complex" and answered.answer.on_time
    assert _actions(sqlite_store, "SUG-0001") == ["submitted", "reclassified", "answered", "published"]


def test_publication_is_written_once_per_key(db_engine):
    publications = PublicationActivities(db_engine)
    at = datetime(2099, 10, 9, 2, tzinfo=timezone.utc)
    entry = Publication(
        suggestion_no="SUG-9", topic="t", department="taxation", complexity="general", adopted=False,
        reason="r", submitted_at=at, answered_at=at, on_time=True,
    )
    record = PublicationRecord(key="k-1", entry=entry)
    assert publications.publish_answer(record) is True
    assert publications.publish_answer(record) is False  # a retry
    assert publications.published("taxation") == [entry] and publications.published("other") == []


def test_a_second_answer_for_the_same_suggestion_replaces_the_published_one(db_engine):
    """A run reset to before its answer answers again with new keys: one entry, the newest answer."""
    publications = PublicationActivities(db_engine)
    at = datetime(2099, 10, 9, 2, tzinfo=timezone.utc)
    first = Publication(
        suggestion_no="SUG-7", topic="t", department="taxation", complexity="general", adopted=False,
        reason="周六已有预约办理", submitted_at=at, answered_at=at, on_time=True,
    )
    second = first.model_copy(update={"adopted": True, "reason": "", "measures": "周六开放至17:00", "answered_at": at + HOUR})
    assert publications.publish_answer(PublicationRecord(key="run-1", entry=first)) is True
    assert publications.publish_answer(PublicationRecord(key="run-2", entry=second)) is True
    assert publications.publish_answer(PublicationRecord(key="run-2", entry=second)) is False  # a retry
    assert publications.published() == [second]
