"""What other SDKs and the `temporal` CLI can send: null, raw bytes, protobuf, no encoding, the
wrong number of arguments, coerced values. Each is refused with InvalidPayload naming the schema,
as an Update (non-retryable) or as a twin (recorded in status and the audit trail); the case goes on."""

import asyncio
import json
import uuid
from datetime import timedelta

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.common import RawValue
from temporalio.service import RPCError

from contract.approval import Review
from contract.case import CaseStage
from settings import ROOT
from tests.builders import application, eventually, start_case, wait_status
from workflows.case import CaseWorkflow


def raw(encoding: bytes | None, data: bytes) -> RawValue:
    return RawValue(Payload(metadata={"encoding": encoding} if encoding else {}, data=data))


# The test client signs these for the applicant (tests/temporal_fixtures.py), and a payload
# that can be read names them too: what is wrong is the encoding or the count, not who sent it.
HOSTILE = {
    "null": [raw(b"binary/null", b"")],
    "bytes": [raw(b"binary/plain", b"\x00\x01urge")],
    "protobuf": [raw(b"json/protobuf", b'{"by": "applicant"}')],
    "no encoding": [raw(None, b'{"by": "applicant"}')],
    "no argument": [],
    "two arguments": [raw(b"json/plain", b'{"by": "applicant"}'), raw(b"json/plain", b'{"by": "applicant"}')],
    "a JSON string": [raw(b"json/plain", b'"approve"')],
}
UPDATES = ["urge", "withdraw", "review", "supplement_materials", "rate"]


@pytest.mark.parametrize("kind", HOSTILE)
async def test_hostile_updates_are_refused_as_invalid_payload_and_the_case_goes_on(env, hall_worker, catalog, kind):
    matter = catalog["social-insurance-transfer"]
    app = application(matter)
    async with hall_worker(env.client) as tq:
        handle = await start_case(env.client, app, tq)
        await wait_status(handle, lambda s: s.stage == CaseStage.AWAITING_REVIEW)
        for update in UPDATES:
            with pytest.raises(WorkflowUpdateFailedError) as refused:
                await handle.execute_update(update, args=HOSTILE[kind])
            cause = refused.value.cause
            assert cause.type == "InvalidPayload", (update, cause.message)
            assert cause.non_retryable
            assert "expected one JSON object" in cause.message and "docs/schemas/" in cause.message
            if kind != "two arguments":  # the SDK drops the type when the count is wrong: no model to name
                assert f"docs/schemas/CaseWorkflow.{update}.input.json" in cause.message
        # Nothing was applied, no task failed, and the case still moves.
        await handle.execute_update(CaseWorkflow.review, Review(reviewer=matter.reviewers[0], decision="approve"))
        status = await wait_status(handle, lambda s: s.stage.is_final)
        assert status.stage == CaseStage.APPROVED
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING


@pytest.mark.parametrize("kind", HOSTILE)
async def test_hostile_twins_are_refused_and_recorded(env, hall_worker, catalog, sqlite_store, kind):
    matter = catalog["social-insurance-transfer"]
    app = application(matter)
    async with hall_worker(env.client) as tq:
        handle = await start_case(env.client, app, tq)
        await wait_status(handle, lambda s: s.stage == CaseStage.AWAITING_REVIEW)
        for update in UPDATES:
            await handle.signal(f"{update}_signal", args=HOSTILE[kind])
        status = await wait_status(handle, lambda s: len(s.refused_signals) == len(UPDATES))
        assert {(r.signal, r.error) for r in status.refused_signals} == {(f"{u}_signal", "InvalidPayload") for u in UPDATES}
        assert all("docs/schemas/CaseWorkflow." in r.reason for r in status.refused_signals)
        audited = lambda: [e for e in sqlite_store.audit_trail("case", app.case_no) if e.action == "signal_refused"]  # noqa: E731
        await eventually(lambda: len(audited()) >= len(UPDATES))
        assert sorted(e.details["signal"] for e in audited()) == sorted(f"{u}_signal" for u in UPDATES)
        assert status.stage == CaseStage.AWAITING_REVIEW and status.warning is None
        await handle.execute_update(CaseWorkflow.review, Review(reviewer=matter.reviewers[0], decision="approve"))
        assert (await wait_status(handle, lambda s: s.stage.is_final)).stage == CaseStage.APPROVED


