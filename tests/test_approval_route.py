"""Step 2, the approval route: 秒批, 并联审批 with per-department deadlines, 综合研判 (review,
transfer), 催办, and a result held back until every deferred material has arrived."""

import asyncio
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from activities.calendar import Calendar, CalendarActivities
from activities.catalog import CatalogActivities
from activities.store import Store
from contract import search
from contract.approval import DepartmentOpinion, OpinionState, Review, Transfer, Urge
from contract.case import CaseStage, SupplementMaterials
from tests.builders import OFFICER_OF, TUESDAY_BEFORE_NATIONAL_DAY, application, eventually, start_case, wait_status
from tests.temporal_fixtures import TEST_CALENDAR, TEST_EPOCH, travel_to
from worker import INTERCEPTORS, WORKFLOWS, hallflow_activities
from workflows.case import CaseWorkflow

# Construction permit accepted Tue 2099-09-29 10:00 +08:00 (test calendar = 2026's arrangement):
# working days after it are 09-30, then 10-01..10-07 off, 10-08, 10-09, Sat 10-10 (make-up),
# 10-12, 10-13, 10-14, 10-15, 10-16, 10-19, 10-20, 10-21, 10-22, 10-23, 10-26.
# Each deadline ends 24:00 Asia/Shanghai of its last working day = 16:00 UTC that day.
OPINION_DUE = {
    "development-reform": datetime(2099, 10, 12, 16, tzinfo=timezone.utc),  # 5 working days
    "natural-resources": datetime(2099, 10, 19, 16, tzinfo=timezone.utc),  # 10
    "ecology-environment": datetime(2099, 10, 26, 16, tzinfo=timezone.utc),  # 15
    "fire-rescue": datetime(2099, 10, 21, 16, tzinfo=timezone.utc),  # 12, silence is consent
    "civil-air-defense": datetime(2099, 10, 14, 16, tzinfo=timezone.utc),  # 7, silence is consent
}
COORDINATOR = "coordinator:housing-construction"
SHORTLY = timedelta(minutes=1)


async def _refusal(handle, update, arg) -> ApplicationError:
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await handle.execute_update(update, arg)
    return err.value.cause


async def _accepted_updates(handle) -> int:
    history = await handle.fetch_history()
    return sum(1 for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED)


async def _consulting(env, hall_worker_tq, catalog, **kwargs):
    """A construction-permit case accepted on the eve of National Day, now with the departments."""
    app = application(catalog["construction-permit"], **kwargs)
    handle = await start_case(env.client, app, hall_worker_tq)
    status = await wait_status(handle, lambda s: s.stage == CaseStage.CONSULTING)
    assert status.stage == CaseStage.CONSULTING
    return app, handle




def _opinion(department: str, agree: bool = True, opinion: str = "") -> DepartmentOpinion:
    return DepartmentOpinion(department=department, officer=OFFICER_OF[department], agree=agree, opinion=opinion)


def _actions(store, case_no: str) -> list[str]:
    return [e.action for e in store.audit_trail("case", case_no)]


def _audit(store, case_no: str, action: str):
    return [e for e in store.audit_trail("case", case_no) if e.action == action]


def _notices(store, case_no: str, kind: str):
    return [n for n in store.notices(case_no) if n.kind == kind]


# ---- 秒批 ----------------------------------------------------------------------------------------


