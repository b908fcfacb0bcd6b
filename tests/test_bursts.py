"""Bursts of the same message, as a retrying integrator or a duplicated queue sends them: every
state-changing Update and its signal twin is applied at most once per state. Each burst mixes
Updates and twins sent at once; the audit trail holds one row of the action, the rest refused."""

import asyncio
import uuid
from datetime import timedelta

import pytest
from temporalio.client import WorkflowUpdateFailedError

from contract.approval import DepartmentOpinion, Resubmit, Review, Transfer, Urge, Vote
from contract.case import CaseStage, SupplementMaterials, Withdraw
from contract.rating import ConfirmSetAside, Rate, Rectify, Verify
from contract.risk import Acknowledge, Level, Regrade, Resolve, RiskReviewRecord, SubmitPlan
from contract.suggestion import Reclassify, Respond, SuggestionStage
from tests.builders import application, eventually, start_case, wait_status
from tests.temporal_fixtures import TEST_EPOCH
from workflows.case import CaseWorkflow
from workflows.rectification import RectificationWorkflow
from workflows.risk import RiskWorkflow
from workflows.suggestion import SuggestionWorkflow

BURST = 8  # Updates, and as many twins


async def burst(handle, update: str, request) -> int:
    """Send BURST Updates and BURST twins at once; how many Updates were accepted."""

    async def one():
        try:
            await handle.execute_update(update, request)
            return True
        except WorkflowUpdateFailedError:
            return False

    twins = [handle.signal(f"{update}_signal", request) for _ in range(BURST)]
    results = await asyncio.gather(*[one() for _ in range(BURST)], *twins)
    return sum(1 for r in results[:BURST] if r)


async def case_at(env, tq, catalog, matter: str, stage: CaseStage, **gaps):
    app = application(catalog[matter], **gaps)
    handle = await start_case(env.client, app, tq)
    await wait_status(handle, lambda s: s.stage == stage)
    return app, handle


def actions(store, subject_type: str, subject_id: str, action: str) -> int:
    return sum(1 for e in store.audit_trail(subject_type, subject_id) if e.action == action)


async def once_each(store, subject_type: str, subject_id: str, expected: list[str]) -> None:
    """Every action written (a loaded machine writes late), then none a second time."""
    await eventually(lambda: all(actions(store, subject_type, subject_id, a) >= 1 for a in expected), timeout=30)
    await asyncio.sleep(0.5)  # let any second application land, if there were one
    assert {a: actions(store, subject_type, subject_id, a) for a in expected} == {a: 1 for a in expected}


async def _case_burst(env, tq, catalog, store, name):
    """(subject id, the action the burst may write once) for one case Update."""
    if name == "supplement_materials":
        app, h = await case_at(env, tq, catalog, "enterprise-opening", CaseStage.AWAITING_REVIEW,
                               without=("residence-proof",), signed=True)
        await burst(h, name, SupplementMaterials(materials=["residence-proof"], submitted_by="clerk-01"))
        return app.case_no, "materials_supplemented"
    if name == "withdraw":
        app, h = await case_at(env, tq, catalog, "enterprise-opening", CaseStage.AWAITING_REVIEW)
        await burst(h, name, Withdraw(reason="changed plans", requested_by="applicant"))
        return app.case_no, "withdrawn"
    if name == "department_opinion":
        app, h = await case_at(env, tq, catalog, "real-estate-registration", CaseStage.CONSULTING)
        await burst(h, name, DepartmentOpinion(department="taxation", officer="tax-01", agree=True))
        return app.case_no, "department_opinion"
    if name in ("review", "resubmit", "transfer", "urge"):
        app, h = await case_at(env, tq, catalog, "enterprise-opening", CaseStage.AWAITING_REVIEW)
        if name == "review":
            await burst(h, name, Review(reviewer="officer-li", decision="return", corrections=["seal"]))
            return app.case_no, "reviewed"
        if name == "transfer":
            await burst(h, name, Transfer(by="officer-li", to_reviewer="officer-wang", reason="leave"))
            return app.case_no, "transferred"
        if name == "urge":
            await burst(h, name, Urge(by="hall-central"))
            return app.case_no, "urged"
        await h.execute_update(CaseWorkflow.review, Review(reviewer="officer-li", decision="return", corrections=["seal"]))
        await wait_status(h, lambda s: s.stage == CaseStage.RETURNED)
        await burst(h, name, Resubmit(note="sealed"))
        await wait_status(h, lambda s: s.stage == CaseStage.AWAITING_REVIEW)
        return app.case_no, "resubmitted"
    if name == "vote":
        app, h = await case_at(env, tq, catalog, "enterprise-opening", CaseStage.AWAITING_REVIEW)
        await h.execute_update(CaseWorkflow.review, Review(reviewer="officer-li", decision="approve"))
        await wait_status(h, lambda s: s.stage == CaseStage.IN_PANEL)
        await burst(h, name, Vote(member="officer-zhao", choice="approve"))
        return app.case_no, "voted"
    if name == "rate":
        app, h = await case_at(env, tq, catalog, "housing-fund-withdrawal", CaseStage.APPROVED)
        await wait_status(h, lambda s: s.rating_open_until is not None)
        await burst(h, name, Rate(score=5, channel="app"))
        return app.case_no, "rated"
    raise AssertionError(name)