COERCED = [
    ("rate", {"score": True, "channel": "app"}),
    ("rate", {"score": "5", "channel": "app"}),
    ("rate", {"score": 4.0, "channel": "app"}),
    ("department_opinion", {"department": "taxation", "officer": "tax-01", "agree": 0}),
    ("department_opinion", {"department": "taxation", "officer": "tax-01", "agree": "yes"}),
    ("department_opinion", {"department": "taxation", "officer": "tax-01", "agree": "true"}),
    ("urge", {"by": 12345}),
    # Legal JSON that PostgreSQL cannot store: refused up front, never retried forever.
    ("urge", {"by": "hall-central", "note": "a\u0000b"}),
    ("review", {"reviewer": "officer-huang", "decision": "reject", "opinion": "\u0000"}),
]


@pytest.mark.parametrize(("update", "payload"), COERCED)
async def test_values_are_never_coerced(env, hall_worker, catalog, update, payload):
    matter = catalog["social-insurance-transfer"]
    async with hall_worker(env.client) as tq:
        handle = await start_case(env.client, application(matter), tq)
        await wait_status(handle, lambda s: s.stage == CaseStage.AWAITING_REVIEW)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(update, raw(b"json/plain", json.dumps(payload).encode()))
        assert refused.value.cause.type == "InvalidPayload"


# ---- workflow inputs -----------------------------------------------------------------------------

START_INPUTS = {
    "null": [raw(b"binary/null", b"")],
    "JSON null": [raw(b"json/plain", b"null")],
    "bytes": [raw(b"binary/plain", b"case")],
    "no encoding": [raw(None, b"{}")],
    "malformed": [raw(b"json/plain", b'{"case_no": "X-1"}')],
    "no argument": [],
    "two arguments": [raw(b"json/plain", b"{}"), raw(b"json/plain", b"{}")],
}


@pytest.mark.parametrize("workflow_type", ["CaseWorkflow", "RectificationWorkflow", "SuggestionWorkflow", "RiskWorkflow", "SatisfactionWatchWorkflow"])
@pytest.mark.parametrize("kind", START_INPUTS)
async def test_a_bad_start_fails_at_once_with_invalid_payload(env, hall_worker, workflow_type, kind):
    from temporalio.api.enums.v1 import EventType
    from temporalio.client import WorkflowFailureError

    async with hall_worker(env.client) as tq:
        handle = await env.client.start_workflow(
            workflow_type, args=START_INPUTS[kind], id=f"bad-{uuid.uuid4()}", task_queue=tq, execution_timeout=timedelta(minutes=5)
        )
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
        history = await handle.fetch_history()
    assert failed.value.cause.type == "InvalidPayload", failed.value.cause.message
    assert f"docs/schemas/{workflow_type}.input.json" in failed.value.cause.message
    assert not [e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]


@pytest.mark.parametrize("kind", ["null", "malformed", "two arguments"])
async def test_a_status_query_racing_a_bad_start_says_why_and_fails_no_task(env, hall_worker, kind):
    """An operator's `status` sent while (or after) a bad start fails gets the start's refusal,
    not an SDK error, and the run's history holds no failed workflow task."""
    async def status() -> str:
        try:
            await asyncio.wait_for(handle.query("status"), timeout=10)
        except WorkflowQueryFailedError as err:
            return str(err)
        except (TimeoutError, RPCError) as err:  # before the first task: no answer yet
            return f"no answer: {err!r}"
        return "answered"

    async with hall_worker(env.client) as tq:
        handle = await env.client.start_workflow(
            "CaseWorkflow", args=START_INPUTS[kind], id=f"bad-{uuid.uuid4()}", task_queue=tq,
            execution_timeout=timedelta(minutes=5),
        )
        racing = await asyncio.gather(*[status() for _ in range(5)])
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        after = await status()
        history = await handle.fetch_history()
    for answer in [*racing, after]:
        assert "SDK" not in answer, answer
        assert answer.startswith("no answer") or "docs/schemas/CaseWorkflow.input.json" in answer, answer
    assert "invalid CaseApplication" in after
    assert not [e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]


