"""A case that works must also say and do the right thing: what each Update answers, what an ended
case still claims, who owns every bad review, and that a refusal is final (non-retryable)."""

import asyncio
from datetime import timedelta

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from contract import search
from contract.approval import Review, Vote
from contract.case import CaseStage, Withdraw
from contract.rating import ConfirmSetAside, Rate, RectificationStage, RectificationStatus, Rectify, Verify
from tests.builders import application, eventually, start_case, wait_status
from tests.temporal_fixtures import travel_to
from workflows.case import CaseWorkflow
from workflows.rectification import RectificationWorkflow


async def refused(call) -> tuple[str, bool]:
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await call
    return err.value.cause.type, err.value.cause.non_retryable


async def test_withdraw_is_refused_once_the_case_is_decided(env, hall_worker, catalog):
    app = application(catalog["enterprise-opening"], without=("residence-proof",), signed=True)
    async with hall_worker(env.client) as tq:
        handle = await start_case(env.client, app, tq)
        await wait_status(handle, lambda s: s.stage == CaseStage.AWAITING_REVIEW)
        await handle.execute_update(CaseWorkflow.review, Review(reviewer="officer-li", decision="approve"))
        for member in ("officer-zhao", "officer-chen"):
            await handle.execute_update(CaseWorkflow.vote, Vote(member=member, choice="approve"))
        await wait_status(handle, lambda s: s.stage == CaseStage.APPROVED_PENDING_MATERIALS)
        assert await refused(handle.execute_update(CaseWorkflow.withdraw, Withdraw(reason="x", requested_by="applicant"))) == (
            "WrongStage", True)


async def test_an_ended_case_owes_no_materials_and_a_not_accepted_one_lists_what_it_lacked(env, hall_worker, catalog):
    async with hall_worker(env.client) as tq:
        deferred = application(catalog["enterprise-opening"], without=("residence-proof",), signed=True)
        handle = await start_case(env.client, deferred, tq)
        await wait_status(handle, lambda s: s.stage == CaseStage.AWAITING_REVIEW)
        await handle.execute_update(CaseWorkflow.withdraw, Withdraw(reason="moved", requested_by="applicant"))
        status = await handle.query(CaseWorkflow.status)
        attrs = (await handle.describe()).typed_search_attributes
        assert status.stage == CaseStage.WITHDRAWN and status.missing_materials == []
        assert attrs.get(search.MATERIALS_PENDING) is False

        lacking = application(catalog["enterprise-opening"], without=("articles-of-association",))
        handle = await start_case(env.client, lacking, tq)
        status = await wait_status(handle, lambda s: s.stage == CaseStage.NOT_ACCEPTED)
        assert status.missing_materials == ["articles-of-association"]


async def opened_rectification(env, case_no: str):
    """The rectification a bad review opens: the case starts it just after answering `rate`."""
    handle = env.client.get_workflow_handle(f"rectification-{case_no}", result_type=RectificationStatus)
    for _ in range(200):
        try:
            await handle.describe()
            return handle
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
        await asyncio.sleep(0.05)
    raise AssertionError(f"no rectification was opened for case {case_no}")


async def test_a_bad_review_of_a_case_with_an_unknown_matter_goes_to_its_hall(env, hall_worker, catalog, sqlite_store):
    """The hall owns it, and someone may act on it: its supervisor (data/org.toml: hall-supervisor of
    hall-central) is told when the call-back is missed, verifies and rectifies to the end."""
    app = application(catalog["enterprise-opening"]).model_copy(update={"matter_code": "no-such-matter"})
    async with hall_worker(env.client) as tq:
        handle = await start_case(env.client, app, tq)
        await wait_status(handle, lambda s: s.stage == CaseStage.NOT_ACCEPTED and s.rating_open_until is not None)
        await handle.execute_update(CaseWorkflow.rate, Rate(score=1, channel="app"))
        rectification = await opened_rectification(env, app.case_no)
        status = await wait_status(rectification, lambda s: s.due_at is not None, query=RectificationWorkflow.status)
        assert status.department == app.hall == "hall-central"

        # The call-back is missed: the hall's supervisor is told, and the inbox shows it waiting on them.
        await travel_to(env, status.due_at + timedelta(minutes=1))
        overdue = await wait_status(rectification, lambda s: s.overdue, query=RectificationWorkflow.status)
        assert overdue.overdue and overdue.stage == RectificationStage.VERIFYING
        escalations = await eventually(
            lambda: [n for n in sqlite_store.notices(app.case_no) if n.kind == "rectification_overdue"])
        assert [n.recipient for n in escalations] == ["hall-supervisor"]
        waiting = (await rectification.describe()).typed_search_attributes.get(search.WAITING_ON)
        assert set(waiting) == {"hall-central", "hall-supervisor"}

        # A department's officer has no say over a hall's review; the hall's supervisor has.
        assert await refused(rectification.execute_update(
            RectificationWorkflow.verify, Verify(officer="officer-li", finding="x"))) == ("Forbidden", True)
        verified = await rectification.execute_update(
            RectificationWorkflow.verify, Verify(officer="hall-supervisor", finding="no such matter at the window"))
        assert verified.stage == RectificationStage.RECTIFYING and verified.verified_by == "hall-supervisor"
        rectified = await rectification.execute_update(
            RectificationWorkflow.rectify,
            Rectify(officer="hall-supervisor", action="matter list at the window updated", reply="已更新窗口事项清单"))
        assert rectified.stage == RectificationStage.RECTIFIED
        final = await rectification.result()
    assert final.stage == RectificationStage.RECTIFIED and final.reply == "已更新窗口事项清单"
    actions = [e.action for e in sqlite_store.audit_trail("rectification", app.case_no)]
    assert actions[-2:] == ["verified", "rectified"] and "step_overdue" in actions
    assert [n.recipient for n in sqlite_store.notices(app.case_no) if n.kind == "rating_answered"] == [
        f"applicant:{app.applicant.applicant_id}"]


