"""差评整改: every bad review verified, rectified or explained and answered; overdue steps escalate
and stay open.

Instants are written in Asia/Shanghai; "D 24:00" is when a limit ending on working day D runs out.
Working days come from tests/data/calendar/2099.toml (2026's arrangement replayed in 2099).
"""

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WithStartWorkflowOperation, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.worker import Worker

from activities.calendar import Calendar, CalendarActivities
from activities.catalog import CatalogActivities
from contract import search
from contract.common import SHANGHAI
from contract.rating import (
    ConfirmSetAside,
    Rating,
    RectificationOrder,
    RectificationStage,
    RectificationStatus,
    Rectify,
    Verify,
)
from tests.builders import WEDNESDAY_BEFORE_NATIONAL_DAY, eventually, wait_status
from tests.temporal_fixtures import TEST_CALENDAR, TEST_EPOCH, travel_to
from worker import INTERCEPTORS, hallflow_activities
from workflows.rectification import RectificationWorkflow


def local(y: int, m: int, d: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(y, m, d, hour, minute, tzinfo=SHANGHAI)


# Opened Mon 2099-01-05 10:00. Call back within 1 working day: Tue 01-06 24:00, reminded at 00:00
# that Tuesday. Rectify within 5: Tue, Wed, Thu, Fri, Mon 01-12 24:00, reminded at 00:00 that Monday.
VERIFY_DUE = local(2099, 1, 7)
VERIFY_REMINDER = local(2099, 1, 6)
RECTIFY_DUE = local(2099, 1, 13)
RECTIFY_REMINDER = local(2099, 1, 12)
MINUTE = timedelta(minutes=1)
# Notices and audit entries are written by activities a moment after the timer fires.
ON_TIME = timedelta(seconds=5)
DEPARTMENT = "market-regulation"
APPLICANT = "app-rect-1"
COMMENT = "窗口态度差"


def order(case_no: str = "RECT-0001", score: int = 1) -> RectificationOrder:
    # Also used by tests/record_histories.py and tests/test_rating.py: keep the signature.
    return RectificationOrder(
        case_no=case_no,
        matter_code="enterprise-opening",
        department=DEPARTMENT,
        hall="hall-central",
        rating=Rating(
            case_no=case_no,
            matter_code="enterprise-opening",
            department=DEPARTMENT,
            hall="hall-central",
            score=score,
            comment=COMMENT,
            channel="window",
            at=TEST_EPOCH,
        ),
        applicant_id=APPLICANT,
        verify_days=1,
        rectify_days=5,
    )


# ---- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture
def rectification_worker(sqlite_store, catalog):
    """A worker for RectificationWorkflow alone, with every hallflow activity, on a fresh task queue."""

    @asynccontextmanager
    async def start(client):
        task_queue = f"rectification-test-{uuid.uuid4()}"
        activities = hallflow_activities(
            sqlite_store, CalendarActivities(Calendar.load(TEST_CALENDAR), TEST_CALENDAR), CatalogActivities(catalog)
        )
        with ThreadPoolExecutor(max_workers=4) as executor:
            async with Worker(
                client,
                task_queue=task_queue,
                workflows=[RectificationWorkflow],
                interceptors=INTERCEPTORS,
                activities=activities,
                activity_executor=executor,
            ):
                yield task_queue

    return start


async def _start(env, tq: str, o: RectificationOrder | None = None) -> tuple[RectificationOrder, WorkflowHandle]:
    o = o or order()
    handle = await env.client.start_workflow(
        RectificationWorkflow.run,
        o,
        id=f"rectification-{o.case_no}",
        task_queue=tq,
        execution_timeout=timedelta(days=400),
    )
    await _wait(handle, lambda s: s.due_at is not None)
    return o, handle


async def _wait(handle: WorkflowHandle, check) -> RectificationStatus:
    return await wait_status(handle, check, query=RectificationWorkflow.status)


async def _quiet(handle: WorkflowHandle) -> RectificationStatus:
    """Status after giving anything that came due during the last travel time to run."""
    await asyncio.sleep(0.25)
    return await handle.query(RectificationWorkflow.status)


def _actions(store, case_no: str) -> list[str]:
    return [e.action for e in store.audit_trail("rectification", case_no)]


def _notices(store, case_no: str, kind: str) -> list:
    return [n for n in store.notices(case_no) if n.kind == kind]


async def _refusal(handle: WorkflowHandle, update, arg) -> tuple[str | None, str]:
    """The refused Update's failure type and message."""
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await handle.execute_update(update, arg)
    cause = err.value.cause
    return getattr(cause, "type", None), str(cause)


async def _search(handle: WorkflowHandle):
    return (await handle.describe()).typed_search_attributes


async def _details(handle: WorkflowHandle) -> str:
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return metadata.current_details


def _accepted_updates(history) -> int:
    return sum(1 for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED)


# ---- answered on time -------------------------------------------------------------------------


async def test_verified_and_rectified_on_time_the_applicant_gets_the_reply(env, rectification_worker, sqlite_store):
    async with rectification_worker(env.client) as tq:
        o, handle = await _start(env, tq)
        opened = await handle.query(RectificationWorkflow.status)
        opened_search = await _search(handle)
        opened_details = await _details(handle)
        verified = await handle.execute_update(
            RectificationWorkflow.verify, Verify(officer="officer-li", finding="waited 40 minutes at window 3")
        )
        rectifying = await _wait(handle, lambda s: s.stage == RectificationStage.RECTIFYING)
        rectifying_search = await _search(handle)
        answered = await handle.execute_update(
            RectificationWorkflow.rectify,
            Rectify(officer="officer-li", action="added a second clerk at peak hours", reply="已增加高峰时段窗口人员，感谢监督"),
        )
        result = await handle.result()
        final_search = await _search(handle)

    assert opened.stage == RectificationStage.VERIFYING and opened.due_at == VERIFY_DUE and not opened.overdue
    assert opened_search.get(search.FEEDBACK_STAGE) == "verifying"
    assert opened_search.get(search.STEP_DUE_AT) == VERIFY_DUE and opened_search.get(search.STEP_OVERDUE) is False
    assert opened_search.get(search.DEPARTMENT) == DEPARTMENT
    assert opened_search.get(search.MATTER_CODE) == "enterprise-opening"
    assert opened_search.get(search.HALL) == "hall-central"
    assert "verifying" in opened_details and o.case_no in opened_details and "2099-01-06" in opened_details
    assert "\n" not in opened_details
    assert verified.verified_by == "officer-li"
    assert rectifying.due_at == RECTIFY_DUE
    assert rectifying_search.get(search.FEEDBACK_STAGE) == "rectifying"
    assert rectifying_search.get(search.STEP_DUE_AT) == RECTIFY_DUE
    assert answered.stage == result.stage == RectificationStage.RECTIFIED
    assert result.action == "added a second clerk at peak hours" and not result.overdue
    assert final_search.get(search.FEEDBACK_STAGE) == "rectified" and final_search.get(search.STEP_OVERDUE) is False

    trail = sqlite_store.audit_trail("rectification", o.case_no)
    assert [(e.action, e.actor) for e in trail] == [
        ("opened", "hallflow"),
        ("verified", "officer-li"),
        ("rectified", "officer-li"),
    ]
    assert trail[1].reason == "waited 40 minutes at window 3"
    assert trail[2].reason == "added a second clerk at peak hours"
    assert all(e.workflow_id == f"rectification-{o.case_no}" and e.run_id for e in trail)
    (answer,) = _notices(sqlite_store, o.case_no, "rating_answered")
    assert answer.recipient == f"applicant:{APPLICANT}" and "已增加高峰时段窗口人员" in answer.body
    (told,) = _notices(sqlite_store, o.case_no, "bad_review")
    assert told.recipient == DEPARTMENT
    # Answered in time: nobody was reminded or escalated.
    assert not _notices(sqlite_store, o.case_no, "rectification_reminder")
    assert not _notices(sqlite_store, o.case_no, "rectification_overdue")
    # The rater is confidential: neither the applicant id nor the comment in search attributes,
    # current details or the audit trail.
    visible = str(final_search) + opened_details + str(trail)
    assert APPLICANT not in visible and COMMENT not in visible


# ---- reminders and escalation -----------------------------------------------------------------


async def test_call_back_is_reminded_then_escalated_at_the_deadline_and_stays_open(
    env, rectification_worker, sqlite_store
):
    async with rectification_worker(env.client) as tq:
        o, handle = await _start(env, tq)
        await travel_to(env, VERIFY_REMINDER - MINUTE)
        await _quiet(handle)
        before_reminder = _notices(sqlite_store, o.case_no, "rectification_reminder")
        await travel_to(env, VERIFY_REMINDER + MINUTE)
        await eventually(lambda: "reminded" in _actions(sqlite_store, o.case_no))
        await travel_to(env, VERIFY_DUE - MINUTE)
        before_due = await _quiet(handle)
        await travel_to(env, VERIFY_DUE + MINUTE)
        overdue = await _wait(handle, lambda s: s.overdue)
        await eventually(lambda: "step_overdue" in _actions(sqlite_store, o.case_no))
        overdue_search = await _search(handle)
        overdue_details = await _details(handle)
        # A day later it is still open, escalated once.
        await travel_to(env, VERIFY_DUE + timedelta(days=1))
        still = await _quiet(handle)
        # Late, but still done: the call-back is accepted and the next step starts fresh.
        await handle.execute_update(
            RectificationWorkflow.verify, Verify(officer="officer-wang", finding="confirmed delay")
        )
        rectifying = await _wait(handle, lambda s: s.stage == RectificationStage.RECTIFYING)
        rectifying_search = await _search(handle)

    assert not before_reminder
    (reminder,) = _notices(sqlite_store, o.case_no, "rectification_reminder")
    assert reminder.recipient == DEPARTMENT and abs(reminder.at - VERIFY_REMINDER) < ON_TIME
    assert "回访核实" in reminder.body and "2099-01-06" in reminder.body
    assert not before_due.overdue
    assert overdue.stage == RectificationStage.VERIFYING
    (escalation,) = _notices(sqlite_store, o.case_no, "rectification_overdue")
    assert escalation.recipient == f"head:{DEPARTMENT}" and abs(escalation.at - VERIFY_DUE) < ON_TIME
    assert overdue_search.get(search.STEP_OVERDUE) is True and overdue_search.get(search.FEEDBACK_STAGE) == "verifying"
    assert "OVERDUE" in overdue_details
    assert still.stage == RectificationStage.VERIFYING and still.overdue
    assert _actions(sqlite_store, o.case_no) == ["opened", "reminded", "step_overdue", "verified"]
    assert rectifying.due_at == RECTIFY_DUE and not rectifying.overdue
    assert rectifying_search.get(search.STEP_OVERDUE) is False
    assert rectifying_search.get(search.STEP_DUE_AT) == RECTIFY_DUE


async def test_rectification_is_reminded_escalated_once_at_its_deadline_and_still_answered(
    env, rectification_worker, sqlite_store
):
    async with rectification_worker(env.client) as tq:
        o, handle = await _start(env, tq)
        await handle.execute_update(RectificationWorkflow.verify, Verify(officer="officer-li", finding="valid"))
        await _wait(handle, lambda s: s.stage == RectificationStage.RECTIFYING)
        await travel_to(env, RECTIFY_REMINDER - MINUTE)
        await _quiet(handle)
        before_reminder = _notices(sqlite_store, o.case_no, "rectification_reminder")
        await travel_to(env, RECTIFY_REMINDER + MINUTE)
        await eventually(lambda: "reminded" in _actions(sqlite_store, o.case_no))
        await travel_to(env, RECTIFY_DUE - MINUTE)
        before_due = await _quiet(handle)
        await travel_to(env, RECTIFY_DUE + MINUTE)
        await _wait(handle, lambda s: s.overdue)
        await eventually(lambda: "step_overdue" in _actions(sqlite_store, o.case_no))
        await travel_to(env, RECTIFY_DUE + timedelta(days=3))
        still = await _quiet(handle)
        overdue_search = await _search(handle)
        result = await handle.execute_update(
            RectificationWorkflow.rectify, Rectify(officer="officer-li", action="explained the rule", reply="已向您解释相关规定")
        )
        final_search = await _search(handle)

    # The call-back came at once: the only reminder is the rectification's.
    assert not before_reminder
    (reminder,) = _notices(sqlite_store, o.case_no, "rectification_reminder")
    assert abs(reminder.at - RECTIFY_REMINDER) < ON_TIME and "整改答复" in reminder.body
    assert not before_due.overdue
    assert still.stage == RectificationStage.RECTIFYING and still.overdue
    assert overdue_search.get(search.STEP_OVERDUE) is True and overdue_search.get(search.STEP_DUE_AT) == RECTIFY_DUE
    (escalation,) = _notices(sqlite_store, o.case_no, "rectification_overdue")
    assert escalation.recipient == f"head:{DEPARTMENT}" and abs(escalation.at - RECTIFY_DUE) < ON_TIME
    assert result.stage == RectificationStage.RECTIFIED
    assert final_search.get(search.STEP_OVERDUE) is False
    assert _actions(sqlite_store, o.case_no) == ["opened", "verified", "reminded", "step_overdue", "rectified"]
    (answer,) = _notices(sqlite_store, o.case_no, "rating_answered")
    assert "已向您解释相关规定" in answer.body


# ---- malicious reviews ------------------------------------------------------------------------


async def test_a_malicious_review_is_set_aside_only_with_a_second_officer(env, rectification_worker, sqlite_store):
    async with rectification_worker(env.client) as tq:
        o, handle = await _start(env, tq)
        no_reason = await _refusal(handle, "verify", {"officer": "officer-li", "finding": "", "malicious": True})
        await handle.execute_update(
            RectificationWorkflow.verify,
            Verify(officer="officer-li", finding="rater never applied; same text on 30 cases", malicious=True),
        )
        waiting = await _wait(handle, lambda s: s.stage == RectificationStage.AWAITING_CONFIRMATION)
        waiting_search = await _search(handle)
        same = await _refusal(
            handle, RectificationWorkflow.confirm_set_aside, ConfirmSetAside(officer="officer-li", reason="x")
        )
        same_other_case = await _refusal(
            handle, RectificationWorkflow.confirm_set_aside, ConfirmSetAside(officer="Officer-Li", reason="x")
        )
        answered = await handle.execute_update(
            RectificationWorkflow.confirm_set_aside,
            ConfirmSetAside(officer="officer-zhao", reason="checked the call log"),
        )
        result = await handle.result()
        final_search = await _search(handle)

    assert "finding" in no_reason[1]
    assert waiting.malicious and waiting.due_at == RECTIFY_DUE
    assert waiting_search.get(search.FEEDBACK_STAGE) == "awaiting_confirmation"
    assert waiting_search.get(search.STEP_DUE_AT) == RECTIFY_DUE
    assert same[0] == "SameOfficer" and "second officer" in same[1]
    # The same id in other letter case is nobody: directory ids are lower case (contract.common.Code),
    # so it is refused before the four-eyes rule, and confirms nothing either.
    assert same_other_case[0] == "UnknownActor" and "Officer-Li" in same_other_case[1]
    assert answered.stage == result.stage == RectificationStage.SET_ASIDE and result.confirmed_by == "officer-zhao"
    assert final_search.get(search.FEEDBACK_STAGE) == "set_aside"
    trail = sqlite_store.audit_trail("rectification", o.case_no)
    assert [(e.action, e.actor) for e in trail] == [
        ("opened", "hallflow"),
        ("found_malicious", "officer-li"),
        ("set_aside_confirmed", "officer-zhao"),
        ("set_aside", "officer-zhao"),
    ]
    assert trail[1].reason == "rater never applied; same text on 30 cases" and trail[3].reason == "checked the call log"
    # A malicious review is not answered.
    assert not _notices(sqlite_store, o.case_no, "rating_answered")


async def test_an_unconfirmed_set_aside_stays_open_and_escalates_at_the_deadline(
    env, rectification_worker, sqlite_store
):
    async with rectification_worker(env.client) as tq:
        o, handle = await _start(env, tq)
        await handle.execute_update(
            RectificationWorkflow.verify, Verify(officer="officer-li", finding="abusive text", malicious=True)
        )
        await _wait(handle, lambda s: s.stage == RectificationStage.AWAITING_CONFIRMATION)
        same = await _refusal(
            handle, RectificationWorkflow.confirm_set_aside, ConfirmSetAside(officer="officer-li", reason="abusive")
        )
        await travel_to(env, RECTIFY_DUE - MINUTE)
        before_due = await _quiet(handle)
        await travel_to(env, RECTIFY_DUE + MINUTE)
        overdue = await _wait(handle, lambda s: s.overdue)
        await eventually(lambda: "step_overdue" in _actions(sqlite_store, o.case_no))
        overdue_search = await _search(handle)
        # Still open: a second officer can still confirm.
        result = await handle.execute_update(
            RectificationWorkflow.confirm_set_aside,
            ConfirmSetAside(officer="officer-zhao", reason="abusive text confirmed"),
        )

    assert same[0] == "SameOfficer"
    assert before_due.stage == RectificationStage.AWAITING_CONFIRMATION and not before_due.overdue
    assert overdue.stage == RectificationStage.AWAITING_CONFIRMATION
    assert overdue_search.get(search.STEP_OVERDUE) is True
    (escalation,) = _notices(sqlite_store, o.case_no, "rectification_overdue")
    assert escalation.recipient == f"head:{DEPARTMENT}" and abs(escalation.at - RECTIFY_DUE) < ON_TIME
    assert "恶意差评剔除复核" in escalation.body
    assert result.stage == RectificationStage.SET_ASIDE
    assert _actions(sqlite_store, o.case_no) == [
        "opened",
        "found_malicious",
        "reminded",
        "step_overdue",
        "set_aside_confirmed",
        "set_aside",
    ]


# ---- working days -----------------------------------------------------------------------------


async def test_deadlines_and_reminders_skip_the_weekend(env, rectification_worker, sqlite_store):
    # Opened Fri 01-09 10:00: call back by Mon 01-12 24:00, reminded Mon 00:00 (not on the weekend);
    # rectify by Mon, Tue, Wed, Thu, Fri 01-16 24:00.
    await travel_to(env, local(2099, 1, 9, 10))
    async with rectification_worker(env.client) as tq:
        o, handle = await _start(env, tq, order("RECT-0003"))
        verifying = await handle.query(RectificationWorkflow.status)
        await travel_to(env, local(2099, 1, 12) - MINUTE)
        await _quiet(handle)
        weekend = _notices(sqlite_store, o.case_no, "rectification_reminder")
        await travel_to(env, local(2099, 1, 12) + MINUTE)
        await eventually(lambda: "reminded" in _actions(sqlite_store, o.case_no))
        await handle.execute_update(RectificationWorkflow.verify, Verify(officer="officer-li", finding="valid"))
        rectifying = await _wait(handle, lambda s: s.stage == RectificationStage.RECTIFYING)

    assert verifying.due_at == local(2099, 1, 13)
    assert not weekend
    (reminder,) = _notices(sqlite_store, o.case_no, "rectification_reminder")
    assert abs(reminder.at - local(2099, 1, 12)) < ON_TIME
    assert rectifying.due_at == local(2099, 1, 17)


async def test_deadlines_count_working_days_across_national_day(env, rectification_worker, sqlite_store):
    # Opened Wed 09-30: 10-01..07 off; working days 10-08, 10-09, make-up Sat 10-10, 10-12, 10-13.
    await travel_to(env, WEDNESDAY_BEFORE_NATIONAL_DAY)
    async with rectification_worker(env.client) as tq:
        o, handle = await _start(env, tq, order("RECT-0002"))
        verifying = await handle.query(RectificationWorkflow.status)
        await travel_to(env, local(2099, 10, 8) - MINUTE)
        holiday = await _quiet(handle)
        holiday_reminders = _notices(sqlite_store, o.case_no, "rectification_reminder")
        await travel_to(env, local(2099, 10, 8) + MINUTE)
        await eventually(lambda: "reminded" in _actions(sqlite_store, o.case_no))
        await handle.execute_update(RectificationWorkflow.verify, Verify(officer="officer-li", finding="valid"))
        rectifying = await _wait(handle, lambda s: s.stage == RectificationStage.RECTIFYING)

    assert verifying.due_at == local(2099, 10, 9)
    assert not holiday.overdue and not holiday_reminders
    (reminder,) = _notices(sqlite_store, o.case_no, "rectification_reminder")
    assert abs(reminder.at - local(2099, 10, 8)) < ON_TIME
    assert rectifying.due_at == local(2099, 10, 14) and not rectifying.overdue


# ---- refusals ---------------------------------------------------------------------------------


async def test_refused_messages_leave_no_trace_in_history(env, rectification_worker, sqlite_store):
    async with rectification_worker(env.client) as tq:
        o, handle = await _start(env, tq)
        early_rectify = await _refusal(
            handle, RectificationWorkflow.rectify, Rectify(officer="officer-li", action="a", reply="r")
        )
        early_confirm = await _refusal(
            handle, RectificationWorkflow.confirm_set_aside, ConfirmSetAside(officer="officer-zhao", reason="r")
        )
        malformed = await _refusal(handle, "verify", {"officer": "officer-li"})
        unknown_field = await _refusal(handle, "verify", {"officer": "officer-li", "finding": "x", "name": "张三"})
        await handle.execute_update(
            RectificationWorkflow.verify, Verify(officer="officer-li", finding="abusive text", malicious=True)
        )
        await _wait(handle, lambda s: s.stage == RectificationStage.AWAITING_CONFIRMATION)
        again = await _refusal(handle, RectificationWorkflow.verify, Verify(officer="officer-wang", finding="x"))
        rectify_malicious = await _refusal(
            handle, RectificationWorkflow.rectify, Rectify(officer="officer-li", action="a", reply="r")
        )
        same = await _refusal(
            handle, RectificationWorkflow.confirm_set_aside, ConfirmSetAside(officer="officer-li", reason="r")
        )
        no_reason = await _refusal(handle, "confirm_set_aside", {"officer": "officer-zhao", "reason": ""})
        history = await handle.fetch_history()

    assert early_rectify[0] == "WrongStage" and "rectify is accepted only while rectifying" in early_rectify[1]
    assert early_confirm[0] == "WrongStage"
    assert "finding" in malformed[1] and "name" in unknown_field[1]
    assert malformed[0] == unknown_field[0] == no_reason[0] == "InvalidPayload"
    assert again[0] == "AlreadyVerified" and "already verified by officer-li" in again[1]
    assert rectify_malicious[0] == "WrongStage"
    assert same[0] == "SameOfficer"
    assert "reason" in no_reason[1]
    assert _accepted_updates(history) == 1
    assert _actions(sqlite_store, o.case_no) == ["opened", "found_malicious"]


async def test_a_call_back_sent_with_the_start_is_audited_after_the_opening(env, rectification_worker, sqlite_store):
    # Update-with-start (or an Update queued while no worker ran): the call-back arrives before
    # the deadlines are known, and still goes in the audit trail after "opened".
    o = order("RECT-0004")
    async with rectification_worker(env.client) as tq:
        start = WithStartWorkflowOperation(
            RectificationWorkflow.run,
            o,
            id=f"rectification-{o.case_no}",
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            task_queue=tq,
            execution_timeout=timedelta(days=400),
        )
        verified = await env.client.execute_update_with_start_workflow(
            RectificationWorkflow.verify,
            Verify(officer="officer-li", finding="called at once"),
            start_workflow_operation=start,
        )
        handle = await start.workflow_handle()
        again = await _refusal(handle, RectificationWorkflow.verify, Verify(officer="officer-wang", finding="x"))
        rectifying = await _wait(handle, lambda s: s.stage == RectificationStage.RECTIFYING)
        await eventually(lambda: "bad_review" in [n.kind for n in sqlite_store.notices(o.case_no)])

    assert verified.verified_by == "officer-li" and verified.due_at is not None
    assert again[0] == "AlreadyVerified"
    assert rectifying.due_at == RECTIFY_DUE
    assert _actions(sqlite_store, o.case_no) == ["opened", "verified"]
