"""`python starter.py operator demo`: a scripted day in a service hall, against a running dev server and worker.

A dozen cases take every path a hall sees in a day (automatic approval, deferral then supplement,
not accepted, parallel opinions, return and resubmit, transfer, rejection, withdrawal, panels),
applicants rate them (a bad review is rectified, a malicious one set aside), a suggestion is
answered and a risk handled. Some cases are left open, as at the end of a real day, so the inbox
and the UI filters have something to show. Then the KPI report for today and the UI links.
Every number is unique to the run (DEMO-<time>-NN), so the demo can run again and again.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import NamedTuple
from urllib.parse import quote

from rich.console import Console, ConsoleOptions
from rich.measure import Measurement
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table
from rich.text import Text
from temporalio.client import Client, WorkflowHandle

from activities.catalog import load_catalog
from contract.approval import DepartmentOpinion, Resubmit, Review, Transfer, Vote
from contract.case import Applicant, CaseApplication, CaseStage, SupplementMaterials, Withdraw, case_workflow_id
from contract.rating import ConfirmSetAside, Rate, Rectify, Verify
from contract.risk import Acknowledge, RiskReport, SubmitPlan
from contract.suggestion import Respond, Suggestion
from settings import Settings
from workflows.case import CaseWorkflow
from workflows.rectification import RectificationWorkflow
from workflows.risk import RiskWorkflow
from workflows.suggestion import SuggestionWorkflow


class Starters(NamedTuple):
    """starter.py's own start functions (cli/calls.py): the demo starts workflows exactly as a hall does."""

    case: Callable[[Client, Settings, CaseApplication], Awaitable[str]]
    risk: Callable[[Client, Settings, RiskReport], Awaitable[str]]
    suggestion: Callable[[Client, Settings, Suggestion], Awaitable[str]]


WAIT_SECONDS = 30.0


class NoWorker(RuntimeError):
    pass