async def test_automatic_matter_with_complete_materials_is_approved_by_rule_at_once(env, hall_worker, catalog, sqlite_store):
    matter = catalog["housing-fund-withdrawal"]
    app = application(matter)
    async with hall_worker(env.client) as tq:
        handle = await start_case(env.client, app, tq)
        status = await wait_status(handle, lambda s: s.stage.is_final)
        assert status.stage.is_final, status.stage  # else result() would skip to the execution timeout
        outcome = await handle.result()
        desc = await handle.describe()
        issued = await eventually(lambda: _notices(sqlite_store, app.case_no, "result_issued"))

    assert status.stage == CaseStage.APPROVED
    assert outcome.stage == CaseStage.APPROVED
    assert abs(outcome.closed_at - TEST_EPOCH) < timedelta(seconds=5)
    assert outcome.decision is not None
    assert outcome.decision.result == "approve" and outcome.decision.by == "rule:complete-materials"
    assert outcome.decision.inputs["materials"] == sorted(m.code for m in matter.materials)
    assert (outcome.working_days_used, outcome.promised_days, outcome.statutory_days) == (0, 1, 3)

    # Nobody reviewed it: straight from acceptance to the result.
    # (then the rating window, left unused here, closes)
    assert _actions(sqlite_store, app.case_no) == ["received", "accepted", "approved", "rating_window_closed"]
    approved = _audit(sqlite_store, app.case_no, "approved")[0]
    assert approved.actor == "rule:complete-materials"
    assert approved.details["decided_by"] == "rule:complete-materials"
    assert approved.details["inputs"]["materials"] == outcome.decision.inputs["materials"]
    assert approved.details["on_time"] is True
    assert [n.recipient for n in issued] == [f"applicant:{app.applicant.applicant_id}"]
    assert desc.typed_search_attributes.get(search.CASE_STAGE) == "approved"
    assert desc.typed_search_attributes.get(search.MATERIALS_PENDING) is False


# ---- 并联审批 ----------------------------------------------------------------------------------


async def test_departments_are_consulted_at_once_each_with_its_own_working_day_deadline(
    env, hall_worker, catalog, sqlite_store
):
    await travel_to(env, TUESDAY_BEFORE_NATIONAL_DAY)
    async with hall_worker(env.client) as tq:
        app, handle = await _consulting(env, tq, catalog)
        status = await handle.query(CaseWorkflow.status)
        requested = await eventually(
            lambda: len(_notices(sqlite_store, app.case_no, "opinion_requested")) == 5
            and _notices(sqlite_store, app.case_no, "opinion_requested")
        )
        for department in OPINION_DUE:
            answered = await handle.execute_update(CaseWorkflow.department_opinion, _opinion(department))
            assert {c.department: c.state for c in answered.consultations}[department] == OpinionState.AGREED
        review = await wait_status(handle, lambda s: s.stage == CaseStage.AWAITING_REVIEW)
        asked_reviewer = await eventually(lambda: _notices(sqlite_store, app.case_no, "review_requested"))

    assert {c.department: c.due_at for c in status.consultations} == OPINION_DUE
    assert all(c.state == OpinionState.PENDING for c in status.consultations)
    assert sorted(status.waiting_on) == sorted(OPINION_DUE)
    by_department = {n.recipient: n for n in requested}
    assert set(by_department) == set(OPINION_DUE)
    for department, due in OPINION_DUE.items():
        # The notice names the last working day, not the UTC date of 24:00.
        assert f"{(due - timedelta(hours=16)).date()} 24:00" in by_department[department].body
    opened = _audit(sqlite_store, app.case_no, "opinions_requested")[0]
    assert opened.actor == "housing-construction"
    assert {d: datetime.fromisoformat(v) for d, v in opened.details.items()} == OPINION_DUE

    assert review.stage == CaseStage.AWAITING_REVIEW
    assert review.reviewer == "officer-xu" and review.waiting_on == ["officer-xu"]
    assert all(c.state == OpinionState.AGREED for c in review.consultations)
    opinions = _audit(sqlite_store, app.case_no, "department_opinion")
    assert {e.details["department"]: (e.actor, e.details["agree"]) for e in opinions} == {
        d: (OFFICER_OF[d], True) for d in OPINION_DUE
    }
    review_requested = _audit(sqlite_store, app.case_no, "review_requested")[0]
    assert review_requested.details["reviewer"] == "officer-xu"
    assert review_requested.details["disagreeing_departments"] == []
    assert [n.recipient for n in asked_reviewer] == ["officer-xu"]


