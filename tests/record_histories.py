"""Record the histories tests/test_replay.py replays: `.venv/bin/python -m tests.record_histories`.

Each scenario runs one case on a fresh time-skipping server with the real activities (a SQLite
file in a temporary folder, the test calendar, the catalog) and writes its history to
tests/histories/<scenario>.json. When to record: tests/histories/README.md.
`python -m tests.record_histories automatic_approval` records just the scenarios named; `--all`
records every scenario again; without either, those that have no file yet.
"""

import asyncio
import sys

import tests.org_fixtures  # noqa: F401,I001 - the session's keys, named in the settings before anything reads them
import tempfile
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.calendar import Calendar, CalendarActivities
from activities.catalog import CatalogActivities, load_catalog
from activities.db import create_tables, make_engine
from activities.store import Store
from activities.watch import WatchDelivery
from contract import search
from contract.approval import DepartmentOpinion, Resubmit, Review, Vote
from contract.rating import Rate, Rectify, Verify
from contract.suggestion import Reclassify, Respond
from contract.case import Applicant, CaseApplication, CaseStage, SupplementMaterials, Withdraw
from tests.org_fixtures import data_converter
from contract.matter import Matter
from settings import ROOT
from tests.builders import WEDNESDAY_BEFORE_NATIONAL_DAY, application, start_case
from activities.lent import Lent, lend, take_back
from security.keys import load_private
from settings import get_settings
from tests.temporal_fixtures import BIN, TEST_CALENDAR, TEST_EPOCH, signer, travel_to
from worker import INTERCEPTORS, WORKFLOWS, hallflow_activities
from workflows.case import CaseWorkflow
from workflows.rectification import RectificationWorkflow
from workflows.risk import RiskWorkflow
from workflows.suggestion import SuggestionWorkflow

HISTORIES = Path(__file__).parent / "histories"
# Fixed names keep the machine's pid@hostname out of the files and re-recordings comparable.
IDENTITY = "hallflow-history-recorder"

Catalog = dict[str, Matter]
Scenario = Callable[[Client, str, Catalog], Awaitable[WorkflowHandle]]


def _case(scenario: str, matter: Matter, **gaps) -> CaseApplication:
    """A case named after its scenario; the applicant is an id only, no personal details in the files."""
    app = application(matter, applicant_id=f"applicant-{scenario.replace('_', '-')}", **gaps)
    return app.model_copy(
        update={"case_no": f"replay-{scenario.replace('_', '-')}", "applicant": Applicant(applicant_id=app.applicant.applicant_id)}
    )


async def _wait_stage(handle: WorkflowHandle, stage: CaseStage) -> None:
    while (await handle.query(CaseWorkflow.status)).stage != stage:
        await asyncio.sleep(0.02)


async def accepted_then_withdrawn(client: Client, task_queue: str, catalog: Catalog) -> WorkflowHandle:
    handle = await start_case(client, _case("accepted_then_withdrawn", catalog["enterprise-opening"]), task_queue)
    await _wait_stage(handle, CaseStage.AWAITING_REVIEW)
    await handle.execute_update(CaseWorkflow.withdraw, Withdraw(reason="changed plans", requested_by="applicant"))
    return handle


async def not_accepted(client: Client, task_queue: str, catalog: Catalog) -> WorkflowHandle:
    app = _case(
        "not_accepted", catalog["enterprise-opening"], without=("articles-of-association", "residence-proof"), signed=True
    )
    return await start_case(client, app, task_queue)


async def deferral_supplemented(client: Client, task_queue: str, catalog: Catalog) -> WorkflowHandle:
    app = _case(
        "deferral_supplemented",
        catalog["real-estate-registration"],
        without=("cadastral-survey-report", "marital-status-proof"),
        signed=True,
    )
    handle = await start_case(client, app, task_queue)
    await _wait_stage(handle, CaseStage.CONSULTING)
    for material in ("marital-status-proof", "cadastral-survey-report"):
        await handle.execute_update(
            CaseWorkflow.supplement_materials, SupplementMaterials(materials=[material], submitted_by="clerk-02")
        )
    await handle.execute_update(CaseWorkflow.withdraw, Withdraw(reason="sold elsewhere", requested_by="applicant"))
    return handle