async def test_a_case_started_under_another_case_number_fails_before_anything_is_written(env, hall_worker, catalog, sqlite_store):
    from temporalio.client import WorkflowFailureError

    app = application(catalog["social-insurance-transfer"])
    async with hall_worker(env.client) as tq:
        handle = await env.client.start_workflow(
            CaseWorkflow.run, app, id="case-SOMEONE-ELSE", task_queue=tq, execution_timeout=timedelta(minutes=5)
        )
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
    assert failed.value.cause.type == "WorkflowIdMismatch"
    assert f"case-{app.case_no}" in failed.value.cause.message
    assert sqlite_store.audit_trail("case", app.case_no) == []


async def test_a_nul_in_the_applicants_name_fails_the_start_at_once(env, hall_worker, catalog, sqlite_store):
    from temporalio.client import WorkflowFailureError

    app = application(catalog["social-insurance-transfer"])
    data = app.model_dump(mode="json")
    data["applicant"]["name"] = "张\u0000三"
    async with hall_worker(env.client) as tq:
        handle = await env.client.start_workflow(
            "CaseWorkflow", raw(b"json/plain", json.dumps(data).encode()), id=f"case-{app.case_no}", task_queue=tq,
            execution_timeout=timedelta(minutes=5),
        )
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
    assert failed.value.cause.type == "InvalidPayload"
    assert "applicant.name" in failed.value.cause.message and "NUL" in failed.value.cause.message
    assert sqlite_store.audit_trail("case", app.case_no) == []


# ---- a time without an offset ----------------------------------------------------------------------


async def test_a_plan_due_without_an_offset_is_refused_and_one_with_an_offset_is_the_step_due(env, hall_worker):
    """The schema says date-time and the docs say every time carries an offset: a naive `due` is
    ambiguous between halls (and left the handling risk without StepDueAt)."""
    from datetime import datetime, timezone

    from contract.risk import Acknowledge, RiskReport, RiskState, SubmitPlan, risk_workflow_id
    from workflows.risk import RiskWorkflow

    report = RiskReport(
        risk_no=f"R-NAIVE-{uuid.uuid4().hex[:8]}", type="execution", title="queue over 2 hours", probability=0.6,
        impact="high", responsible_department="market-regulation", owner="officer-li",
    )
    plan = {"officer": "officer-li", "plan": "two more windows", "due": "2099-01-07T18:00:00"}
    async with hall_worker(env.client) as tq:
        handle = await env.client.start_workflow(
            RiskWorkflow.run, report, id=risk_workflow_id(report.risk_no), task_queue=tq, execution_timeout=timedelta(days=30)
        )
        await wait_status(handle, lambda s: s.due_at is not None, query=RiskWorkflow.status)
        await handle.execute_update(RiskWorkflow.acknowledge, Acknowledge(officer="officer-li", group="emergency-group-1"))
        await wait_status(handle, lambda s: s.entry.state == RiskState.AWAITING_PLAN and s.due_at is not None,
                          query=RiskWorkflow.status)

        # Signed for the officer the payload names: what is wrong is only the time.
        from temporalio.client import Client

        from security.keys import load_private
        from security.sender import Signer
        from settings import get_settings
        from tests.org_fixtures import data_converter

        officer = Signer(load_private(get_settings().signing_key), "officer-li")
        officer.clock = env.get_current_time
        as_officer = Client(env.client.service_client, namespace=env.client.namespace,
                            data_converter=data_converter, interceptors=[officer])
        naive = as_officer.get_workflow_handle(handle.id)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await naive.execute_update("submit_plan", raw(b"json/plain", json.dumps(plan).encode()))
        assert refused.value.cause.type == "InvalidPayload" and refused.value.cause.non_retryable
        assert "due" in refused.value.cause.message
        assert "docs/schemas/RiskWorkflow.submit_plan.input.json" in refused.value.cause.message
        await naive.signal("submit_plan_signal", raw(b"json/plain", json.dumps(plan).encode()))
        status = await wait_status(handle, lambda s: s.refused_signals, query=RiskWorkflow.status)
        assert [(r.signal, r.error) for r in status.refused_signals] == [("submit_plan_signal", "InvalidPayload")]
        assert status.entry.state == RiskState.AWAITING_PLAN

        shanghai = timezone(timedelta(hours=8))
        await handle.execute_update(RiskWorkflow.submit_plan, SubmitPlan(
            officer="officer-li", plan="two more windows", due=datetime(2099, 1, 7, 18, tzinfo=shanghai)))
        handling = await wait_status(handle, lambda s: s.entry.state == RiskState.HANDLING, query=RiskWorkflow.status)
        await asyncio.sleep(0.2)
        attributes = (await handle.describe()).typed_search_attributes
    assert handling.entry.state == RiskState.HANDLING
    from contract import search

    assert attributes.get(search.STEP_DUE_AT) == datetime(2099, 1, 7, 10, tzinfo=timezone.utc)


