"""Record the histories tests/test_replay.py replays: `.venv/bin/python -m tests.record_histories`.

Each scenario runs one workflow with the real activities (a SQLite file in a temporary folder,
the catalog, the directory, a calendar) on the server kind it declares, and writes its history
to tests/histories/<scenario>.json:
- DEV: a real `temporal server start-dev` (.venv/bin/temporal, free 127.0.0.1 port, hallflow's
  search attributes registered as `starter.py admin setup` does), on the wall clock, with
  data/calendar (plus a weekends-only placeholder for a year it lacks, as `make run` does). For
  scenarios that reach their end, or the state they are recorded in, within about a minute.
- TIME_SKIPPING: Temporal's time-skipping test server, one per scenario, starting at a fixed
  instant of the test calendar (tests/data/calendar): for scenarios that need days or weeks to
  pass (a rating window closing unrated, deadlines missed, warnings, escalations).
The DEV scenarios share one dev server and run side by side (a rated case ends a minute after
its rating, on the wall clock), while the TIME_SKIPPING ones run one after another; every server
started is stopped. When to record: tests/histories/README.md.
`python -m tests.record_histories automatic_approval` records just the scenarios named; `--all`
records every scenario again; without either, those that have no file yet.
"""

import asyncio
import sys

import tests.org_fixtures  # noqa: F401,I001 - the session's keys, named in the settings before anything reads them
import logging
import tempfile
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import structlog
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle, WorkflowQueryFailedError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.calendar import Calendar, CalendarActivities, with_placeholders
from activities.catalog import CatalogActivities, load_catalog
from activities.db import create_tables, make_engine
from activities.lent import Lent, lend, take_back
from activities.risk import load_risk_policy
from activities.store import Store
from activities.watch import WatchDelivery
from contract import search
from contract.approval import DepartmentOpinion, Resubmit, Review, Transfer, Urge, Vote
from contract.case import Applicant, CaseApplication, CaseStage, SupplementMaterials, Withdraw
from contract.matter import Matter
from contract.rating import ConfirmSetAside, Rate, Rating, Rectify, Verify
from contract.risk import Acknowledge, Level, Regrade, Resolve, RiskReviewRecord, SubmitPlan
from contract.suggestion import Reclassify, Respond
from security.keys import load_private
from settings import ROOT, get_settings
from tests.builders import WEDNESDAY_BEFORE_NATIONAL_DAY, application, start_case
from tests.org_fixtures import data_converter
from tests.temporal_fixtures import BIN, TEST_CALENDAR, TEST_EPOCH, SkippedClockTaskTimeout, signer, travel_to
from worker import INTERCEPTORS, WORKFLOWS, hallflow_activities
from workflows.case import CaseWorkflow
from workflows.rectification import RectificationWorkflow
from workflows.risk import RiskWorkflow
from workflows.satisfaction import SatisfactionWatchWorkflow
from workflows.suggestion import SuggestionWorkflow

HISTORIES = Path(__file__).parent / "histories"
# Fixed names keep the machine's pid@hostname out of the files and re-recordings comparable.
IDENTITY = "hallflow-history-recorder"
DEV, TIME_SKIPPING = "dev server", "time-skipping"
# A scenario that has not reached its end by then has hung (a failing workflow task, a wait
# that never holds): fail the recording instead of waiting for ever.
SCENARIO_TIMEOUT = 180.0

Catalog = dict[str, Matter]


@dataclass
class Run:
    """What a scenario runs with: its server, its worker's task queue, the catalog."""

    env: WorkflowEnvironment
    task_queue: str
    catalog: Catalog

    @property
    def client(self) -> Client:
        return self.env.client

    async def now(self) -> datetime:
        """The server's clock: the wall clock on the dev server, the skipped one otherwise."""
        return await self.env.get_current_time()


@dataclass(frozen=True)
class Scenario:
    run: Callable[[Run], Awaitable[WorkflowHandle]]
    server: str  # DEV or TIME_SKIPPING
    why: str  # why that server: the README's table says it
    start_at: datetime | None = None  # TIME_SKIPPING: the instant the clock starts at
    # Workflows that do not end (the satisfaction watch): recorded as they stand once settled.
    open_at_end: bool = False
    fails: bool = False  # the run ends failed (a refused start): its failure is the end awaited
    # Started under another id than its input names (replay must give it that one, not the input's).
    workflow_id: str | None = None


def _case(scenario: str, matter: Matter, **gaps) -> CaseApplication:
    """A case named after its scenario; the applicant is an id only, no personal details in the files."""
    app = application(matter, applicant_id=f"applicant-{scenario.replace('_', '-')}", **gaps)
    return app.model_copy(
        update={"case_no": f"replay-{scenario.replace('_', '-')}", "applicant": Applicant(applicant_id=app.applicant.applicant_id)}
    )


async def _until(handle: WorkflowHandle, query, check) -> None:
    while True:
        try:
            if check(await handle.query(query)):
                return
        except WorkflowQueryFailedError:
            pass  # not ready to answer yet (a risk still being registered); a lasting one times out
        await asyncio.sleep(0.02)


