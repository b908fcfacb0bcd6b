"""差评整改: every bad review verified, rectified or explained and answered; overdue steps escalate."""

from datetime import datetime, timedelta, timezone

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowUpdateFailedError

from contract import search
from contract.rating import (
    ConfirmSetAside,
    Rating,
    RectificationOrder,
    RectificationStage,
    Rectify,
    Verify,
)
from tests.builders import WEDNESDAY_BEFORE_NATIONAL_DAY, eventually, wait_status
from tests.temporal_fixtures import TEST_EPOCH, travel_to
from workflows.rectification import RectificationWorkflow

# Opened Mon 2099-01-05 10:00 +08:00. Call back within 1 working day: Tue 01-06 24:00, reminded
# at 00:00 that Tuesday. Rectify within 5: Tue, Wed, Thu, Fri, Mon 01-12 24:00.
VERIFY_DUE = datetime(2099, 1, 6, 16, tzinfo=timezone.utc)
VERIFY_REMINDER = VERIFY_DUE - timedelta(days=1)
RECTIFY_DUE = datetime(2099, 1, 12, 16, tzinfo=timezone.utc)
MINUTE = timedelta(minutes=1)


def order(case_no: str = "RECT-0001", score: int = 1) -> RectificationOrder:
    return RectificationOrder(
        case_no=case_no,
        matter_code="enterprise-opening",
        department="market-regulation",
        hall="hall-central",
        rating=Rating(
            case_no=case_no,
            matter_code="enterprise-opening",
            department="market-regulation",
            hall="hall-central",
            score=score,
            comment="窗口态度差",
            channel="window",
            at=TEST_EPOCH,
        ),
        applicant_id="app-rect-1",
        verify_days=1,
        rectify_days=5,
    )


async def _start(env, tq, o: RectificationOrder | None = None):
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


async def _wait(handle, check):
    return await wait_status(handle, check, query=RectificationWorkflow.status)


def _actions(store, case_no: str) -> list[str]:
    return [e.action for e in store.audit_trail("rectification", case_no)]


def _kinds(store, case_no: str) -> list[tuple[str, str]]:
    return [(n.kind, n.recipient) for n in store.notices(case_no)]


async def _refusal(handle, update, arg) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await handle.execute_update(update, arg)
    return str(err.value.cause)


async def test_verified_and_rectified_on_time_the_applicant_gets_the_reply(env, hall_worker, sqlite_store):
    async with hall_worker(env.client) as tq:
        o, handle = await _start(env, tq)
        opened = await handle.query(RectificationWorkflow.status)
        await handle.execute_update(
            RectificationWorkflow.verify, Verify(officer="officer-li", finding="waited 40 minutes at window 3")
        )
        await _wait(handle, lambda s: s.stage == RectificationStage.RECTIFYING)
        await handle.execute_update(
            RectificationWorkflow.rectify,
            Rectify(officer="officer-li", action="added a second clerk at peak hours", reply="已增加高峰时段窗口人员，感谢监督"),
        )
        result = await handle.result()
        desc = await handle.describe()

    assert opened.stage == RectificationStage.VERIFYING and opened.due_at == VERIFY_DUE
    assert result.stage == RectificationStage.RECTIFIED and result.verified_by == "officer-li"
    assert _actions(sqlite_store, o.case_no) == ["opened", "verified", "rectified"]
    answers = [n for n in sqlite_store.notices(o.case_no) if n.kind == "rating_answered"]
    assert [n.recipient for n in answers] == ["applicant:app-rect-1"] and "已增加高峰时段窗口人员" in answers[0].body
    assert ("bad_review", "market-regulation") in _kinds(sqlite_store, o.case_no)
    assert desc.typed_search_attributes.get(search.FEEDBACK_STAGE) == "rectified"
    assert desc.typed_search_attributes.get(search.STEP_OVERDUE) is False
    # The rater is confidential: no applicant id or comment in search attributes or the audit trail.
    visible = str(desc.typed_search_attributes) + str(sqlite_store.audit_trail("rectification", o.case_no))
    assert "app-rect-1" not in visible and "窗口态度差" not in visible