async def deferral_missed_terminated(client: Client, task_queue: str, catalog: Catalog) -> WorkflowHandle:
    app = _case(
        "deferral_missed_terminated",
        catalog["real-estate-registration"],
        without=("cadastral-survey-report", "marital-status-proof"),
        signed=True,
    )
    handle = await start_case(client, app, task_queue)
    await _wait_stage(handle, CaseStage.CONSULTING)
    await handle.execute_update(
        CaseWorkflow.supplement_materials, SupplementMaterials(materials=["marital-status-proof"], submitted_by="clerk-02")
    )
    # Awaiting the result skips time: opinions overdue, the deferral reminder, then the missed deadline.
    return handle


# ---- the approval route ----------------------------------------------------------------------


async def panel_approved_after_deferral(client: Client, task_queue: str, catalog: Catalog) -> WorkflowHandle:
    app = _case("panel_approved_after_deferral", catalog["enterprise-opening"], without=("residence-proof",), signed=True)
    handle = await start_case(client, app, task_queue)
    await _wait_stage(handle, CaseStage.AWAITING_REVIEW)
    await handle.execute_update(CaseWorkflow.review, Review(reviewer="officer-li", decision="approve", opinion="lawful"))
    await _wait_stage(handle, CaseStage.IN_PANEL)
    for member in ("officer-zhao", "officer-chen"):
        await handle.execute_update(CaseWorkflow.vote, Vote(member=member, choice="approve"))
    await _wait_stage(handle, CaseStage.APPROVED_PENDING_MATERIALS)
    await handle.execute_update(
        CaseWorkflow.supplement_materials, SupplementMaterials(materials=["residence-proof"], submitted_by="clerk-02")
    )
    return handle


async def consulted_returned_rejected(client: Client, task_queue: str, catalog: Catalog) -> WorkflowHandle:
    handle = await start_case(client, _case("consulted_returned_rejected", catalog["real-estate-registration"]), task_queue)
    await _wait_stage(handle, CaseStage.CONSULTING)
    await handle.execute_update(
        CaseWorkflow.department_opinion,
        DepartmentOpinion(department="taxation", officer="tax-01", agree=False, opinion="tax base understated"),
    )
    await _wait_stage(handle, CaseStage.AWAITING_REVIEW)
    await handle.execute_update(
        CaseWorkflow.review,
        Review(reviewer="officer-zhou", decision="return", opinion="tax", corrections=["corrected tax payment proof"]),
    )
    await _wait_stage(handle, CaseStage.RETURNED)
    await handle.execute_update(CaseWorkflow.resubmit, Resubmit(materials=["tax-payment-proof"], note="corrected"))
    await _wait_stage(handle, CaseStage.AWAITING_REVIEW)
    await handle.execute_update(
        CaseWorkflow.review, Review(reviewer="officer-zhou", decision="reject", opinion="transaction not lawful")
    )
    return handle


async def automatic_approval(client: Client, task_queue: str, catalog: Catalog) -> WorkflowHandle:
    return await start_case(client, _case("automatic_approval", catalog["housing-fund-withdrawal"]), task_queue)


# ---- 好差评: the rating window, rectification, the satisfaction watch ---------------------------


async def automatic_rated_bad(client: Client, task_queue: str, catalog: Catalog) -> WorkflowHandle:
    handle = await start_case(client, _case("automatic_rated_bad", catalog["housing-fund-withdrawal"]), task_queue)
    while (await handle.query(CaseWorkflow.status)).rating_open_until is None:
        await asyncio.sleep(0.02)
    await handle.execute_update(CaseWorkflow.rate, Rate(score=1, comment="system was down", channel="app"))
    return handle


# ---- the feedback loops' own workflows --------------------------------------------------------


async def rectification_verified_rectified(client: Client, task_queue: str, catalog: Catalog) -> WorkflowHandle:
    from tests.test_rectification import order

    handle = await client.start_workflow(
        RectificationWorkflow.run, order("replay-rect-1"), id="rectification-replay-rect-1", task_queue=task_queue
    )
    while (await handle.query(RectificationWorkflow.status)).due_at is None:
        await asyncio.sleep(0.02)
    await handle.execute_update(RectificationWorkflow.verify, Verify(officer="officer-li", finding="valid"))
    await handle.execute_update(
        RectificationWorkflow.rectify, Rectify(officer="officer-li", action="trained staff", reply="已整改")
    )
    return handle