async def test_a_disagreeing_department_is_put_before_the_reviewer(env, hall_worker, catalog, sqlite_store):
    await travel_to(env, TUESDAY_BEFORE_NATIONAL_DAY)
    async with hall_worker(env.client) as tq:
        app, handle = await _consulting(env, tq, catalog)
        for department in OPINION_DUE:
            if department == "natural-resources":
                await handle.execute_update(
                    CaseWorkflow.department_opinion, _opinion(department, agree=False, opinion="用地范围与规划许可不符")
                )
            else:
                await handle.execute_update(CaseWorkflow.department_opinion, _opinion(department))
        status = await wait_status(handle, lambda s: s.stage == CaseStage.AWAITING_REVIEW)
        asked_reviewer = await eventually(lambda: _notices(sqlite_store, app.case_no, "review_requested"))
        # Handed to another reviewer (转办), the disagreement goes along.
        await handle.execute_update(
            CaseWorkflow.transfer, Transfer(by="officer-xu", to_reviewer="officer-ma", reason="专业对口")
        )
        handed_over = await eventually(lambda: _notices(sqlite_store, app.case_no, "review_requested")[1:])

    assert status.stage == CaseStage.AWAITING_REVIEW
    against = {c.department: c for c in status.consultations}["natural-resources"]
    assert against.state == OpinionState.DISAGREED
    assert against.officer == "nr-01" and against.opinion == "用地范围与规划许可不符"
    opinion = [e for e in _audit(sqlite_store, app.case_no, "department_opinion") if not e.details["agree"]]
    assert len(opinion) == 1 and opinion[0].reason == "用地范围与规划许可不符"
    review_requested = _audit(sqlite_store, app.case_no, "review_requested")[0]
    assert review_requested.details["disagreeing_departments"] == ["natural-resources"]
    assert asked_reviewer[0].recipient == "officer-xu" and "natural-resources" in asked_reviewer[0].body
    assert handed_over[0].recipient == "officer-ma" and "natural-resources" in handed_over[0].body


async def test_silence_past_the_deadline_counts_as_consent_where_the_matter_says_so(
    env, hall_worker, catalog, sqlite_store
):
    await travel_to(env, TUESDAY_BEFORE_NATIONAL_DAY)
    silent = "civil-air-defense"
    due = OPINION_DUE[silent]
    async with hall_worker(env.client) as tq:
        app, handle = await _consulting(env, tq, catalog)
        for department in OPINION_DUE:
            if department != silent:
                await handle.execute_update(CaseWorkflow.department_opinion, _opinion(department))
        await travel_to(env, due - SHORTLY)
        before = await handle.query(CaseWorkflow.status)
        overdue_before = _notices(sqlite_store, app.case_no, "opinion_overdue")
        await travel_to(env, due + SHORTLY)
        after = await wait_status(handle, lambda s: s.stage == CaseStage.AWAITING_REVIEW)
        overdue = await eventually(lambda: _notices(sqlite_store, app.case_no, "opinion_overdue"))
        await eventually(lambda: _notices(sqlite_store, app.case_no, "review_requested"))

    assert before.stage == CaseStage.CONSULTING and before.waiting_on == [silent]
    assert overdue_before == []
    assert after.stage == CaseStage.AWAITING_REVIEW
    assert {c.department: c.state for c in after.consultations}[silent] == OpinionState.DEEMED_CONSENT
    assert len(overdue) == 1 and overdue[0].recipient == COORDINATOR and silent in overdue[0].body
    assert abs(overdue[0].at - due) < timedelta(seconds=1)
    actions = _actions(sqlite_store, app.case_no)
    assert actions.index("opinion_overdue") < actions.index("opinion_deemed_consent") < actions.index("review_requested")
    for action in ("opinion_overdue", "opinion_deemed_consent"):
        (entry,) = _audit(sqlite_store, app.case_no, action)
        assert entry.actor == "hallflow" and entry.details["department"] == silent
    assert _audit(sqlite_store, app.case_no, "review_requested")[0].details["disagreeing_departments"] == []