class Day:
    """One run of the demo: numbering, starting and waiting, and the progress bar."""

    def __init__(self, client: Client, settings: Settings, starters: Starters, console: Console | None = None) -> None:
        self.client, self.settings, self.start = client, settings, starters
        self.console = console or Console(stderr=True)
        self.catalog = load_catalog(settings.catalog_file)
        self.prefix = f"DEMO-{datetime.now(timezone.utc):%Y%m%d%H%M%S}"
        self.count = 0
        self.cases: list[str] = []

    # ---- building blocks ------------------------------------------------------------------------

    async def case(self, matter: str, *, without: tuple[str, ...] = (), signed: bool = False) -> WorkflowHandle:
        self.count += 1
        case_no = f"{self.prefix}-{self.count:02d}"
        app = CaseApplication(
            case_no=case_no,
            matter_code=matter,
            hall="hall-central",
            clerk="clerk-01",
            applicant=Applicant(applicant_id=f"app-{case_no.lower()}"),
            materials=[m.code for m in self.catalog[matter].materials if m.code not in without],
            commitment_signed=signed,
        )
        await self.start.case(self.client, self.settings, app)
        self.cases.append(case_no)
        return self.client.get_workflow_handle(case_workflow_id(case_no))

    async def until(self, handle: WorkflowHandle, query, check) -> object:
        """Poll a status query until `check` holds: the worker needs a moment for each step."""
        end = time.monotonic() + WAIT_SECONDS
        while True:
            try:
                status = await handle.query(query)
                if check(status):
                    return status
            except Exception:  # noqa: BLE001 - not started yet, or the query timed out: ask again
                pass
            if time.monotonic() > end:
                raise NoWorker(f"{handle.id} did not move within {WAIT_SECONDS:.0f} s: is worker.py running?")
            await asyncio.sleep(0.1)

    async def stage(self, handle: WorkflowHandle, *stages: CaseStage):
        return await self.until(handle, CaseWorkflow.status, lambda s: s.stage in stages)

    async def rate(self, handle: WorkflowHandle, score: int, comment: str = "") -> None:
        await self.until(handle, CaseWorkflow.status, lambda s: s.rating_open_until is not None)
        await handle.execute_update(CaseWorkflow.rate, Rate(score=score, channel="window", comment=comment))

    async def panel(self, handle: WorkflowHandle, *members: str) -> None:
        await self.stage(handle, CaseStage.IN_PANEL)
        for member in members:
            await handle.execute_update(CaseWorkflow.vote, Vote(member=member, choice="approve", opinion="同意"))

    async def review(self, handle: WorkflowHandle, reviewer: str, decision: str = "approve", **more) -> None:
        await self.stage(handle, CaseStage.AWAITING_REVIEW)
        await handle.execute_update(CaseWorkflow.review, Review(reviewer=reviewer, decision=decision, **more))

    async def rectification(self, handle: WorkflowHandle) -> WorkflowHandle:
        rectification = self.client.get_workflow_handle(f"rectification-{handle.id.removeprefix('case-')}")
        await self.until(rectification, RectificationWorkflow.status, lambda s: s.due_at is not None)
        return rectification

    # ---- the day ------------------------------------------------------------------------------

    def script(self) -> list[tuple[str, Callable[[], Awaitable[None]]]]:
        return [
            ("housing fund withdrawal: approved by rule (秒批), rated 5", self.automatic_rated_good),
            ("housing fund withdrawal: rated 2, the bad review rectified", self.automatic_rated_bad),
            ("enterprise opening: review and panel, approved, rated 5", self.enterprise_approved),
            ("enterprise opening: deferred material, supplemented, approved", self.enterprise_deferred),
            ("enterprise opening: core material missing, not accepted", self.not_accepted),
            ("social insurance transfer: returned, resubmitted, approved", self.returned_and_approved),
            ("social insurance transfer: transferred, rejected, malicious review", self.transferred_rejected),
            ("social insurance transfer: withdrawn by the applicant", self.withdrawn),
            ("real-estate registration: tax opinion, review, panel, approved", self.real_estate_approved),
            ("medical device licence: before the panel at close of day", self.medical_in_panel),
            ("construction permit: five departments consulted in parallel", self.construction_consulting),
            ("enterprise opening: awaiting a deferred material at close", self.enterprise_awaiting_material),
            ("public suggestion: answered and published (采纳公示)", self.suggestion_answered),
            ("risk: crowd at the entrance, group convened, plan in", self.risk_handled),
        ]

    async def automatic_rated_good(self) -> None:
        await self.rate(await self.case("housing-fund-withdrawal"), 5)

    async def automatic_rated_bad(self) -> None:
        handle = await self.case("housing-fund-withdrawal")
        await self.rate(handle, 2, "the kiosk was down")
        rectification = await self.rectification(handle)
        await rectification.execute_update(RectificationWorkflow.verify, Verify(officer="officer-fund-1", finding="kiosk down 40 min"))
        await self.until(rectification, RectificationWorkflow.status, lambda s: s.stage == "rectifying")
        await rectification.execute_update(
            RectificationWorkflow.rectify,
            Rectify(officer="officer-fund-1", action="kiosk replaced, spare on site", reply="已更换自助机并增设备用机"),
        )

    async def enterprise_approved(self) -> None:
        handle = await self.case("enterprise-opening")
        await self.review(handle, "officer-li", opinion="材料齐全，符合法定形式")
        await self.panel(handle, "officer-zhao", "officer-chen")
        await self.rate(handle, 5)

    async def enterprise_deferred(self) -> None:
        handle = await self.case("enterprise-opening", without=("residence-proof",), signed=True)
        await self.review(handle, "officer-li")
        await self.panel(handle, "officer-zhao", "officer-sun")
        await self.stage(handle, CaseStage.APPROVED_PENDING_MATERIALS)
        await handle.execute_update(
            CaseWorkflow.supplement_materials, SupplementMaterials(materials=["residence-proof"], submitted_by="clerk-02")
        )
        await self.rate(handle, 4)

    async def not_accepted(self) -> None:
        handle = await self.case("enterprise-opening", without=("articles-of-association",))
        await self.rate(handle, 3, "told everything missing at once")

    async def returned_and_approved(self) -> None:
        handle = await self.case("social-insurance-transfer")
        await self.review(handle, "officer-huang", "return", corrections=["contribution certificate unstamped"])
        await self.stage(handle, CaseStage.RETURNED)
        await handle.execute_update(
            CaseWorkflow.resubmit, Resubmit(materials=["contribution-certificate"], note="stamped copy")
        )
        await self.review(handle, "officer-huang")
        await self.rate(handle, 5)

    async def transferred_rejected(self) -> None:
        handle = await self.case("social-insurance-transfer")
        await self.stage(handle, CaseStage.AWAITING_REVIEW)
        await handle.execute_update(
            CaseWorkflow.transfer, Transfer(by="officer-huang", to_reviewer="officer-lin", reason="on leave this afternoon")
        )
        await handle.execute_update(
            CaseWorkflow.review, Review(reviewer="officer-lin", decision="reject", opinion="不符合跨统筹区转移条件")
        )
        await self.rate(handle, 1, "abusive text")
        rectification = await self.rectification(handle)
        await rectification.execute_update(
            RectificationWorkflow.verify,
            Verify(officer="officer-huang", finding="abuse unrelated to the service", malicious=True),
        )
        await self.until(rectification, RectificationWorkflow.status, lambda s: s.stage == "awaiting_confirmation")
        await rectification.execute_update(
            RectificationWorkflow.confirm_set_aside, ConfirmSetAside(officer="officer-lin", reason="confirmed abusive")
        )

    async def withdrawn(self) -> None:
        handle = await self.case("social-insurance-transfer")
        await self.stage(handle, CaseStage.AWAITING_REVIEW)
        await handle.execute_update(CaseWorkflow.withdraw, Withdraw(reason="moving back", requested_by="applicant"))

    async def real_estate_approved(self) -> None:
        handle = await self.case("real-estate-registration")
        status = await self.stage(handle, CaseStage.CONSULTING)
        for consultation in status.consultations:
            await handle.execute_update(
                CaseWorkflow.department_opinion,
                DepartmentOpinion(department=consultation.department, officer="tax-01", agree=True),
            )
        await self.review(handle, "officer-zhou")
        await self.panel(handle, "officer-feng", "officer-he", "officer-zheng")
        await self.rate(handle, 5)

    async def medical_in_panel(self) -> None:
        handle = await self.case("medical-device-license")
        await self.review(handle, "officer-yang")
        await self.stage(handle, CaseStage.IN_PANEL)

    async def construction_consulting(self) -> None:
        await self.stage(await self.case("construction-permit"), CaseStage.CONSULTING)

    async def enterprise_awaiting_material(self) -> None:
        handle = await self.case("enterprise-opening", without=("seal-engraving-form",), signed=True)
        await self.stage(handle, CaseStage.AWAITING_REVIEW)

    async def suggestion_answered(self) -> None:
        no = f"{self.prefix}-S1"
        suggestion = Suggestion(
            suggestion_no=no, submitter_id="citizen-demo", topic="more seats in the waiting area",
            content="Waiting area seats are full by 9:30.", department="market-regulation",
        )
        handle = self.client.get_workflow_handle(await self.start.suggestion(self.client, self.settings, suggestion))
        await self.until(handle, SuggestionWorkflow.status, lambda s: s.due_at is not None)
        await handle.execute_update(
            SuggestionWorkflow.respond,
            Respond(department="market-regulation", officer="officer-li", adopted=True, measures="20 seats in December"),
        )

    async def risk_handled(self) -> None:
        no = f"{self.prefix}-R1"
        risk = RiskReport(
            risk_no=no, type="social", title="crowd at the hall entrance", probability=0.6, impact="high",
            responsible_department="market-regulation", owner="officer-li",
        )
        handle = self.client.get_workflow_handle(await self.start.risk(self.client, self.settings, risk))
        await self.until(handle, RiskWorkflow.status, lambda s: s.due_at is not None)
        await handle.execute_update(RiskWorkflow.acknowledge, Acknowledge(officer="officer-li", group="emergency-group-1"))
        await self.until(handle, RiskWorkflow.status, lambda s: s.entry.state == "awaiting_plan")
        await handle.execute_update(
            RiskWorkflow.submit_plan,
            SubmitPlan(officer="officer-li", plan="queue marshals, second entrance", due=datetime.now(timezone.utc) + timedelta(days=1)),
        )

    async def run(self) -> None:
        steps = self.script()
        with progress_bar(self.console) as bar:
            task = bar.add_task(steps[0][0], total=len(steps))
            for label, step in steps:
                bar.update(task, description=label)
                await step()
                bar.advance(task)
            bar.update(task, description="the day is over")

    def links(self) -> list[str]:
        base = f"{self.settings.ui_url}/namespaces/{self.settings.namespace}/workflows"
        filters = {
            "this demo's cases": f'WorkflowId STARTS_WITH "case-{self.prefix}"',
            "open cases before the panel": 'CaseStage = "in_panel" AND ExecutionStatus = "Running"',
            "owed deferred materials": "MaterialsPending = true",
            "what waits on officer-li": 'WaitingOn = "officer-li" AND ExecutionStatus = "Running"',
            "open rectifications": 'WorkflowType = "RectificationWorkflow" AND ExecutionStatus = "Running"',
            "risks": 'WorkflowType = "RiskWorkflow"',
        }
        return [f"{what}: {base}?query={quote(query)}" for what, query in filters.items()]