async def test_call_back_is_reminded_then_escalated_at_the_deadline_and_stays_open(env, hall_worker, sqlite_store):
    async with hall_worker(env.client) as tq:
        o, handle = await _start(env, tq)
        await travel_to(env, VERIFY_REMINDER - MINUTE)
        await handle.query(RectificationWorkflow.status)
        before_reminder = _kinds(sqlite_store, o.case_no)
        await travel_to(env, VERIFY_REMINDER + MINUTE)
        await eventually(lambda: "reminded" in _actions(sqlite_store, o.case_no))
        await travel_to(env, VERIFY_DUE - MINUTE)
        before_due = await handle.query(RectificationWorkflow.status)
        await travel_to(env, VERIFY_DUE + MINUTE)
        overdue = await _wait(handle, lambda s: s.overdue)
        await eventually(lambda: "step_overdue" in _actions(sqlite_store, o.case_no))
        desc = await handle.describe()
        # Late, but still done: the call-back is accepted and the next step starts fresh.
        await handle.execute_update(RectificationWorkflow.verify, Verify(officer="officer-wang", finding="confirmed delay"))
        rectifying = await _wait(handle, lambda s: s.stage == RectificationStage.RECTIFYING)

    assert ("rectification_reminder", "market-regulation") not in before_reminder
    reminder = [n for n in sqlite_store.notices(o.case_no) if n.kind == "rectification_reminder"]
    assert len(reminder) == 1 and abs(reminder[0].at - VERIFY_REMINDER) < timedelta(seconds=5)
    assert not before_due.overdue
    assert overdue.stage == RectificationStage.VERIFYING
    escalations = [n for n in sqlite_store.notices(o.case_no) if n.kind == "rectification_overdue"]
    assert [n.recipient for n in escalations] == ["head:market-regulation"]
    assert abs(escalations[0].at - VERIFY_DUE) < timedelta(seconds=5)
    assert desc.typed_search_attributes.get(search.STEP_OVERDUE) is True
    assert rectifying.due_at == RECTIFY_DUE and not rectifying.overdue


async def test_rectification_overdue_escalates_once(env, hall_worker, sqlite_store):
    async with hall_worker(env.client) as tq:
        o, handle = await _start(env, tq)
        await handle.execute_update(RectificationWorkflow.verify, Verify(officer="officer-li", finding="valid"))
        await travel_to(env, RECTIFY_DUE + timedelta(days=3))
        status = await _wait(handle, lambda s: s.overdue)
        await eventually(lambda: "step_overdue" in _actions(sqlite_store, o.case_no))

    assert status.stage == RectificationStage.RECTIFYING
    assert _actions(sqlite_store, o.case_no).count("step_overdue") == 1
    (escalation,) = [n for n in sqlite_store.notices(o.case_no) if n.kind == "rectification_overdue"]
    assert abs(escalation.at - RECTIFY_DUE) < timedelta(seconds=5)


async def test_a_malicious_review_is_set_aside_only_with_a_second_officer(env, hall_worker, sqlite_store):
    async with hall_worker(env.client) as tq:
        o, handle = await _start(env, tq)
        with pytest.raises(WorkflowUpdateFailedError) as no_reason:
            await handle.execute_update("verify", {"officer": "officer-li", "finding": "", "malicious": True})
        await handle.execute_update(
            RectificationWorkflow.verify,
            Verify(officer="officer-li", finding="rater never applied; same text on 30 cases", malicious=True),
        )
        waiting = await _wait(handle, lambda s: s.stage == RectificationStage.AWAITING_CONFIRMATION)
        same = await _refusal(handle, RectificationWorkflow.confirm_set_aside, ConfirmSetAside(officer="officer-li", reason="x"))
        await handle.execute_update(
            RectificationWorkflow.confirm_set_aside, ConfirmSetAside(officer="officer-zhao", reason="checked the call log")
        )
        result = await handle.result()

    assert "finding" in str(no_reason.value.cause)
    assert waiting.due_at == RECTIFY_DUE
    assert "second officer" in same
    assert result.stage == RectificationStage.SET_ASIDE and result.confirmed_by == "officer-zhao"
    assert _actions(sqlite_store, o.case_no) == ["opened", "found_malicious", "set_aside_confirmed", "set_aside"]
    # A malicious review is not answered.
    assert "rating_answered" not in [k for k, _ in _kinds(sqlite_store, o.case_no)]