async def test_overdue_opinion_without_silent_consent_is_escalated_once_at_24_00_and_keeps_the_case_open(
    env, hall_worker, catalog, sqlite_store
):
    await travel_to(env, TUESDAY_BEFORE_NATIONAL_DAY)
    late = "development-reform"
    due = OPINION_DUE[late]  # Mon 10-12 24:00 +08:00
    async with hall_worker(env.client) as tq:
        app, handle = await _consulting(env, tq, catalog)
        await travel_to(env, due - SHORTLY)  # 23:59 on the last working day
        before = await handle.query(CaseWorkflow.status)
        overdue_before = _notices(sqlite_store, app.case_no, "opinion_overdue")
        await travel_to(env, due + SHORTLY)
        after = await wait_status(handle, lambda s: {c.department: c for c in s.consultations}[late].escalated)
        overdue = await eventually(lambda: _audit(sqlite_store, app.case_no, "opinion_overdue"))
        # Past every deadline: the others are dealt with, development-reform is not chased again.
        await travel_to(env, OPINION_DUE["ecology-environment"] + SHORTLY)
        final = await wait_status(
            handle, lambda s: all(c.escalated for c in s.consultations if c.state == OpinionState.PENDING)
        )
        await eventually(lambda: len(_audit(sqlite_store, app.case_no, "opinion_overdue")) == 5)

    assert before.stage == CaseStage.CONSULTING
    assert not any(c.escalated for c in before.consultations) and overdue_before == []

    late_now = {c.department: c for c in after.consultations}[late]
    assert late_now.state == OpinionState.PENDING and late_now.escalated
    assert after.stage == CaseStage.CONSULTING and late in after.waiting_on
    assert [e.details["department"] for e in overdue] == [late]
    notice = _notices(sqlite_store, app.case_no, "opinion_overdue")[0]
    assert notice.recipient == COORDINATOR and late in notice.body
    assert abs(notice.at - due) < timedelta(seconds=1)

    states = {c.department: c.state for c in final.consultations}
    assert states == {
        "development-reform": OpinionState.PENDING,
        "natural-resources": OpinionState.PENDING,
        "ecology-environment": OpinionState.PENDING,
        "fire-rescue": OpinionState.DEEMED_CONSENT,
        "civil-air-defense": OpinionState.DEEMED_CONSENT,
    }
    assert final.stage == CaseStage.CONSULTING
    assert sorted(final.waiting_on) == ["development-reform", "ecology-environment", "natural-resources"]
    escalations = [e.details["department"] for e in _audit(sqlite_store, app.case_no, "opinion_overdue")]
    assert sorted(escalations) == sorted(OPINION_DUE)  # once each
    assert sorted(e.details["department"] for e in _audit(sqlite_store, app.case_no, "opinion_deemed_consent")) == [
        "civil-air-defense",
        "fire-rescue",
    ]
    assert "review_requested" not in _actions(sqlite_store, app.case_no)


# ---- 综合研判 ----------------------------------------------------------------------------------


async def _awaiting_review(env, tq, catalog, **kwargs):
    """A social-insurance transfer (no departments, no panel) waiting for officer-huang."""
    app = application(catalog["social-insurance-transfer"], **kwargs)
    handle = await start_case(env.client, app, tq)
    status = await wait_status(handle, lambda s: s.stage == CaseStage.AWAITING_REVIEW)
    assert status.reviewer == "officer-huang"
    return app, handle


async def test_reject_needs_reasons_and_the_applicant_is_told_them(env, hall_worker, catalog, sqlite_store):
    reasons = "参保缴费凭证与系统记录不符"
    async with hall_worker(env.client) as tq:
        app, handle = await _awaiting_review(env, tq, catalog)
        # Sent as raw JSON, as an integrator in another language would.
        no_reasons = await _refusal(handle, "review", {"reviewer": "officer-huang", "decision": "reject"})
        refused_traces = await _accepted_updates(handle)
        await handle.execute_update(CaseWorkflow.review, Review(reviewer="officer-huang", decision="reject", opinion=reasons))
        status = await wait_status(handle, lambda s: s.stage.is_final)
        assert status.stage.is_final, status.stage  # else result() would skip to the execution timeout
        outcome = await handle.result()
        desc = await handle.describe()
        rejected = await eventually(lambda: _notices(sqlite_store, app.case_no, "case_rejected"))

    assert "opinion" in str(no_reasons)
    assert refused_traces == 0
    assert status.stage == CaseStage.REJECTED
    assert outcome.stage == CaseStage.REJECTED and outcome.reason == reasons
    assert outcome.decision is not None
    assert (outcome.decision.result, outcome.decision.by) == ("reject", "officer-huang")
    assert (outcome.promised_days, outcome.statutory_days) == (10, 30)
    (notice,) = rejected
    assert notice.recipient == f"applicant:{app.applicant.applicant_id}" and reasons in notice.body
    assert _notices(sqlite_store, app.case_no, "result_issued") == []
    (entry,) = _audit(sqlite_store, app.case_no, "rejected")
    assert entry.actor == "officer-huang" and entry.reason == reasons
    assert _actions(sqlite_store, app.case_no)[-3:] == ["reviewed", "rejected", "rating_window_closed"]
    assert desc.typed_search_attributes.get(search.CASE_STAGE) == "rejected"