class DayProgress(Progress):
    """The day's progress: the step's label beside the bar (steps done of all, time) while it fits
    on the line, above it otherwise, wrapped at spaces: a label is never cut mid-word."""

    def get_renderables(self):
        for task in self.tasks:
            yield LabelledBar(Text(task.description), self.make_tasks_table([task]))


class LabelledBar(NamedTuple):
    label: Text
    bar: Table

    def __rich_console__(self, console: Console, options: ConsoleOptions):
        if self.label.cell_len + 1 + Measurement.get(console, options, self.bar).maximum <= options.max_width:
            beside = Table.grid(padding=(0, 1))
            beside.add_row(self.label, self.bar)
            yield beside
        else:
            yield self.label
            yield self.bar


def progress_bar(console: Console) -> Progress:
    return DayProgress(BarColumn(bar_width=20), MofNCompleteColumn(), TimeElapsedColumn(), console=console)


async def check_worker(client: Client, settings: Settings) -> None:
    """Refuse when no worker polls the task queue (within 15 s): every step would wait in vain."""
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    request = DescribeTaskQueueRequest(
        namespace=settings.namespace,
        task_queue=TaskQueue(name=settings.task_queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    for _ in range(30):  # a worker started a moment ago needs a few seconds to poll
        if (await client.workflow_service.describe_task_queue(request)).pollers:
            return
        await asyncio.sleep(0.5)
    raise NoWorker(f"no worker polls task queue {settings.task_queue!r}: start one (make worker, or make run)")