async def suggestion_reclassified_answered(client: Client, task_queue: str, catalog: Catalog) -> WorkflowHandle:
    from tests.test_suggestion import suggestion

    handle = await client.start_workflow(
        SuggestionWorkflow.run, suggestion("replay-sug-1"), id="suggestion-replay-sug-1", task_queue=task_queue
    )
    while (await handle.query(SuggestionWorkflow.status)).due_at is None:
        await asyncio.sleep(0.02)
    await handle.execute_update(
        SuggestionWorkflow.reclassify, Reclassify(complexity="complex", reason="staffing study", by="coordinator-1")
    )
    await handle.execute_update(
        SuggestionWorkflow.respond,
        Respond(department="natural-resources", officer="officer-zhou", adopted=False, reason="covered by appointments"),
    )
    return handle


async def automatic_rated_good_watched(client: Client, task_queue: str, catalog: Catalog) -> WorkflowHandle:
    """The rating also goes to the department's satisfaction watch."""
    handle = await start_case(client, _case("automatic_rated_good_watched", catalog["housing-fund-withdrawal"]), task_queue)
    while (await handle.query(CaseWorkflow.status)).rating_open_until is None:
        await asyncio.sleep(0.02)
    await handle.execute_update(CaseWorkflow.rate, Rate(score=5, channel="app"))
    return handle


async def risk_handled_and_resolved(client: Client, task_queue: str, catalog: Catalog) -> WorkflowHandle:
    from datetime import timedelta

    from contract.risk import Acknowledge, Resolve, RiskReviewRecord, SubmitPlan
    from tests.test_risk import report

    handle = await client.start_workflow(
        RiskWorkflow.run, report("replay-risk-1", 0.6, "high"), id="risk-replay-risk-1", task_queue=task_queue
    )
    while (await handle.query(RiskWorkflow.status)).due_at is None:
        await asyncio.sleep(0.02)
    await handle.execute_update(RiskWorkflow.acknowledge, Acknowledge(officer="officer-li", group="g1"))
    while (await handle.query(RiskWorkflow.status)).due_at is None or (await handle.query(RiskWorkflow.status)).entry.state != "awaiting_plan":
        await asyncio.sleep(0.02)
    await handle.execute_update(
        RiskWorkflow.submit_plan, SubmitPlan(officer="officer-li", plan="spares", due=TEST_EPOCH + timedelta(days=2))
    )
    while (await handle.query(RiskWorkflow.status)).entry.state != "handling":
        await asyncio.sleep(0.02)
    await handle.execute_update(
        RiskWorkflow.review, RiskReviewRecord(by="officer-li", cause="c", what_worked="w", what_changes="x")
    )
    await handle.execute_update(RiskWorkflow.resolve, Resolve(officer="officer-li", summary="done"))
    return handle


async def satisfaction_over_line_and_back(client: Client, task_queue: str, catalog: Catalog) -> WorkflowHandle:
    """SatisfactionWatchWorkflow: 2 bad of 21 ratings (over 5%) start a red risk; 19 good ones bring the
    rate back below the line. The watch never ends: its history is taken once it has said so."""
    from contract.rating import Rating
    from workflows.satisfaction import SatisfactionWatchWorkflow

    delivery = WatchDelivery(client, task_queue)
    for n, score in enumerate([1, 1] + [5] * 38, start=1):
        rating = Rating(
            case_no=f"W-{n}", matter_code="x", department="watched", hall="h", score=score, channel="app", at=TEST_EPOCH
        )
        await delivery.send_rating_to_watch(rating)
    handle = client.get_workflow_handle("satisfaction-watched")
    while not (s := await handle.query(SatisfactionWatchWorkflow.status)).ratings == 40 or s.over_line:
        await asyncio.sleep(0.02)
    while (await handle.describe()).raw_description.pending_activities:  # the last audit row written
        await asyncio.sleep(0.02)
    return handle


# ---- signal twins, update-with-start, WaitingOn ----------------------------------------------


async def _until(handle: WorkflowHandle, query, check) -> None:
    while not check(await handle.query(query)):
        await asyncio.sleep(0.02)