async def test_an_unconfirmed_set_aside_escalates_at_the_deadline(env, hall_worker, sqlite_store):
    async with hall_worker(env.client) as tq:
        o, handle = await _start(env, tq)
        await handle.execute_update(
            RectificationWorkflow.verify, Verify(officer="officer-li", finding="abusive text", malicious=True)
        )
        await travel_to(env, RECTIFY_DUE + MINUTE)
        status = await _wait(handle, lambda s: s.overdue)

    assert status.stage == RectificationStage.AWAITING_CONFIRMATION


async def test_deadlines_count_working_days_across_national_day(env, hall_worker, sqlite_store):
    # Opened Wed 09-30: 10-01..07 off; working days 10-08, 10-09, make-up Sat 10-10, 10-12, 10-13.
    await travel_to(env, WEDNESDAY_BEFORE_NATIONAL_DAY)
    async with hall_worker(env.client) as tq:
        _, handle = await _start(env, tq, order("RECT-0002"))
        verifying = await handle.query(RectificationWorkflow.status)
        await handle.execute_update(RectificationWorkflow.verify, Verify(officer="officer-li", finding="valid"))
        rectifying = await _wait(handle, lambda s: s.stage == RectificationStage.RECTIFYING)

    assert verifying.due_at == datetime(2099, 10, 8, 16, tzinfo=timezone.utc)
    assert rectifying.due_at == datetime(2099, 10, 13, 16, tzinfo=timezone.utc)


async def test_refused_messages_leave_no_trace_in_history(env, hall_worker):
    async with hall_worker(env.client) as tq:
        _, handle = await _start(env, tq)
        early = await _refusal(handle, RectificationWorkflow.rectify, Rectify(officer="o", action="a", reply="r"))
        with pytest.raises(WorkflowUpdateFailedError) as malformed:
            await handle.execute_update("verify", {"officer": "officer-li"})
        await handle.execute_update(RectificationWorkflow.verify, Verify(officer="officer-li", finding="valid"))
        again = await _refusal(handle, RectificationWorkflow.verify, Verify(officer="officer-wang", finding="x"))
        history = await handle.fetch_history()

    accepted = sum(1 for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED)
    assert "rectify is accepted only while rectifying" in early
    assert "finding" in str(malformed.value.cause)
    assert "already verified by officer-li" in again
    assert accepted == 1


async def test_probe_verify_before_opened(env, hall_worker, sqlite_store):
    import asyncio
    o = order("RECT-EARLY")
    tq_holder = {}
    from tests.temporal_fixtures import TEST_EPOCH  # noqa
    import uuid
    tq = f"hallflow-test-{uuid.uuid4()}"
    handle = await env.client.start_workflow(RectificationWorkflow.run, o, id=f"rectification-{o.case_no}", task_queue=tq, execution_timeout=timedelta(days=400))
    upd = asyncio.create_task(handle.execute_update(RectificationWorkflow.verify, Verify(officer="officer-li", finding="early")))
    await asyncio.sleep(0.5)
    from temporalio.worker import Worker
    from concurrent.futures import ThreadPoolExecutor
    from worker import hallflow_activities
    from activities.calendar import Calendar, CalendarActivities
    from activities.catalog import CatalogActivities, load_catalog
    from settings import ROOT
    from tests.temporal_fixtures import TEST_CALENDAR
    acts = hallflow_activities(sqlite_store, CalendarActivities(Calendar.load(TEST_CALENDAR), TEST_CALENDAR), CatalogActivities(load_catalog(ROOT / "data" / "matters.toml")))
    with ThreadPoolExecutor(4) as ex:
        async with Worker(env.client, task_queue=tq, workflows=[RectificationWorkflow], activities=acts, activity_executor=ex):
            try:
                r = await upd
                print("ACCEPTED", r)
            except Exception as e:
                print("REFUSED", repr(e), getattr(e, "cause", None))
            await _wait(handle, lambda s: s.stage == RectificationStage.RECTIFYING)
            await eventually(lambda: len(_actions(sqlite_store, o.case_no)) >= 2)
    print("ACTIONS", _actions(sqlite_store, o.case_no))