async def _wait_stage(handle: WorkflowHandle, stage: CaseStage) -> None:
    await _until(handle, CaseWorkflow.status, lambda s: s.stage == stage)


def _did(action: str):
    """A status check: `action` is among the last events of its audit trail."""
    return lambda s: action in [e["action"] if isinstance(e, dict) else e.action for e in s.last_events]


# ---- acceptance, deferral, withdrawal ---------------------------------------------------------


async def accepted_then_withdrawn(run: Run) -> WorkflowHandle:
    handle = await start_case(run.client, _case("accepted_then_withdrawn", run.catalog["enterprise-opening"]), run.task_queue)
    await _wait_stage(handle, CaseStage.AWAITING_REVIEW)
    await handle.execute_update(CaseWorkflow.withdraw, Withdraw(reason="changed plans", requested_by="applicant"))
    return handle


async def not_accepted(run: Run) -> WorkflowHandle:
    app = _case(
        "not_accepted", run.catalog["enterprise-opening"], without=("articles-of-association", "residence-proof"), signed=True
    )
    return await start_case(run.client, app, run.task_queue)


async def deferral_supplemented(run: Run) -> WorkflowHandle:
    app = _case(
        "deferral_supplemented",
        run.catalog["real-estate-registration"],
        without=("cadastral-survey-report", "marital-status-proof"),
        signed=True,
    )
    handle = await start_case(run.client, app, run.task_queue)
    await _wait_stage(handle, CaseStage.CONSULTING)
    for material in ("marital-status-proof", "cadastral-survey-report"):
        await handle.execute_update(
            CaseWorkflow.supplement_materials, SupplementMaterials(materials=[material], submitted_by="clerk-02")
        )
    await handle.execute_update(CaseWorkflow.withdraw, Withdraw(reason="sold elsewhere", requested_by="applicant"))
    return handle


async def deferral_missed_terminated(run: Run) -> WorkflowHandle:
    app = _case(
        "deferral_missed_terminated",
        run.catalog["real-estate-registration"],
        without=("cadastral-survey-report", "marital-status-proof"),
        signed=True,
    )
    handle = await start_case(run.client, app, run.task_queue)
    await _wait_stage(handle, CaseStage.CONSULTING)
    await handle.execute_update(
        CaseWorkflow.supplement_materials, SupplementMaterials(materials=["marital-status-proof"], submitted_by="clerk-02")
    )
    # Awaiting the result skips time: opinions overdue, the deferral reminder, then the missed deadline.
    return handle


# ---- the approval route ----------------------------------------------------------------------


async def panel_approved_after_deferral(run: Run) -> WorkflowHandle:
    app = _case("panel_approved_after_deferral", run.catalog["enterprise-opening"], without=("residence-proof",), signed=True)
    handle = await start_case(run.client, app, run.task_queue)
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


async def consulted_returned_rejected(run: Run) -> WorkflowHandle:
    app = _case("consulted_returned_rejected", run.catalog["real-estate-registration"])
    handle = await start_case(run.client, app, run.task_queue)
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


async def automatic_approval(run: Run) -> WorkflowHandle:
    return await start_case(run.client, _case("automatic_approval", run.catalog["housing-fund-withdrawal"]), run.task_queue)


async def urged_transferred_rated(run: Run) -> WorkflowHandle:
    """The applicant urges the reviewer (催办), who transfers the case (转办); the new reviewer
    approves; rated by the applicant."""
    app = _case("urged_transferred_rated", run.catalog["social-insurance-transfer"])
    handle = await start_case(run.client, app, run.task_queue)
    await _wait_stage(handle, CaseStage.AWAITING_REVIEW)
    await handle.execute_update(CaseWorkflow.urge, Urge(by="applicant", note="asking after the transfer"))
    await handle.execute_update(
        CaseWorkflow.transfer, Transfer(by="officer-huang", to_reviewer="officer-lin", reason="recusal: a relative")
    )
    await handle.execute_update(
        CaseWorkflow.review, Review(reviewer="officer-lin", decision="approve", opinion="contributions confirmed")
    )
    await _until(handle, CaseWorkflow.status, lambda s: s.rating_open_until is not None)
    await handle.execute_update(CaseWorkflow.rate, Rate(score=5, channel="sms"))
    return handle


async def overdue_yellow_red_risk(run: Run) -> WorkflowHandle:
    """Nobody reviews it: yellow at 80% of the promised working day (Tue 19:12), red when it has
    passed (Tue 24:00), which raises the department's overdue-case risk; rejected late."""
    app = _case("overdue_yellow_red_risk", run.catalog["enterprise-opening"])
    handle = await start_case(run.client, app, run.task_queue)
    await _wait_stage(handle, CaseStage.AWAITING_REVIEW)
    await run.env.sleep(timedelta(days=1, hours=14, minutes=30))  # Mon 10:00 -> Wed 00:30 Asia/Shanghai
    await _until(handle, CaseWorkflow.status, lambda s: s.warning == "red" and _did("risk_raised")(s))
    await handle.execute_update(
        CaseWorkflow.review, Review(reviewer="officer-li", decision="reject", opinion="shareholder not qualified")
    )
    return handle