async def test_only_the_assigned_reviewer_may_review(env, hall_worker, catalog, sqlite_store):
    async with hall_worker(env.client) as tq:
        app, handle = await _awaiting_review(env, tq, catalog)
        other = await _refusal(handle, CaseWorkflow.review, Review(reviewer="officer-lin", decision="approve"))
        traces = await _accepted_updates(handle)
        status = await handle.query(CaseWorkflow.status)

    assert other.type == "NotReviewer" and "officer-huang" in str(other)
    assert traces == 0
    assert status.stage == CaseStage.AWAITING_REVIEW and status.reviewer == "officer-huang"
    assert "reviewed" not in _actions(sqlite_store, app.case_no)


async def test_transfer_hands_the_review_to_another_allowed_reviewer_who_then_decides(
    env, hall_worker, catalog, sqlite_store
):
    async with hall_worker(env.client) as tq:
        app, handle = await _awaiting_review(env, tq, catalog)
        not_allowed = await _refusal(
            handle, CaseWorkflow.transfer, Transfer(by="officer-huang", to_reviewer="officer-xu", reason="出差")
        )
        moved = await handle.execute_update(
            CaseWorkflow.transfer, Transfer(by="officer-huang", to_reviewer="officer-lin", reason="回避：申请人系亲属")
        )
        handed_over = await eventually(
            lambda: _notices(sqlite_store, app.case_no, "review_requested")[1:]
        )
        former = await _refusal(handle, CaseWorkflow.review, Review(reviewer="officer-huang", decision="approve"))
        await handle.execute_update(CaseWorkflow.review, Review(reviewer="officer-lin", decision="approve", opinion="材料齐全"))
        status = await wait_status(handle, lambda s: s.stage.is_final)
        assert status.stage.is_final, status.stage  # else result() would skip to the execution timeout
        outcome = await handle.result()
        issued = await eventually(lambda: _notices(sqlite_store, app.case_no, "result_issued"))

    assert not_allowed.type == "NotReviewer" and "officer-xu" in str(not_allowed) and "allowed" in str(not_allowed)
    assert moved.reviewer == "officer-lin" and moved.waiting_on == ["officer-lin"]
    (transferred,) = _audit(sqlite_store, app.case_no, "transferred")
    assert transferred.actor == "officer-huang" and transferred.reason == "回避：申请人系亲属"
    assert transferred.details["to"] == "officer-lin"
    assert [n.recipient for n in handed_over] == ["officer-lin"]
    assert former.type == "NotReviewer"
    assert status.stage == CaseStage.APPROVED
    assert outcome.stage == CaseStage.APPROVED and outcome.decision is not None
    assert outcome.decision.by == "officer-lin"
    assert _audit(sqlite_store, app.case_no, "approved")[0].actor == "officer-lin"
    assert [n.recipient for n in issued] == [f"applicant:{app.applicant.applicant_id}"]


# ---- 催办 --------------------------------------------------------------------------------------


