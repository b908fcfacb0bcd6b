"""Update-with-start: an integrator hands in materials for a case in one call, whether or not the
hall's start has reached the server yet (`USE_EXISTING`)."""

import asyncio
import threading
import time
from datetime import timedelta

from temporalio import activity

from temporalio.client import WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy

from activities.store import Store
from contract.case import CaseStage, SupplementMaterials, case_workflow_id
from tests.builders import application, wait_status
from workflows.case import CaseWorkflow


def _with_start(app, task_queue):
    return WithStartWorkflowOperation(
        CaseWorkflow.run,
        app,
        id=case_workflow_id(app.case_no),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        execution_timeout=timedelta(days=400),
    )


async def test_materials_sent_with_the_start_count_at_acceptance(env, hall_worker, catalog, sqlite_store):
    # Without residence-proof and without a signed commitment the case could not be accepted;
    # the e-document system sends it with the start for the applicant (its key vouches for them,
    # as the directory lets a system do), so the case is accepted complete.
    app = application(catalog["enterprise-opening"], without=("residence-proof",))
    async with hall_worker(env.client) as tq:
        start = _with_start(app, tq)
        result = await env.client.execute_update_with_start_workflow(
            CaseWorkflow.supplement_materials,
            SupplementMaterials(materials=["residence-proof", "passport"], submitted_by="applicant"),
            start_workflow_operation=start,
        )
        handle = await start.workflow_handle()
        status = await wait_status(handle, lambda s: s.stage == CaseStage.AWAITING_REVIEW)

    assert result.complete and result.still_missing == [] and result.not_used == ["passport"]
    assert status.missing_materials == []
    trail = [(e.action, e.actor, e.details) for e in sqlite_store.audit_trail("case", app.case_no)][:3]
    assert trail[0][0] == "received" and "residence-proof" not in trail[0][2]["materials"]
    assert trail[1] == (
        "materials_supplemented", "applicant", {"materials": ["passport", "residence-proof"], "before_acceptance": True}
    )
    assert trail[2][0] == "accepted"


async def test_on_a_running_case_it_is_a_plain_supplement(env, hall_worker, catalog, sqlite_store):
    app = application(catalog["enterprise-opening"], without=("residence-proof",), signed=True)
    async with hall_worker(env.client) as tq:
        hall_start = await env.client.start_workflow(
            CaseWorkflow.run, app, id=case_workflow_id(app.case_no), task_queue=tq, execution_timeout=timedelta(days=400)
        )
        await wait_status(hall_start, lambda s: s.stage == CaseStage.AWAITING_REVIEW)
        result = await env.client.execute_update_with_start_workflow(
            CaseWorkflow.supplement_materials,
            SupplementMaterials(materials=["residence-proof"], submitted_by="applicant"),
            start_workflow_operation=_with_start(app, tq),
        )
        status = await hall_start.query(CaseWorkflow.status)
        trail = [e.action for e in sqlite_store.audit_trail("case", app.case_no)]

    assert result.complete and result.not_used == []
    assert trail[:3] == ["received", "accepted_with_deferral", "review_requested"]  # it really was running
    assert "materials_complete" in trail
    assert status.missing_materials == [] and status.stage == CaseStage.AWAITING_REVIEW


class SlowRecordStore(Store):
    """The real store, with the credit-record lookup taking a while (a slow database)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.checking = threading.Event()

    @activity.defn(name="has_broken_commitment")
    def has_broken_commitment(self, applicant_id: str) -> bool:
        self.checking.set()  # a local activity: not among describe()'s pending activities
        time.sleep(1.5)
        return super().has_broken_commitment(applicant_id)


async def test_materials_arriving_during_the_acceptance_check_count(env, hall_worker, catalog, sqlite_store):
    store = SlowRecordStore(sqlite_store.engine)
    app = application(catalog["enterprise-opening"], without=("residence-proof",), signed=True)
    async with hall_worker(env.client, store=store) as tq:
        handle = await env.client.start_workflow(
            CaseWorkflow.run, app, id=case_workflow_id(app.case_no), task_queue=tq, execution_timeout=timedelta(days=400)
        )

        while not store.checking.is_set():
            await asyncio.sleep(0.05)
        result = await handle.execute_update(
            CaseWorkflow.supplement_materials, SupplementMaterials(materials=["residence-proof"], submitted_by="applicant")
        )
        status = await wait_status(handle, lambda s: s.stage == CaseStage.AWAITING_REVIEW)

    assert result.complete and result.still_missing == []
    assert status.missing_materials == []
    actions = [e.action for e in store.audit_trail("case", app.case_no)]
    # The check is a local activity inside the acceptance's workflow task, so the Update is
    # usually taken once acceptance is recorded (with the deferral, then completing it); if it
    # lands before the check, the case is accepted complete. Either way the materials count once.
    assert actions[:3] == ["received", "materials_supplemented", "accepted"] or (
        actions[:2] == ["received", "accepted_with_deferral"]
        and actions.count("materials_supplemented") == 1 and "materials_complete" in actions
    ), actions


async def test_materials_sent_right_after_the_start_are_never_lost(env, hall_worker, catalog):
    """Whenever they land (before, during or after the acceptance check), they count once."""
    async def one(tq):
        app = application(catalog["enterprise-opening"], without=("residence-proof",), signed=True)
        handle = await env.client.start_workflow(
            CaseWorkflow.run, app, id=case_workflow_id(app.case_no), task_queue=tq, execution_timeout=timedelta(days=400)
        )
        result = await handle.execute_update(
            CaseWorkflow.supplement_materials, SupplementMaterials(materials=["residence-proof"], submitted_by="applicant")
        )
        status = await wait_status(handle, lambda s: s.stage == CaseStage.AWAITING_REVIEW)
        return result, status

    async with hall_worker(env.client) as tq:
        answers = await asyncio.gather(*(one(tq) for _ in range(8)))

    for result, status in answers:
        assert result.complete and result.still_missing == []
        assert status.missing_materials == []