async def consent_deferred_no_quorum(run: Run) -> WorkflowHandle:
    """Construction permit: three departments answer, two stay silent and are deemed to consent
    at their deadlines (逾期视为同意); the panel defers (缓议) and votes again; a changed vote; no
    quorum when the second vote closes; the rest vote late and approve."""
    app = _case("consent_deferred_no_quorum", run.catalog["construction-permit"])
    handle = await start_case(run.client, app, run.task_queue)
    await _wait_stage(handle, CaseStage.CONSULTING)
    for department, officer in (("development-reform", "drc-01"), ("natural-resources", "officer-zhou"), ("ecology-environment", "eco-01")):
        await handle.execute_update(
            CaseWorkflow.department_opinion, DepartmentOpinion(department=department, officer=officer, agree=True)
        )
    status = await handle.query(CaseWorkflow.status)
    await run.env.sleep(max(c.due_at for c in status.consultations) + timedelta(minutes=1) - await run.now())
    await _wait_stage(handle, CaseStage.AWAITING_REVIEW)
    await handle.execute_update(CaseWorkflow.review, Review(reviewer="officer-xu", decision="approve", opinion="complete"))
    await _wait_stage(handle, CaseStage.IN_PANEL)
    # Quorum is 4 of the 5 (0.67); 3 is a majority: deferred (缓议), a new vote opens.
    await handle.execute_update(CaseWorkflow.vote, Vote(member="officer-song", choice="approve"))
    for member in ("officer-hu", "officer-guo", "officer-luo"):
        await handle.execute_update(CaseWorkflow.vote, Vote(member=member, choice="defer", opinion="site visit first"))
    await _until(handle, CaseWorkflow.status, lambda s: s.stage == CaseStage.IN_PANEL and not s.votes)
    await handle.execute_update(CaseWorkflow.vote, Vote(member="officer-liang", choice="approve"))
    await handle.execute_update(CaseWorkflow.vote, Vote(member="officer-liang", choice="reject", opinion="fire exits"))
    closes = (await handle.query(CaseWorkflow.status)).vote_closes_at
    await run.env.sleep(closes + timedelta(minutes=1) - await run.now())
    await _until(handle, CaseWorkflow.status, _did("vote_no_quorum"))
    for member in ("officer-hu", "officer-guo", "officer-luo"):
        await handle.execute_update(CaseWorkflow.vote, Vote(member=member, choice="approve"))
    return handle


async def chair_awaited_approved(run: Run) -> WorkflowHandle:
    """Real-estate registration (chair decides): the members vote, the chair has not spoken when
    the vote closes and is told; the chair's vote decides."""
    app = _case("chair_awaited_approved", run.catalog["real-estate-registration"])
    handle = await start_case(run.client, app, run.task_queue)
    await _wait_stage(handle, CaseStage.CONSULTING)
    await handle.execute_update(
        CaseWorkflow.department_opinion, DepartmentOpinion(department="taxation", officer="tax-01", agree=True)
    )
    await _wait_stage(handle, CaseStage.AWAITING_REVIEW)
    await handle.execute_update(CaseWorkflow.review, Review(reviewer="officer-zhou", decision="approve"))
    await _wait_stage(handle, CaseStage.IN_PANEL)
    for member in ("officer-feng", "officer-he"):
        await handle.execute_update(CaseWorkflow.vote, Vote(member=member, choice="approve"))
    closes = (await handle.query(CaseWorkflow.status)).vote_closes_at
    await run.env.sleep(closes + timedelta(minutes=1) - await run.now())
    await _until(handle, CaseWorkflow.status, _did("vote_chair_awaited"))
    await handle.execute_update(CaseWorkflow.vote, Vote(member="officer-zheng", choice="approve"))
    return handle


async def unknown_matter_rated_bad(run: Run) -> WorkflowHandle:
    """An unknown matter code: not accepted; the bad review goes to the hall (its rectification is
    the hall's)."""
    app = _case("unknown_matter_rated_bad", run.catalog["housing-fund-withdrawal"])
    app = app.model_copy(update={"matter_code": "no-such-matter"})
    handle = await start_case(run.client, app, run.task_queue)
    await _until(handle, CaseWorkflow.status, lambda s: s.rating_open_until is not None)
    await handle.execute_update(CaseWorkflow.rate, Rate(score=2, comment="wrong counter", channel="kiosk"))
    return handle


async def start_refused(run: Run) -> WorkflowHandle:
    """A clerk of another hall starts a case at hall-central: the guard refuses the start, writes
    the refusal and fails the run."""
    app = _case("start_refused", run.catalog["housing-fund-withdrawal"]).model_copy(update={"clerk": "clerk-north-01"})
    return await start_case(run.client, app, run.task_queue)


WRONG_ID = "case-replay-someone-else"


async def input_refused_wrong_id(run: Run) -> WorkflowHandle:
    """A valid application started under another case's workflow id: the input is refused before
    anything else (no directory read, nothing written) and the run fails."""
    app = _case("input_refused_wrong_id", run.catalog["housing-fund-withdrawal"])
    return await run.client.start_workflow(
        CaseWorkflow.run, app, id=WRONG_ID, task_queue=run.task_queue, execution_timeout=timedelta(minutes=5)
    )


# ---- 好差评: the rating window, rectification, the satisfaction watch ---------------------------