async def test_urge_chases_the_departments_still_owing_an_opinion_once_a_working_day(env, hall_worker, catalog, sqlite_store):
    await travel_to(env, TUESDAY_BEFORE_NATIONAL_DAY)
    answered = ("development-reform", "fire-rescue")
    async with hall_worker(env.client) as tq:
        app, handle = await _consulting(env, tq, catalog)
        for department in answered:
            await handle.execute_update(CaseWorkflow.department_opinion, _opinion(department))
        await handle.execute_update(CaseWorkflow.urge, Urge(by="clerk-01", note="申请人来电询问进度"))
        urged = await eventually(lambda: len(_notices(sqlite_store, app.case_no, "urge")) == 3)
        # Tue 23:30 Asia/Shanghai: still the same day there (15:30 UTC).
        await travel_to(env, datetime(2099, 9, 29, 15, 30, tzinfo=timezone.utc))
        too_soon = await _refusal(handle, CaseWorkflow.urge, Urge(by="clerk-01"))
        # Wed 00:30 Asia/Shanghai, a working day: allowed again (still Tuesday in UTC).
        await travel_to(env, datetime(2099, 9, 29, 16, 30, tzinfo=timezone.utc))
        await handle.execute_update(CaseWorkflow.urge, Urge(by="clerk-02"))
        twice = await eventually(lambda: len(_notices(sqlite_store, app.case_no, "urge")) == 6)
        # Thu 10-01 is a National Day holiday: it belongs to Wednesday's working day.
        await travel_to(env, datetime(2099, 10, 1, 2, tzinfo=timezone.utc))
        holiday = await _refusal(handle, CaseWorkflow.urge, Urge(by="clerk-01"))
        # Thu 10-08, the next working day.
        await travel_to(env, datetime(2099, 10, 8, 1, tzinfo=timezone.utc))
        await handle.execute_update(CaseWorkflow.urge, Urge(by="clerk-03"))
        await eventually(lambda: len(_notices(sqlite_store, app.case_no, "urge")) == 9)

    pending = sorted(set(OPINION_DUE) - set(answered))
    assert urged and twice
    first = _notices(sqlite_store, app.case_no, "urge")[:3]
    assert sorted(n.recipient for n in first) == pending
    assert all("申请人来电询问进度" in n.body for n in first)
    entries = _audit(sqlite_store, app.case_no, "urged")
    assert [e.actor for e in entries] == ["clerk-01", "clerk-02", "clerk-03"]
    assert sorted(entries[0].details["holders"]) == pending and entries[0].details["stage"] == "consulting"
    assert entries[0].reason == "申请人来电询问进度"
    assert too_soon.type == "TooSoon" and holiday.type == "TooSoon"


async def test_urge_during_review_goes_to_the_reviewer(env, hall_worker, catalog, sqlite_store):
    async with hall_worker(env.client) as tq:
        app, handle = await _awaiting_review(env, tq, catalog)
        await handle.execute_update(CaseWorkflow.urge, Urge(by="hall-supervisor"))
        urged = await eventually(lambda: _notices(sqlite_store, app.case_no, "urge"))

    assert [n.recipient for n in urged] == ["officer-huang"]
    (entry,) = _audit(sqlite_store, app.case_no, "urged")
    assert entry.actor == "hall-supervisor" and entry.details["holders"] == ["officer-huang"]


# ---- approved, deferred materials still owed ---------------------------------------------------