CASE_UPDATES = ["supplement_materials", "withdraw", "department_opinion", "review", "transfer", "resubmit", "vote",
                "urge", "rate"]


@pytest.mark.parametrize("name", CASE_UPDATES)
async def test_a_burst_at_a_case_is_applied_once(env, hall_worker, catalog, sqlite_store, name):
    async with hall_worker(env.client) as tq:
        case_no, action = await _case_burst(env, tq, catalog, sqlite_store, name)
        await once_each(sqlite_store, "case", case_no, [action])


async def test_bursts_at_a_rectification_are_applied_once(env, hall_worker, sqlite_store):
    from tests.test_rectification import order

    async with hall_worker(env.client) as tq:
        for malicious in (False, True):
            o = order(f"BURST-{uuid.uuid4().hex[:6]}")
            h = await env.client.start_workflow(RectificationWorkflow.run, o, id=f"rectification-{o.case_no}",
                                                task_queue=tq, execution_timeout=timedelta(days=60))
            await wait_status(h, lambda s: s.due_at is not None, query=RectificationWorkflow.status)
            assert await burst(h, "verify", Verify(officer="officer-li", finding="checked", malicious=malicious)) <= 1
            if malicious:
                await wait_status(h, lambda s: s.stage == "awaiting_confirmation", query=RectificationWorkflow.status)
                assert await burst(h, "confirm_set_aside", ConfirmSetAside(officer="officer-zhao", reason="spam")) <= 1
                expected = {"found_malicious": 1, "set_aside_confirmed": 1}
            else:
                await wait_status(h, lambda s: s.stage == "rectifying", query=RectificationWorkflow.status)
                assert await burst(h, "rectify", Rectify(officer="officer-li", action="trained", reply="done")) <= 1
                expected = {"verified": 1, "rectified": 1}
            await once_each(sqlite_store, "rectification", o.case_no, list(expected))


async def test_bursts_at_a_suggestion_are_applied_once(env, hall_worker, sqlite_store):
    from tests.test_suggestion import suggestion

    async with hall_worker(env.client) as tq:
        s = suggestion(f"SB-{uuid.uuid4().hex[:6]}")
        h = await env.client.start_workflow(SuggestionWorkflow.run, s, id=f"suggestion-{s.suggestion_no}",
                                            task_queue=tq, execution_timeout=timedelta(days=90))
        await wait_status(h, lambda st: st.due_at is not None, query=SuggestionWorkflow.status)
        assert await burst(h, "reclassify", Reclassify(complexity="complex", reason="study", by="coordinator-1")) <= 1
        respond = Respond(department="natural-resources", officer="officer-zhou", adopted=True)
        # A twin may be the reclassification applied, and the burst returns before it lands: every
        # answer sent meanwhile is refused Busy, as documented. An integrator sends again; so do we.
        for _ in range(20):
            assert await burst(h, "respond", respond) <= 1
            answered = await wait_status(h, lambda st: st.stage != SuggestionStage.OPEN, timeout=2,
                                         query=SuggestionWorkflow.status)
            if answered.stage != SuggestionStage.OPEN:
                break
        await once_each(sqlite_store, "suggestion", s.suggestion_no, ["reclassified", "answered"])


async def test_bursts_at_a_risk_are_applied_once(env, hall_worker, sqlite_store):
    from tests.test_risk import report

    async with hall_worker(env.client) as tq:
        r = report(f"RB-{uuid.uuid4().hex[:6]}", 0.6, "high")
        h = await env.client.start_workflow(RiskWorkflow.run, r, id=f"risk-{r.risk_no}", task_queue=tq,
                                            execution_timeout=timedelta(days=90))
        await wait_status(h, lambda s: s.due_at is not None, query=RiskWorkflow.status)
        assert await burst(h, "regrade", Regrade(level=Level.YELLOW, reason="less", by="officer-zhao")) <= 1
        assert await burst(h, "acknowledge", Acknowledge(officer="officer-li", group="g1")) <= 1
        await wait_status(h, lambda s: s.entry.state == "awaiting_plan", query=RiskWorkflow.status)
        plan = SubmitPlan(officer="officer-li", plan="spares", due=TEST_EPOCH + timedelta(days=3))
        assert await burst(h, "submit_plan", plan) <= 1
        await wait_status(h, lambda s: s.entry.state == "handling", query=RiskWorkflow.status)
        review = RiskReviewRecord(by="officer-li", cause="c", what_worked="w", what_changes="x")
        assert await burst(h, "review", review) <= 1
        assert await burst(h, "resolve", Resolve(officer="officer-li", summary="done")) <= 1
        await once_each(sqlite_store, "risk", r.risk_no, ["regraded", "acknowledged", "plan_submitted", "reviewed", "resolved"])