async def automatic_rated_bad(run: Run) -> WorkflowHandle:
    handle = await start_case(run.client, _case("automatic_rated_bad", run.catalog["housing-fund-withdrawal"]), run.task_queue)
    await _until(handle, CaseWorkflow.status, lambda s: s.rating_open_until is not None)
    await handle.execute_update(CaseWorkflow.rate, Rate(score=1, comment="system was down", channel="app"))
    return handle


async def rated_bad_rectification_open(run: Run) -> WorkflowHandle:
    """A bad review of a case whose rectification is open already (opened by hand under its id):
    the case records that instead of starting a second one."""
    app = _case("rated_bad_rectification_open", run.catalog["housing-fund-withdrawal"])
    await _rectification(run, app.case_no)
    handle = await start_case(run.client, app, run.task_queue)
    await _until(handle, CaseWorkflow.status, lambda s: s.rating_open_until is not None)
    await handle.execute_update(CaseWorkflow.rate, Rate(score=1, comment="same again", channel="web"))
    return handle


async def automatic_rated_good_watched(run: Run) -> WorkflowHandle:
    """The rating also goes to the department's satisfaction watch."""
    app = _case("automatic_rated_good_watched", run.catalog["housing-fund-withdrawal"])
    handle = await start_case(run.client, app, run.task_queue)
    await _until(handle, CaseWorkflow.status, lambda s: s.rating_open_until is not None)
    await handle.execute_update(CaseWorkflow.rate, Rate(score=5, channel="app"))
    return handle


# ---- the feedback loops' own workflows --------------------------------------------------------


async def _rectification(run: Run, no: str) -> WorkflowHandle:
    from tests.test_rectification import order

    o = order(no)
    o = o.model_copy(update={"rating": o.rating.model_copy(update={"at": await run.now()})})
    handle = await run.client.start_workflow(RectificationWorkflow.run, o, id=f"rectification-{no}", task_queue=run.task_queue)
    await _until(handle, RectificationWorkflow.status, lambda s: s.due_at is not None)
    return handle


async def rectification_verified_rectified(run: Run) -> WorkflowHandle:
    handle = await _rectification(run, "replay-rect-1")
    await handle.execute_update(RectificationWorkflow.verify, Verify(officer="officer-li", finding="valid"))
    await handle.execute_update(
        RectificationWorkflow.rectify, Rectify(officer="officer-li", action="trained staff", reply="已整改")
    )
    return handle


async def rectification_set_aside(run: Run) -> WorkflowHandle:
    """Found malicious at the call-back; a second officer of the department confirms the set-aside."""
    handle = await _rectification(run, "replay-rect-3")
    await handle.execute_update(
        RectificationWorkflow.verify,
        Verify(officer="officer-li", finding="rater never applied; same text on 30 cases", malicious=True),
    )
    await handle.execute_update(
        RectificationWorkflow.confirm_set_aside, ConfirmSetAside(officer="officer-zhao", reason="checked the call log")
    )
    return handle


async def rectification_escalated_rectified_late(run: Run) -> WorkflowHandle:
    """Nobody calls back: reminded at 00:00 of the call-back's working day, escalated to the head
    when it has passed; verified late, then rectified within the rectification's own deadline."""
    handle = await _rectification(run, "replay-rect-4")
    due = (await handle.query(RectificationWorkflow.status)).due_at
    await run.env.sleep(due + timedelta(minutes=1) - await run.now())
    await _until(handle, RectificationWorkflow.status, lambda s: s.overdue and _did("step_overdue")(s))
    await handle.execute_update(RectificationWorkflow.verify, Verify(officer="officer-wang", finding="queue was long"))
    await handle.execute_update(
        RectificationWorkflow.rectify, Rectify(officer="officer-wang", action="second window at noon", reply="已增设窗口")
    )
    return handle


async def _suggestion(run: Run, no: str) -> WorkflowHandle:
    from tests.test_suggestion import suggestion

    handle = await run.client.start_workflow(
        SuggestionWorkflow.run, suggestion(no), id=f"suggestion-{no}", task_queue=run.task_queue
    )
    await _until(handle, SuggestionWorkflow.status, lambda s: s.due_at is not None)
    return handle


async def suggestion_reclassified_answered(run: Run) -> WorkflowHandle:
    handle = await _suggestion(run, "replay-sug-1")
    await handle.execute_update(
        SuggestionWorkflow.reclassify, Reclassify(complexity="complex", reason="staffing study", by="coordinator-1")
    )
    await handle.execute_update(
        SuggestionWorkflow.respond,
        Respond(department="natural-resources", officer="officer-zhou", adopted=False, reason="covered by appointments"),
    )
    return handle


async def suggestion_escalated_answered_late(run: Run) -> WorkflowHandle:
    """Reminded at 00:00 of its last working day, escalated to the head when the 15 working days
    have passed (Wed 09-30 + the National Day break -> Fri 10-23 24:00), answered late."""
    handle = await _suggestion(run, "replay-sug-3")
    due = (await handle.query(SuggestionWorkflow.status)).due_at
    await run.env.sleep(due + timedelta(minutes=1) - await run.now())
    await _until(handle, SuggestionWorkflow.status, lambda s: s.overdue and _did("step_overdue")(s))
    await handle.execute_update(
        SuggestionWorkflow.respond,
        Respond(department="natural-resources", officer="officer-zhou", adopted=True, measures="Saturday hours until 17:00"),
    )
    return handle