async def test_result_is_issued_only_once_the_last_deferred_material_arrives(env, hall_worker, catalog, sqlite_store):
    async with hall_worker(env.client) as tq:
        app, handle = await _awaiting_review(env, tq, catalog, without=("household-register",), signed=True)
        assert (await handle.query(CaseWorkflow.status)).missing_materials == ["household-register"]
        await handle.execute_update(CaseWorkflow.review, Review(reviewer="officer-huang", decision="approve"))
        pending = await wait_status(handle, lambda s: s.stage == CaseStage.APPROVED_PENDING_MATERIALS)
        await eventually(lambda: _audit(sqlite_store, app.case_no, "approved_pending_materials"))
        pending_desc = await handle.describe()
        issued_before = _notices(sqlite_store, app.case_no, "result_issued")
        supplied = await handle.execute_update(
            CaseWorkflow.supplement_materials, SupplementMaterials(materials=["household-register"], submitted_by="clerk-01")
        )
        status = await wait_status(handle, lambda s: s.stage.is_final)
        assert status.stage.is_final, status.stage  # else result() would skip to the execution timeout
        outcome = await handle.result()
        desc = await handle.describe()
        issued = await eventually(lambda: _notices(sqlite_store, app.case_no, "result_issued"))

    assert pending.stage == CaseStage.APPROVED_PENDING_MATERIALS
    assert pending.missing_materials == ["household-register"]
    assert pending.waiting_on == [f"applicant:{app.applicant.applicant_id}"]
    assert pending_desc.typed_search_attributes.get(search.CASE_STAGE) == "approved_pending_materials"
    assert pending_desc.typed_search_attributes.get(search.MATERIALS_PENDING) is True
    assert issued_before == []

    assert supplied.complete and supplied.still_missing == []
    assert status.stage == CaseStage.APPROVED and outcome.stage == CaseStage.APPROVED
    assert outcome.decision is not None and outcome.decision.by == "officer-huang"
    assert outcome.missing_materials == []
    assert [n.recipient for n in issued] == [f"applicant:{app.applicant.applicant_id}"]
    actions = _actions(sqlite_store, app.case_no)
    assert actions.index("approved_pending_materials") < actions.index("materials_supplemented")
    assert actions.index("materials_supplemented") < actions.index("materials_complete") < actions.index("approved")
    assert desc.typed_search_attributes.get(search.CASE_STAGE) == "approved"
    assert desc.typed_search_attributes.get(search.MATERIALS_PENDING) is False


# ---- refused input -----------------------------------------------------------------------------


async def test_refused_opinions_leave_no_trace_in_history(env, hall_worker, catalog, sqlite_store):
    await travel_to(env, TUESDAY_BEFORE_NATIONAL_DAY)
    async with hall_worker(env.client) as tq:
        app, handle = await _consulting(env, tq, catalog)
        not_asked = await _refusal(handle, CaseWorkflow.department_opinion, _opinion("taxation"))
        no_reasons = await _refusal(
            handle, "department_opinion", {"department": "fire-rescue", "officer": "fire-01", "agree": False}
        )
        assert await _accepted_updates(handle) == 0
        await handle.execute_update(CaseWorkflow.department_opinion, _opinion("fire-rescue"))
        again = await _refusal(handle, CaseWorkflow.department_opinion, _opinion("fire-rescue", agree=False, opinion="改主意"))
        accepted = await _accepted_updates(handle)
        status = await handle.query(CaseWorkflow.status)
        trail = await eventually(lambda: _audit(sqlite_store, app.case_no, "department_opinion"))

    assert not_asked.type == "NotConsulted" and "taxation" in str(not_asked) and "fire-rescue" in str(not_asked)
    assert "opinion" in str(no_reasons)
    assert again.type == "AlreadyAnswered"
    assert accepted == 1
    assert {c.department: c.state for c in status.consultations}["fire-rescue"] == OpinionState.AGREED
    assert [(e.details["department"], e.details["agree"]) for e in trail] == [("fire-rescue", True)]


async def test_review_before_the_departments_have_answered_is_refused(env, hall_worker, catalog):
    await travel_to(env, TUESDAY_BEFORE_NATIONAL_DAY)
    async with hall_worker(env.client) as tq:
        _, handle = await _consulting(env, tq, catalog)
        early = await _refusal(handle, CaseWorkflow.review, Review(reviewer="officer-xu", decision="approve"))
        accepted = await _accepted_updates(handle)

    assert early.type == "WrongStage" and "consulting" in str(early) and "awaiting_review" in str(early)
    assert accepted == 0


# ---- races: an answer in the moment the workflow is acting on the case -------------------------


class _SlowCoordinatorChannel:
    """Delivers like the log channel, but the coordinator's gateway takes half a second: the
    opinion that arrives meanwhile must not be lost."""

    name = "slow-coordinator"

    def send(self, notice) -> None:
        if notice.kind == "opinion_overdue":
            time.sleep(0.5)


