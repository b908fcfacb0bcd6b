"""Acceptance at the single window: 行政许可法 §32 one-time notice, deferral preconditions."""

from datetime import datetime, timezone

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError

from contract.case import CaseStage, Withdraw
from tests.builders import TUESDAY_BEFORE_NATIONAL_DAY, application, eventually, start_case, wait_status
from tests.temporal_fixtures import travel_to
from workflows.case import CaseWorkflow


async def test_complete_case_is_accepted_and_waits_for_review(env, hall_worker, catalog, sqlite_store):
    await travel_to(env, TUESDAY_BEFORE_NATIONAL_DAY)
    app = application(catalog["enterprise-opening"])
    async with hall_worker(env.client) as tq:
        handle = await start_case(env.client, app, tq)
        status = await wait_status(handle, lambda s: s.stage == CaseStage.AWAITING_REVIEW)
        notices = await eventually(lambda: len(sqlite_store.notices(app.case_no)) == 2 and sqlite_store.notices(app.case_no))

    assert status.department == "market-regulation"
    # Accepted Tuesday; 1 working day ends Wednesday 24:00 Asia/Shanghai.
    assert status.promised_due_at == datetime(2099, 9, 30, 16, tzinfo=timezone.utc)
    assert status.calendar_version == "test-2099.1+test-2100.1"
    assert status.missing_materials == []
    actions = [e.action for e in sqlite_store.audit_trail("case", app.case_no)]
    assert actions == ["received", "accepted", "review_requested"]
    assert [(n.kind, n.recipient) for n in notices] == [
        ("accepted", f"applicant:{app.applicant.applicant_id}"),
        ("review_requested", "officer-li"),
    ]
    assert status.reviewer == "officer-li" and status.waiting_on == ["officer-li"]
    row = sqlite_store.case_row(app.case_no)
    assert row["stage"] == "awaiting_review"


async def test_missing_core_material_is_refused_with_one_notice_listing_everything(env, hall_worker, catalog, sqlite_store):
    matter = catalog["enterprise-opening"]
    # One core and one non-core material missing: even with a signed commitment, no deferral.
    app = application(matter, without=("articles-of-association", "residence-proof"), signed=True)
    async with hall_worker(env.client) as tq:
        outcome = await (await start_case(env.client, app, tq)).result()

    assert outcome.stage == CaseStage.NOT_ACCEPTED
    assert outcome.missing_materials == ["articles-of-association", "residence-proof"]
    names = matter.material_names(outcome.missing_materials)
    # One notice of refusal (the other invites a rating of the service).
    notices = sqlite_store.notices(app.case_no)
    assert [n.kind for n in notices] == ["not_accepted", "rating_invited"]
    assert all(name in notices[0].body for name in names)
    assert notices[0].recipient == f"applicant:{app.applicant.applicant_id}"
    assert sqlite_store.case_row(app.case_no)["stage"] == "not_accepted"


async def test_unknown_matter_is_not_accepted_and_the_workflow_completes(env, hall_worker, catalog, sqlite_store):
    app = application(catalog["enterprise-opening"]).model_copy(update={"matter_code": "no-such-matter"})
    async with hall_worker(env.client) as tq:
        outcome = await (await start_case(env.client, app, tq)).result()

    assert outcome.stage == CaseStage.NOT_ACCEPTED
    assert "no-such-matter" in outcome.reason
    assert [n.kind for n in sqlite_store.notices(app.case_no)] == ["not_accepted", "rating_invited"]


async def test_deferral_needs_a_signed_commitment(env, hall_worker, catalog):
    app = application(catalog["enterprise-opening"], without=("residence-proof",), signed=False)
    async with hall_worker(env.client) as tq:
        outcome = await (await start_case(env.client, app, tq)).result()

    assert outcome.stage == CaseStage.NOT_ACCEPTED
    assert "commitment" in outcome.reason


async def test_applicant_withdraws_before_a_decision(env, hall_worker, catalog, sqlite_store):
    app = application(catalog["enterprise-opening"])
    async with hall_worker(env.client) as tq:
        handle = await start_case(env.client, app, tq)
        outcome = await handle.execute_update(
            CaseWorkflow.withdraw, Withdraw(reason="changed plans", requested_by="applicant")
        )
        assert outcome.stage == CaseStage.WITHDRAWN
        assert (await handle.result()).stage == CaseStage.WITHDRAWN
        with pytest.raises((WorkflowUpdateFailedError, RPCError)):
            # The workflow has ended: nothing more is accepted.
            await handle.execute_update(CaseWorkflow.withdraw, Withdraw(reason="again", requested_by="applicant"))

    trail = sqlite_store.audit_trail("case", app.case_no)
    assert [e.action for e in trail[-2:]] == ["withdrawn", "rating_window_closed"]
    assert trail[-2].reason == "changed plans" and trail[-2].actor == "applicant"


async def test_personal_details_stay_out_of_search_attributes_and_audit(env, hall_worker, catalog, sqlite_store):
    app = application(catalog["enterprise-opening"])
    async with hall_worker(env.client) as tq:
        handle = await start_case(env.client, app, tq)
        await handle.execute_update(CaseWorkflow.withdraw, Withdraw(reason="test", requested_by="applicant"))
        desc = await handle.describe()

    visible = str(desc.typed_search_attributes) + str(sqlite_store.audit_trail("case", app.case_no))
    for personal in ("张三", "110101199001011234", "13800000000"):
        assert personal not in visible
    assert sqlite_store.applicant(app.applicant.applicant_id)["name"] == "张三"