async def _risk(run: Run, no: str, probability: float, impact: str) -> WorkflowHandle:
    from tests.test_risk import report

    handle = await run.client.start_workflow(
        RiskWorkflow.run, report(no, probability, impact), id=f"risk-{no}", task_queue=run.task_queue
    )
    await _until(handle, RiskWorkflow.status, lambda s: s.due_at is not None)
    return handle


async def _review_and_resolve(
    run: Run,
    handle: WorkflowHandle,
    officer: str = "officer-li",
    plan: str = "spares",
    days: int = 2,
    review: tuple[str, str, str] = ("c", "w", "x"),
    summary: str = "done",
) -> None:
    """An acknowledged risk's plan, review and resolution, by `officer`."""
    await _until(handle, RiskWorkflow.status, lambda s: s.entry.state == "awaiting_plan" and s.due_at is not None)
    await handle.execute_update(
        RiskWorkflow.submit_plan, SubmitPlan(officer=officer, plan=plan, due=await run.now() + timedelta(days=days))
    )
    await _until(handle, RiskWorkflow.status, lambda s: s.entry.state == "handling")
    cause, worked, changes = review
    await handle.execute_update(
        RiskWorkflow.review, RiskReviewRecord(by=officer, cause=cause, what_worked=worked, what_changes=changes)
    )
    await handle.execute_update(RiskWorkflow.resolve, Resolve(officer=officer, summary=summary))


async def risk_handled_and_resolved(run: Run) -> WorkflowHandle:
    handle = await _risk(run, "replay-risk-1", 0.6, "high")
    await handle.execute_update(RiskWorkflow.acknowledge, Acknowledge(officer="officer-li", group="g1"))
    await _review_and_resolve(run, handle)
    return handle


async def risk_escalated_regraded(run: Run) -> WorkflowHandle:
    """Yellow (0.5 x medium); the group misses its working day (Tue 24:00): the head is told and
    the risk turns red, then red's 2 hours pass twice more (deputy director, director): every
    rank has been told and the ladder ends (no timer). The head regrades it yellow, which starts
    the step's clock again; then acknowledged, planned, reviewed, resolved."""
    handle = await _risk(run, "replay-risk-3", 0.5, "medium")
    due = (await handle.query(RiskWorkflow.status)).due_at
    await run.env.sleep(due + timedelta(hours=4, minutes=1) - await run.now())
    await _until(handle, RiskWorkflow.status, lambda s: s.entry.escalations == 3 and s.entry.level == Level.RED)
    await handle.execute_update(
        RiskWorkflow.regrade, Regrade(level=Level.YELLOW, reason="queue back to normal", by="officer-zhao")
    )
    await handle.execute_update(RiskWorkflow.acknowledge, Acknowledge(officer="officer-li", group="g1"))
    await _review_and_resolve(run, handle)
    return handle


async def risk_watch_gone_resolved(run: Run) -> WorkflowHandle:
    """A satisfaction risk whose watch is not running (none here for natural-resources): resolved
    all the same; telling the watch fails and is logged."""
    from tests.test_risk import report

    r = report("replay-risk-4", 1.0, "high", level=Level.RED).model_copy(
        update={"source": "satisfaction", "responsible_department": "natural-resources", "owner": "head:natural-resources"}
    )
    handle = await run.client.start_workflow(RiskWorkflow.run, r, id=f"risk-{r.risk_no}", task_queue=run.task_queue)
    await _until(handle, RiskWorkflow.status, lambda s: s.due_at is not None)
    await handle.execute_update(RiskWorkflow.acknowledge, Acknowledge(officer="officer-zheng", group="g4"))
    await _review_and_resolve(run, handle, officer="officer-zheng", plan="more staff", days=1)
    return handle


async def _rate_watch(run: Run, department: str, scores: list[int]) -> None:
    delivery, now = WatchDelivery(run.client, run.task_queue), await run.now()
    for n, score in enumerate(scores, start=1):
        rating = Rating(
            case_no=f"W-{n}", matter_code="x", department=department, hall="h", score=score, channel="app", at=now
        )
        await delivery.send_rating_to_watch(rating)


async def satisfaction_over_line_and_back(run: Run) -> WorkflowHandle:
    """SatisfactionWatchWorkflow: 2 bad of 21 ratings (over 5%) start a red risk; 19 good ones bring the
    rate back below the line. The watch never ends: its history is taken once it has said so."""
    await _rate_watch(run, "watched", [1, 1] + [5] * 38)
    handle = run.client.get_workflow_handle("satisfaction-watched")
    await _until(handle, SatisfactionWatchWorkflow.status, lambda s: s.ratings == 40 and not s.over_line)
    return handle