async def test_an_opinion_that_arrives_while_the_deadline_is_being_handled_is_not_overwritten(
    env, hall_worker, catalog, sqlite_store
):
    await travel_to(env, TUESDAY_BEFORE_NATIONAL_DAY)
    silent = "civil-air-defense"
    due = OPINION_DUE[silent]
    store = Store(sqlite_store.engine, _SlowCoordinatorChannel())
    async with hall_worker(env.client, store=store) as tq:
        app, handle = await _consulting(env, tq, catalog)
        for department in OPINION_DUE:
            if department != silent:
                await handle.execute_update(CaseWorkflow.department_opinion, _opinion(department))
        # The clock cannot pass 24:00 while the coordinator is being told (an activity holds it):
        # travel in the background and answer in that moment.
        travelling = asyncio.create_task(travel_to(env, due + SHORTLY))
        await wait_status(handle, lambda s: {c.department: c for c in s.consultations}[silent].escalated)
        refusal = None
        try:
            await handle.execute_update(
                CaseWorkflow.department_opinion, _opinion(silent, agree=False, opinion="人防工程面积不足")
            )
        except WorkflowUpdateFailedError as err:
            refusal = err.cause
        await travelling
        status = await wait_status(handle, lambda s: s.stage == CaseStage.AWAITING_REVIEW)
        await eventually(lambda: _audit(sqlite_store, app.case_no, "review_requested"))

    state = {c.department: c.state for c in status.consultations}[silent]
    review_requested = _audit(sqlite_store, app.case_no, "review_requested")[0]
    deemed = _audit(sqlite_store, app.case_no, "opinion_deemed_consent")
    if refusal is None:
        # The opinion was taken: it stands, and the reviewer sees the disagreement.
        assert state == OpinionState.DISAGREED
        assert review_requested.details["disagreeing_departments"] == [silent]
        assert deemed == []
    else:
        # Silence already counted as consent: the late opinion left no trace.
        # (AlreadyAnswered while the review was not yet requested; WrongStage once it was: the
        # deadline's rows and notices are written in one step, so both may be past already.)
        assert refusal.type in ("AlreadyAnswered", "WrongStage") and state == OpinionState.DEEMED_CONSENT
        assert silent not in [e.details["department"] for e in _audit(sqlite_store, app.case_no, "department_opinion")]


async def test_a_case_approved_at_review_takes_no_second_review_or_transfer(env, catalog, sqlite_store):
    await travel_to(env, TUESDAY_BEFORE_NATIONAL_DAY)
    calendar = CalendarActivities(Calendar.load(TEST_CALENDAR), TEST_CALENDAR)
    tq = f"hallflow-test-{uuid.uuid4()}"
    activities = hallflow_activities(sqlite_store, calendar, CatalogActivities(catalog))
    with ThreadPoolExecutor(max_workers=8) as executor:
        async with Worker(env.client, task_queue=tq, workflows=WORKFLOWS, interceptors=INTERCEPTORS, activities=activities, activity_executor=executor):
            app, handle = await _consulting(env, tq, catalog)
            for department in OPINION_DUE:
                await handle.execute_update(CaseWorkflow.department_opinion, _opinion(department))
            await wait_status(handle, lambda s: s.stage == CaseStage.AWAITING_REVIEW)
            # The review is decided, and the panel opening, when the second review and the transfer come.
            await handle.execute_update(CaseWorkflow.review, Review(reviewer="officer-xu", decision="approve"))
            second = await _refusal(
                handle, CaseWorkflow.review, Review(reviewer="officer-xu", decision="reject", opinion="改判")
            )
            transfer = await _refusal(
                handle, CaseWorkflow.transfer, Transfer(by="officer-xu", to_reviewer="officer-ma", reason="再看看")
            )
            status = await wait_status(handle, lambda s: s.stage == CaseStage.IN_PANEL)
            await eventually(lambda: _audit(sqlite_store, app.case_no, "vote_opened"))

    assert second.type in ("AlreadyDecided", "WrongStage")
    assert transfer.type in ("AlreadyDecided", "WrongStage")
    assert status.stage == CaseStage.IN_PANEL and status.reviewer == "officer-xu"
    reviewed = _audit(sqlite_store, app.case_no, "reviewed")
    assert [(e.actor, e.details["decision"]) for e in reviewed] == [("officer-xu", "approve")]
    assert _audit(sqlite_store, app.case_no, "transferred") == []
