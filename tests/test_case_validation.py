"""Integrator input is refused before it reaches history, with a message that says how to fix it."""

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowUpdateFailedError

from contract.case import CaseStage, SupplementMaterials, Withdraw
from tests.builders import WEDNESDAY_BEFORE_NATIONAL_DAY, application, start_case, wait_status
from tests.temporal_fixtures import travel_to
from workflows.case import CaseWorkflow


async def _refusal(handle, update, arg) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await handle.execute_update(update, arg)
    return str(err.value.cause)


async def _accepted_updates(handle) -> int:
    history = await handle.fetch_history()
    return sum(1 for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED)


async def test_supplement_refuses_unknown_and_unawaited_materials(env, hall_worker, catalog):
    await travel_to(env, WEDNESDAY_BEFORE_NATIONAL_DAY)
    app = application(catalog["real-estate-registration"], without=("marital-status-proof",), signed=True)
    async with hall_worker(env.client) as tq:
        handle = await start_case(env.client, app, tq)
        await wait_status(handle, lambda s: s.stage == CaseStage.CONSULTING)
        unknown = await _refusal(
            handle, CaseWorkflow.supplement_materials, SupplementMaterials(materials=["passport"], submitted_by="clerk-01")
        )
        already = await _refusal(
            handle,
            CaseWorkflow.supplement_materials,
            SupplementMaterials(materials=["registration-application"], submitted_by="clerk-01"),
        )
        accepted = await _accepted_updates(handle)

    assert "unknown material codes ['passport']" in unknown and "valid codes" in unknown
    assert "not awaited" in already and "marital-status-proof" in already
    assert accepted == 0


async def test_supplement_is_refused_when_nothing_is_deferred(env, hall_worker, catalog):
    app = application(catalog["enterprise-opening"])
    async with hall_worker(env.client) as tq:
        handle = await start_case(env.client, app, tq)
        await wait_status(handle, lambda s: s.stage == CaseStage.AWAITING_REVIEW)
        message = await _refusal(
            handle, CaseWorkflow.supplement_materials, SupplementMaterials(materials=["residence-proof"], submitted_by="applicant")
        )
    assert "awaiting_review" in message and "missing_materials" in message


async def test_malformed_payloads_are_refused_with_the_field_named(env, hall_worker, catalog):
    app = application(catalog["enterprise-opening"])
    async with hall_worker(env.client) as tq:
        handle = await start_case(env.client, app, tq)
        # Sent by name with raw JSON, as an integrator in another language would.
        with pytest.raises(WorkflowUpdateFailedError) as empty_reason:
            await handle.execute_update("withdraw", {"reason": "  ", "requested_by": "applicant"})
        with pytest.raises(WorkflowUpdateFailedError) as missing_field:
            await handle.execute_update("withdraw", {"reason": "moving"})
        with pytest.raises(WorkflowUpdateFailedError) as extra_field:
            await handle.execute_update("withdraw", {"reason": "moving", "requested_by": "applicant", "why": "x"})
        assert await _accepted_updates(handle) == 0
        # The workflow is unharmed and still takes a good request.
        outcome = await handle.execute_update(CaseWorkflow.withdraw, Withdraw(reason="moving", requested_by="applicant"))

    assert "reason" in str(empty_reason.value.cause)
    assert "requested_by" in str(missing_field.value.cause)
    assert "why" in str(extra_field.value.cause)
    assert outcome.stage == CaseStage.WITHDRAWN