async def risk_from_watch_resolved(run: Run) -> WorkflowHandle:
    """The red risk a satisfaction watch starts (2 bad of 21 ratings), handled by the department
    head; resolving it tells the watch (signal `risk_closed`), which may open another."""
    await _rate_watch(run, "taxation", [1, 1] + [5] * 19)
    watch = run.client.get_workflow_handle("satisfaction-taxation")
    await _until(watch, SatisfactionWatchWorkflow.status, lambda s: s.open_risk is not None)
    risk_no = (await watch.query(SatisfactionWatchWorkflow.status)).open_risk
    handle = run.client.get_workflow_handle(f"risk-{risk_no}")
    await _until(handle, RiskWorkflow.status, lambda s: s.due_at is not None)
    await handle.execute_update(RiskWorkflow.acknowledge, Acknowledge(officer="tax-head", group="satisfaction"))
    await _review_and_resolve(
        run, handle, officer="tax-head", plan="call back raters", days=1,
        review=("queue", "call-backs", "staffing"), summary="rate back under 5%",
    )  # fmt: skip
    await _until(watch, SatisfactionWatchWorkflow.status, lambda s: s.open_risk is None)
    return handle


async def satisfaction_continued_as_new(run: Run) -> WorkflowHandle:
    """SatisfactionWatchWorkflow continues as new after `ratings_per_run` ratings (data/risk.toml,
    the policy the worker reads): that many, 2% of them bad (under the line). Recorded: the first
    run, which ends continued as new; the next run carries the window on."""
    per_run = load_risk_policy(ROOT / "data" / "risk.toml").satisfaction.ratings_per_run
    await _rate_watch(run, "continued", [1 if n % 50 == 25 else 5 for n in range(1, per_run + 1)])
    watch = run.client.get_workflow_handle("satisfaction-continued")
    first = (await watch.describe()).raw_description.workflow_execution_info.first_run_id
    while (await watch.describe()).run_id == first:
        await asyncio.sleep(0.05)
    return run.client.get_workflow_handle("satisfaction-continued", run_id=first)


# ---- signal twins, update-with-start, WaitingOn ----------------------------------------------