async def test_a_hall_owned_set_aside_needs_a_second_officer_of_the_hall(env, hall_worker, catalog):
    app = application(catalog["enterprise-opening"]).model_copy(update={"matter_code": "no-such-matter"})
    async with hall_worker(env.client) as tq:
        handle = await start_case(env.client, app, tq)
        await wait_status(handle, lambda s: s.stage == CaseStage.NOT_ACCEPTED and s.rating_open_until is not None)
        await handle.execute_update(CaseWorkflow.rate, Rate(score=1, channel="web"))
        rectification = await opened_rectification(env, app.case_no)
        await wait_status(rectification, lambda s: s.due_at is not None, query=RectificationWorkflow.status)
        await rectification.execute_update(
            RectificationWorkflow.verify, Verify(officer="hall-supervisor", finding="same text on 30 cases", malicious=True))
        assert await refused(rectification.execute_update(
            RectificationWorkflow.confirm_set_aside, ConfirmSetAside(officer="hall-supervisor", reason="x"))) == (
            "SameOfficer", True)
        assert await refused(rectification.execute_update(
            RectificationWorkflow.confirm_set_aside, ConfirmSetAside(officer="clerk-north-01", reason="x"))) == (
            "Forbidden", True)  # another hall's clerk
        done = await rectification.execute_update(
            RectificationWorkflow.confirm_set_aside, ConfirmSetAside(officer="clerk-02", reason="checked the posting log"))
    assert done.stage == RectificationStage.SET_ASIDE and done.confirmed_by == "clerk-02"


async def test_rating_an_open_case_is_rating_closed_and_a_second_rating_already_rated(env, hall_worker, catalog):
    async with hall_worker(env.client) as tq:
        handle = await start_case(env.client, application(catalog["enterprise-opening"]), tq)
        await wait_status(handle, lambda s: s.stage == CaseStage.AWAITING_REVIEW)
        assert await refused(handle.execute_update(CaseWorkflow.rate, Rate(score=5, channel="app"))) == ("RatingClosed", True)

        done = await start_case(env.client, application(catalog["housing-fund-withdrawal"]), tq)
        await wait_status(done, lambda s: s.rating_open_until is not None)
        first = asyncio.create_task(done.execute_update(CaseWorkflow.rate, Rate(score=5, channel="app")))
        await asyncio.sleep(0.05)
        assert await refused(done.execute_update(CaseWorkflow.rate, Rate(score=4, channel="app"))) == ("AlreadyRated", True)
        assert (await first).rating == 5


async def test_resubmit_and_the_deciding_vote_answer_after_the_change(env, hall_worker, catalog):
    async with hall_worker(env.client) as tq:
        handle = await start_case(env.client, application(catalog["enterprise-opening"]), tq)
        await wait_status(handle, lambda s: s.stage == CaseStage.AWAITING_REVIEW)
        answer = await handle.execute_update(
            CaseWorkflow.review, Review(reviewer="officer-li", decision="return", corrections=["seal"])
        )
        assert answer.stage == CaseStage.RETURNED
        answer = await handle.execute_update(CaseWorkflow.resubmit, {"note": "sealed"})
        assert answer.stage == CaseStage.AWAITING_REVIEW and answer.pauses[0].ended_at is not None
        answer = await handle.execute_update(CaseWorkflow.review, Review(reviewer="officer-li", decision="approve"))
        assert answer.stage == CaseStage.IN_PANEL
        first = await handle.execute_update(CaseWorkflow.vote, Vote(member="officer-zhao", choice="approve"))
        assert first.stage == CaseStage.IN_PANEL
        deciding = await handle.execute_update(CaseWorkflow.vote, Vote(member="officer-chen", choice="approve"))
        assert deciding.stage == CaseStage.APPROVED and deciding.decision is not None


async def test_every_refusal_is_non_retryable(env, hall_worker, catalog):
    async with hall_worker(env.client) as tq:
        handle = await start_case(env.client, application(catalog["enterprise-opening"]), tq)
        await wait_status(handle, lambda s: s.stage == CaseStage.AWAITING_REVIEW)
        # officer-wang may review this matter, but the case is assigned to officer-li.
        not_reviewer = handle.execute_update(CaseWorkflow.review, Review(reviewer="officer-wang", decision="approve"))
        assert await refused(not_reviewer) == ("NotReviewer", True)
        stranger = handle.execute_update(CaseWorkflow.review, Review(reviewer="officer-nobody", decision="approve"))
        assert await refused(stranger) == ("UnknownActor", True)  # not in the directory: refused first
        assert await refused(handle.execute_update(CaseWorkflow.vote, Vote(member="officer-zhao", choice="approve"))) == (
            "WrongStage", True)
