"""WaitingOn and StepDueAt: every open workflow says who it waits on and by when (the inbox)."""

from contract import search
from contract.approval import Review, Vote
from contract.case import CaseStage, SupplementMaterials
from tests.builders import application, start_case, wait_status
from workflows.case import CaseWorkflow


async def _waiting(handle):
    attrs = (await handle.describe()).typed_search_attributes
    return attrs.get(search.WAITING_ON), attrs.get(search.STEP_DUE_AT)


async def test_a_case_names_who_holds_it_at_every_step(env, hall_worker, catalog):
    app = application(catalog["enterprise-opening"], without=("residence-proof",), signed=True)
    applicant = f"applicant:{app.applicant.applicant_id}"
    async with hall_worker(env.client) as tq:
        handle = await start_case(env.client, app, tq)
        accepted = await wait_status(handle, lambda s: s.stage == CaseStage.AWAITING_REVIEW)
        # The reviewer holds the case; the applicant owes a material, due first.
        assert await _waiting(handle) == (sorted(["officer-li", applicant]), accepted.deferral_due_at)
        assert accepted.waiting_on == ["officer-li", applicant]

        await handle.execute_update(
            CaseWorkflow.supplement_materials, SupplementMaterials(materials=["residence-proof"], submitted_by="clerk-01")
        )
        assert await _waiting(handle) == (["officer-li"], accepted.promised_due_at)

        await handle.execute_update(CaseWorkflow.review, Review(reviewer="officer-li", decision="approve"))
        panel = await wait_status(handle, lambda s: s.stage == CaseStage.IN_PANEL)
        assert await _waiting(handle) == (sorted(["officer-zhao", "officer-chen", "officer-sun"]), panel.vote_closes_at)
        await handle.execute_update(CaseWorkflow.vote, Vote(member="officer-zhao", choice="approve"))
        assert (await _waiting(handle))[0] == ["officer-chen", "officer-sun"]

        await handle.execute_update(CaseWorkflow.vote, Vote(member="officer-chen", choice="approve"))
        ended = await wait_status(handle, lambda s: s.rating_open_until is not None)
        # Ended and open for a rating: only the applicant's rating is awaited.
        assert ended.stage == CaseStage.APPROVED
        assert await _waiting(handle) == ([applicant], ended.rating_open_until)


async def test_departments_owing_opinions_are_waited_on(env, hall_worker, catalog):
    matter = catalog["real-estate-registration"]
    app = application(matter)
    async with hall_worker(env.client) as tq:
        handle = await start_case(env.client, app, tq)
        status = await wait_status(handle, lambda s: s.stage == CaseStage.CONSULTING)
        who, due = await _waiting(handle)
    assert who == sorted(c.department for c in matter.consult)
    assert due == min(c.due_at for c in status.consultations)


async def test_a_risk_waits_on_its_owner_until_the_plan_is_carried_out(env, hall_worker):
    from datetime import timedelta

    from contract.risk import Acknowledge, SubmitPlan
    from tests.test_risk import report
    from workflows.risk import RiskWorkflow

    async with hall_worker(env.client) as tq:
        handle = await env.client.start_workflow(
            RiskWorkflow.run, report("wait-1", 0.6, "high"), id="risk-wait-1", task_queue=tq,
            execution_timeout=timedelta(days=30),
        )
        reported = await wait_status(handle, lambda s: s.due_at is not None, query=RiskWorkflow.status)
        assert await _waiting(handle) == (sorted([reported.entry.owner, reported.entry.responsible_department]), reported.due_at)
        await handle.execute_update(RiskWorkflow.acknowledge, Acknowledge(officer="officer-li", group="g1"))
        await wait_status(handle, lambda s: s.entry.state == "awaiting_plan" and s.due_at, query=RiskWorkflow.status)
        carried_out_by = reported.entry.reported_at + timedelta(days=3)
        await handle.execute_update(RiskWorkflow.submit_plan, SubmitPlan(officer="officer-li", plan="p", due=carried_out_by))
        await wait_status(handle, lambda s: s.entry.state == "handling", query=RiskWorkflow.status)
        assert await _waiting(handle) == ([reported.entry.owner], carried_out_by)