async def panel_by_twins_supplied_with_start(client: Client, task_queue: str, catalog: Catalog) -> WorkflowHandle:
    """Materials with the start, review and votes as signal twins (one refused), rated by Update."""
    from datetime import timedelta

    from temporalio.client import WithStartWorkflowOperation
    from temporalio.common import WorkflowIDConflictPolicy

    app = _case("panel_by_twins_supplied_with_start", catalog["enterprise-opening"], without=("residence-proof",))
    start = WithStartWorkflowOperation(
        CaseWorkflow.run, app, id=f"case-{app.case_no}", task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING, execution_timeout=timedelta(days=400),
    )
    await client.execute_update_with_start_workflow(
        CaseWorkflow.supplement_materials,
        SupplementMaterials(materials=["residence-proof"], submitted_by="applicant"),
        start_workflow_operation=start,
    )
    handle = await start.workflow_handle()
    await _wait_stage(handle, CaseStage.AWAITING_REVIEW)
    await handle.signal("review_signal", Review(reviewer="officer-li", decision="approve"))
    await _wait_stage(handle, CaseStage.IN_PANEL)
    await handle.signal("vote_signal", Vote(member="officer-li", choice="approve"))  # recused: refused
    await handle.signal("vote_signal", Vote(member="officer-zhao", choice="approve"))
    await _until(handle, CaseWorkflow.status, lambda s: len(s.votes) == 1 and s.refused_signals)
    await handle.execute_update(CaseWorkflow.vote, Vote(member="officer-chen", choice="approve"))
    await _until(handle, CaseWorkflow.status, lambda s: s.rating_open_until is not None)
    await handle.execute_update(CaseWorkflow.rate, Rate(score=4, channel="window"))
    return handle


async def rectification_by_twins(client: Client, task_queue: str, catalog: Catalog) -> WorkflowHandle:
    from tests.test_rectification import order

    handle = await client.start_workflow(
        RectificationWorkflow.run, order("replay-rect-2"), id="rectification-replay-rect-2", task_queue=task_queue
    )
    await _until(handle, RectificationWorkflow.status, lambda s: s.due_at is not None)
    await handle.signal("verify_signal", Verify(officer="officer-li", finding="valid"))
    await _until(handle, RectificationWorkflow.status, lambda s: s.stage == "rectifying")
    await handle.signal("rectify_signal", {"officer": "officer-li"})  # no action, no reply: refused
    await handle.signal("rectify_signal", Rectify(officer="officer-li", action="trained staff", reply="已整改"))
    return handle


async def suggestion_answered_by_twin(client: Client, task_queue: str, catalog: Catalog) -> WorkflowHandle:
    from tests.test_suggestion import suggestion

    handle = await client.start_workflow(
        SuggestionWorkflow.run, suggestion("replay-sug-2"), id="suggestion-replay-sug-2", task_queue=task_queue
    )
    await _until(handle, SuggestionWorkflow.status, lambda s: s.due_at is not None)
    await handle.signal(
        "respond_signal",
        Respond(department="natural-resources", officer="officer-zhou", adopted=True, measures="more seats"),
    )
    return handle


async def risk_by_twins(client: Client, task_queue: str, catalog: Catalog) -> WorkflowHandle:
    from datetime import timedelta

    from contract.risk import Acknowledge, Resolve, RiskReviewRecord, SubmitPlan
    from tests.test_risk import report

    handle = await client.start_workflow(
        RiskWorkflow.run, report("replay-risk-2", 0.6, "high"), id="risk-replay-risk-2", task_queue=task_queue
    )
    await _until(handle, RiskWorkflow.status, lambda s: s.due_at is not None)
    await handle.signal("acknowledge_signal", Acknowledge(officer="officer-li", group="g1"))
    await _until(handle, RiskWorkflow.status, lambda s: s.entry.state == "awaiting_plan" and s.due_at is not None)
    await handle.signal(
        "submit_plan_signal", SubmitPlan(officer="officer-li", plan="spares", due=TEST_EPOCH + timedelta(days=2))
    )
    await _until(handle, RiskWorkflow.status, lambda s: s.entry.state == "handling")
    await handle.signal("review_signal", RiskReviewRecord(by="officer-li", cause="c", what_worked="w", what_changes="x"))
    await handle.signal("resolve_signal", Resolve(officer="officer-li", summary="done"))
    return handle