def test_a_rating_with_an_extra_field_is_refused():
    """Rating is the watch's signal and part of a rectification's input: like every other contract
    model, it forbids fields it does not define (and its schema says additionalProperties: false)."""
    from pydantic import ValidationError

    from contract.rating import Rating

    rating = {"case_no": "A-1", "matter_code": "enterprise-opening", "department": "market-regulation",
              "hall": "hall-central", "score": 2, "channel": "app", "at": "2099-01-05T02:00:00Z"}
    Rating.model_validate(rating)
    with pytest.raises(ValidationError, match="rater"):
        Rating.model_validate({**rating, "rater": "app-0001"})
    schema = json.loads((ROOT / "docs" / "schemas" / "SatisfactionWatchWorkflow.rating.input.json").read_text())
    assert schema["additionalProperties"] is False


# ---- a refused Update sent with the start -------------------------------------------------------


async def test_an_update_refused_with_the_start_is_in_the_history_as_an_accepted_update_that_failed(
        env, hall_worker, catalog, sqlite_store):
    """docs/integration.md, "Errors": a refused Update leaves no history, except one sent with the
    start (update-with-start). Its validator waits for the directory, so its refusal is an
    UPDATE_ACCEPTED followed by an UPDATE_COMPLETED carrying the failure; the case is unchanged. A
    payload that is not one JSON object is still refused at once, with no history."""
    from temporalio.client import WithStartWorkflowOperation
    from temporalio.common import WorkflowIDConflictPolicy

    from contract.case import SupplementMaterials, case_workflow_id

    app = application(catalog["enterprise-opening"], without=("residence-proof",), signed=True)
    async with hall_worker(env.client) as tq:
        start = WithStartWorkflowOperation(
            CaseWorkflow.run, app, id=case_workflow_id(app.case_no), task_queue=tq,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING, execution_timeout=timedelta(days=400),
        )
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await env.client.execute_update_with_start_workflow(
                CaseWorkflow.supplement_materials,
                SupplementMaterials(materials=["residence-proof"], submitted_by="officer-li"),  # not the hall's
                start_workflow_operation=start,
            )
        handle = await start.workflow_handle()
        status = await wait_status(handle, lambda s: s.stage == CaseStage.AWAITING_REVIEW)
        with pytest.raises(WorkflowUpdateFailedError) as malformed:
            await handle.execute_update("supplement_materials", raw(b"binary/null", b""))
        history = await handle.fetch_history()
    assert refused.value.cause.type == "Forbidden" and refused.value.cause.non_retryable
    assert malformed.value.cause.type == "InvalidPayload"
    assert status.missing_materials == ["residence-proof"]  # nothing applied
    updates = [e for e in history.events if e.event_type in (
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED)]
    assert [e.event_type for e in updates] == [
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED]
    outcome = updates[1].workflow_execution_update_completed_event_attributes.outcome
    assert outcome.HasField("failure") and outcome.failure.application_failure_info.type == "Forbidden"
    assert outcome.failure.application_failure_info.non_retryable
    assert "refused" in [e.action for e in sqlite_store.audit_trail("case", app.case_no)]