async def panel_by_twins_supplied_with_start(run: Run) -> WorkflowHandle:
    """Materials with the start, review and votes as signal twins (one refused), rated by Update."""
    from temporalio.client import WithStartWorkflowOperation
    from temporalio.common import WorkflowIDConflictPolicy

    app = _case("panel_by_twins_supplied_with_start", run.catalog["enterprise-opening"], without=("residence-proof",))
    start = WithStartWorkflowOperation(
        CaseWorkflow.run, app, id=f"case-{app.case_no}", task_queue=run.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING, execution_timeout=timedelta(days=400),
    )
    await run.client.execute_update_with_start_workflow(
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


async def rectification_by_twins(run: Run) -> WorkflowHandle:
    handle = await _rectification(run, "replay-rect-2")
    await handle.signal("verify_signal", Verify(officer="officer-li", finding="valid"))
    await _until(handle, RectificationWorkflow.status, lambda s: s.stage == "rectifying")
    await handle.signal("rectify_signal", {"officer": "officer-li"})  # no action, no reply: refused
    await handle.signal("rectify_signal", Rectify(officer="officer-li", action="trained staff", reply="已整改"))
    return handle


async def suggestion_answered_by_twin(run: Run) -> WorkflowHandle:
    handle = await _suggestion(run, "replay-sug-2")
    await handle.signal(
        "respond_signal",
        Respond(department="natural-resources", officer="officer-zhou", adopted=True, measures="more seats"),
    )
    return handle


async def risk_by_twins(run: Run) -> WorkflowHandle:
    handle = await _risk(run, "replay-risk-2", 0.6, "high")
    await handle.signal("acknowledge_signal", Acknowledge(officer="officer-li", group="g1"))
    await _until(handle, RiskWorkflow.status, lambda s: s.entry.state == "awaiting_plan" and s.due_at is not None)
    await handle.signal(
        "submit_plan_signal", SubmitPlan(officer="officer-li", plan="spares", due=await run.now() + timedelta(days=2))
    )
    await _until(handle, RiskWorkflow.status, lambda s: s.entry.state == "handling")
    await handle.signal("review_signal", RiskReviewRecord(by="officer-li", cause="c", what_worked="w", what_changes="x"))
    await handle.signal("resolve_signal", Resolve(officer="officer-li", summary="done"))
    return handle


# ---- which server each scenario needs, and why --------------------------------------------------

WINDOW = "ends when its rating window (5 working days) closes unrated"
RATED = "rated: ends a minute after the rating (the grace for a second rating)"
ENDS_AT_ONCE = "ends with its last message; no deadline passes"

# name -> Scenario; the file is tests/histories/<name>.json.
SCENARIOS: dict[str, Scenario] = {
    "accepted_then_withdrawn": Scenario(accepted_then_withdrawn, TIME_SKIPPING, WINDOW, TEST_EPOCH),
    "not_accepted": Scenario(not_accepted, TIME_SKIPPING, WINDOW, TEST_EPOCH),
    "deferral_supplemented": Scenario(
        deferral_supplemented, TIME_SKIPPING, f"{WINDOW}; starts on the eve of the test calendar's National Day",
        WEDNESDAY_BEFORE_NATIONAL_DAY,
    ),
    "deferral_missed_terminated": Scenario(
        deferral_missed_terminated, TIME_SKIPPING, "opinions overdue, deferral reminder and deadline missed (days)",
        WEDNESDAY_BEFORE_NATIONAL_DAY,
    ),
    "panel_approved_after_deferral": Scenario(panel_approved_after_deferral, TIME_SKIPPING, WINDOW, TEST_EPOCH),
    "consulted_returned_rejected": Scenario(consulted_returned_rejected, TIME_SKIPPING, WINDOW, TEST_EPOCH),
    "automatic_approval": Scenario(automatic_approval, TIME_SKIPPING, WINDOW, TEST_EPOCH),
    "overdue_yellow_red_risk": Scenario(
        overdue_yellow_red_risk, TIME_SKIPPING, f"a promised working day passes; {WINDOW}", TEST_EPOCH
    ),
    "consent_deferred_no_quorum": Scenario(
        consent_deferred_no_quorum, TIME_SKIPPING, f"opinion and voting deadlines pass (weeks); {WINDOW}", TEST_EPOCH
    ),
    "chair_awaited_approved": Scenario(
        chair_awaited_approved, TIME_SKIPPING, f"the voting deadline passes (2 working days); {WINDOW}", TEST_EPOCH
    ),
    "urged_transferred_rated": Scenario(urged_transferred_rated, DEV, RATED),
    "unknown_matter_rated_bad": Scenario(unknown_matter_rated_bad, DEV, RATED),
    "start_refused": Scenario(start_refused, DEV, "fails at its start", fails=True),
    "input_refused_wrong_id": Scenario(
        input_refused_wrong_id, DEV, "fails at its start", fails=True, workflow_id=WRONG_ID
    ),
    "automatic_rated_bad": Scenario(automatic_rated_bad, DEV, RATED),
    "rated_bad_rectification_open": Scenario(rated_bad_rectification_open, DEV, RATED),
    "automatic_rated_good_watched": Scenario(automatic_rated_good_watched, DEV, RATED),
    "rectification_verified_rectified": Scenario(rectification_verified_rectified, DEV, ENDS_AT_ONCE),
    "rectification_set_aside": Scenario(rectification_set_aside, DEV, ENDS_AT_ONCE),
    "rectification_escalated_rectified_late": Scenario(
        rectification_escalated_rectified_late, TIME_SKIPPING, "the call-back's working day passes", TEST_EPOCH
    ),
    "suggestion_reclassified_answered": Scenario(suggestion_reclassified_answered, DEV, ENDS_AT_ONCE),
    "suggestion_escalated_answered_late": Scenario(
        suggestion_escalated_answered_late, TIME_SKIPPING, "15 working days pass (reminder, escalation)",
        WEDNESDAY_BEFORE_NATIONAL_DAY,
    ),
    "risk_handled_and_resolved": Scenario(risk_handled_and_resolved, DEV, ENDS_AT_ONCE),
    "risk_escalated_regraded": Scenario(
        risk_escalated_regraded, TIME_SKIPPING, "a yellow step's working day and red's hours pass", TEST_EPOCH
    ),
    "risk_from_watch_resolved": Scenario(risk_from_watch_resolved, DEV, ENDS_AT_ONCE),
    "risk_watch_gone_resolved": Scenario(risk_watch_gone_resolved, DEV, ENDS_AT_ONCE),
    "satisfaction_over_line_and_back": Scenario(
        satisfaction_over_line_and_back, DEV, "40 ratings in seconds; recorded open (the watch never ends)",
        open_at_end=True,
    ),
    "satisfaction_continued_as_new": Scenario(
        satisfaction_continued_as_new, DEV,
        "500 ratings in seconds; the test server can lose a continued run's first task (test_satisfaction)",
        open_at_end=True,
    ),
    "panel_by_twins_supplied_with_start": Scenario(panel_by_twins_supplied_with_start, DEV, RATED),
    "rectification_by_twins": Scenario(rectification_by_twins, DEV, ENDS_AT_ONCE),
    "suggestion_answered_by_twin": Scenario(suggestion_answered_by_twin, DEV, ENDS_AT_ONCE),
    "risk_by_twins": Scenario(risk_by_twins, DEV, ENDS_AT_ONCE),
}


# ---- recording ----------------------------------------------------------------------------------


async def _settled(handle: WorkflowHandle) -> None:
    """Until the workflow has nothing in flight (no workflow task, no activity) and its history
    stopped growing: an open workflow is recorded at rest."""
    last = -1
    while True:
        desc = (await handle.describe()).raw_description
        busy = desc.HasField("pending_workflow_task") or len(desc.pending_activities) > 0
        events = desc.workflow_execution_info.history_length
        if not busy and events == last:
            return
        last = events
        await asyncio.sleep(0.2)


async def _run_scenario(name: str, env: WorkflowEnvironment, calendar_dir: Path, catalog: Catalog) -> Path:
    """Run scenario `name` on `env` with its own worker and database; write its history."""
    scenario, task_queue = SCENARIOS[name], f"record-{name}"
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(max_workers=4) as executor:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'hallflow.db'}")
        create_tables(engine)
        store = Store(engine)
        lend(task_queue, Lent(store=store, key=load_private(get_settings().worker_key)))
        try:
            activities = hallflow_activities(
                store,
                CalendarActivities(Calendar.load(calendar_dir), calendar_dir),
                CatalogActivities(catalog),
                watch=WatchDelivery(env.client, task_queue),
            )
            async with Worker(
                env.client,
                task_queue=task_queue,
                workflows=WORKFLOWS,
                interceptors=INTERCEPTORS,
                activities=activities,
                activity_executor=executor,
                identity=IDENTITY,
            ):

                async def to_the_end() -> WorkflowHandle:
                    handle = await scenario.run(Run(env, task_queue, catalog))
                    if scenario.open_at_end:
                        await _settled(handle)
                    elif scenario.fails:
                        try:
                            await handle.result()
                        except WorkflowFailureError:
                            return handle
                        raise RuntimeError(f"{name}: expected to fail, it completed")
                    else:
                        await handle.result()
                    return handle

                try:
                    handle = await asyncio.wait_for(to_the_end(), SCENARIO_TIMEOUT)
                except TimeoutError:
                    raise RuntimeError(f"{name}: not at its end after {SCENARIO_TIMEOUT:.0f} s on the {scenario.server}") from None
                history = await handle.fetch_history()
        finally:
            take_back(task_queue)
            engine.dispose()
    HISTORIES.mkdir(exist_ok=True)
    path = HISTORIES / f"{name}.json"
    path.write_text(history.to_json() + "\n", encoding="utf-8")
    print(f"recorded {path.relative_to(ROOT)} ({scenario.server})", flush=True)
    return path