# name -> (when the case starts, how it runs); the file is tests/histories/<name>.json.
SCENARIOS: dict[str, tuple[datetime, Scenario]] = {
    "accepted_then_withdrawn": (TEST_EPOCH, accepted_then_withdrawn),
    "not_accepted": (TEST_EPOCH, not_accepted),
    "deferral_supplemented": (WEDNESDAY_BEFORE_NATIONAL_DAY, deferral_supplemented),
    "deferral_missed_terminated": (WEDNESDAY_BEFORE_NATIONAL_DAY, deferral_missed_terminated),
    "panel_approved_after_deferral": (TEST_EPOCH, panel_approved_after_deferral),
    "consulted_returned_rejected": (TEST_EPOCH, consulted_returned_rejected),
    "automatic_approval": (TEST_EPOCH, automatic_approval),
    "automatic_rated_bad": (TEST_EPOCH, automatic_rated_bad),
    "rectification_verified_rectified": (TEST_EPOCH, rectification_verified_rectified),
    "suggestion_reclassified_answered": (WEDNESDAY_BEFORE_NATIONAL_DAY, suggestion_reclassified_answered),
    "automatic_rated_good_watched": (TEST_EPOCH, automatic_rated_good_watched),
    "risk_handled_and_resolved": (TEST_EPOCH, risk_handled_and_resolved),
    "panel_by_twins_supplied_with_start": (TEST_EPOCH, panel_by_twins_supplied_with_start),
    "rectification_by_twins": (TEST_EPOCH, rectification_by_twins),
    "suggestion_answered_by_twin": (WEDNESDAY_BEFORE_NATIONAL_DAY, suggestion_answered_by_twin),
    "risk_by_twins": (TEST_EPOCH, risk_by_twins),
    "satisfaction_over_line_and_back": (TEST_EPOCH, satisfaction_over_line_and_back),
}
# Workflows that never end (the satisfaction watch): recorded as they stand when the scenario returns.
OPEN_AT_END = {"satisfaction_over_line_and_back"}


async def record(name: str, catalog: Catalog) -> Path:
    """Run scenario `name` to its end and write its history; returns the file written."""
    start_at, scenario = SCENARIOS[name]
    signing = signer()
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=data_converter,
        identity=IDENTITY,
        test_server_existing_path=str(BIN / "temporal-test-server"),
        interceptors=[signing],
    )
    signing.clock = env.get_current_time
    try:
        await search.ensure_search_attributes(env.client)
        await travel_to(env, start_at)
        with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(max_workers=4) as executor:
            engine = make_engine(f"sqlite:///{Path(tmp) / 'hallflow.db'}")
            create_tables(engine)
            store = Store(engine)
            lend(f"record-{name}", Lent(store=store, key=load_private(get_settings().worker_key)))
            activities = hallflow_activities(
                store,
                CalendarActivities(Calendar.load(TEST_CALENDAR), TEST_CALENDAR),
                CatalogActivities(catalog),
                watch=WatchDelivery(env.client, f"record-{name}"),
            )
            async with Worker(
                env.client,
                task_queue=f"record-{name}",
                workflows=WORKFLOWS, interceptors=INTERCEPTORS,
                activities=activities,
                activity_executor=executor,
                identity=IDENTITY,
            ):
                handle = await scenario(env.client, f"record-{name}", catalog)
                if name not in OPEN_AT_END:
                    await handle.result()
                history = await handle.fetch_history()
            take_back(f"record-{name}")
            engine.dispose()
    finally:
        await env.shutdown()
    HISTORIES.mkdir(exist_ok=True)
    path = HISTORIES / f"{name}.json"
    path.write_text(history.to_json() + "\n", encoding="utf-8")
    return path


async def main(names: list[str]) -> None:
    if names == ["--all"]:
        names = list(SCENARIOS)
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown:
        raise SystemExit(f"unknown scenarios {unknown}; known: {sorted(SCENARIOS)}")
    catalog = load_catalog(ROOT / "data" / "matters.toml")
    # Without names: the scenarios that have no file yet.
    for name in names or [n for n in SCENARIOS if not (HISTORIES / f"{n}.json").exists()]:
        path = await record(name, catalog)
        print(f"recorded {path.relative_to(ROOT)}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