async def _on_time_skipping_server(name: str, catalog: Catalog) -> Path:
    """A fresh time-skipping server per scenario, its clock moved to the scenario's start."""
    start_at = SCENARIOS[name].start_at
    assert start_at is not None, f"{name}: a time-skipping scenario says when it starts"
    signing = signer()
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=data_converter,
        identity=IDENTITY,
        test_server_existing_path=str(BIN / "temporal-test-server"),
        interceptors=[signing, SkippedClockTaskTimeout()],
    )
    signing.clock = env.get_current_time  # assertions are judged by the server's (skipped) clock
    try:
        await search.ensure_search_attributes(env.client)
        await travel_to(env, start_at)
        return await _run_scenario(name, env, TEST_CALENDAR, catalog)
    finally:
        await env.shutdown()


async def _on_dev_server(names: list[str], catalog: Catalog) -> list[Path | BaseException]:
    """One real dev server for all `names`, run side by side; its search attributes registered
    at start and again as `starter.py admin setup` does."""
    env = await WorkflowEnvironment.start_local(
        ip="127.0.0.1",  # a free port on it: the SDK picks one
        data_converter=data_converter,
        identity=IDENTITY,
        interceptors=[signer()],
        dev_server_existing_path=str(BIN / "temporal"),
        search_attributes=search.ALL,
        dev_server_log_level="error",
    )
    try:
        await search.ensure_search_attributes(env.client)
        with tempfile.TemporaryDirectory() as tmp:
            # data/calendar, with a weekends-only placeholder for a year it lacks (in December,
            # limits and rating windows reach into next year): the version names it.
            calendar_dir = Path(tmp) / "calendar"
            for year in with_placeholders(ROOT / "data" / "calendar", calendar_dir, date.today() + timedelta(days=366)):
                print(f"note: data/calendar has no {year}.toml; dev-server scenarios use a weekends-only placeholder")
            return await asyncio.gather(
                *(_run_scenario(name, env, calendar_dir, catalog) for name in names), return_exceptions=True
            )
    finally:
        await env.shutdown()


async def main(names: list[str]) -> None:
    if names == ["--all"]:
        names = list(SCENARIOS)
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown:
        raise SystemExit(f"unknown scenarios {unknown}; known: {sorted(SCENARIOS)}")
    # Without names: the scenarios that have no file yet.
    names = names or [n for n in SCENARIOS if not (HISTORIES / f"{n}.json").exists()]
    # The workers' and activities' info lines would bury what was recorded.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    catalog = load_catalog(ROOT / "data" / "matters.toml")
    on_dev = [n for n in names if SCENARIOS[n].server == DEV]
    skipping = [n for n in names if SCENARIOS[n].server == TIME_SKIPPING]

    async def one_after_another() -> list[Path | BaseException]:
        done: list[Path | BaseException] = []
        for name in skipping:
            try:
                done.append(await _on_time_skipping_server(name, catalog))
            except Exception as err:  # record the others; report it at the end
                done.append(err)
        return done

    # The dev server's scenarios mostly wait on the wall clock: the time-skipping ones run meanwhile.
    dev, skipped = await asyncio.gather(
        _on_dev_server(on_dev, catalog) if on_dev else asyncio.sleep(0, []), one_after_another()
    )
    failed = [(n, r) for n, r in zip(on_dev + skipping, [*dev, *skipped]) if isinstance(r, BaseException)]
    for name, err in failed:
        print(f"FAILED {name}: {type(err).__name__}: {err}", file=sys.stderr)
    if failed:
        raise SystemExit(f"{len(failed)} of {len(names)} scenarios failed: {[n for n, _ in failed]}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
