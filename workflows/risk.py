"""RiskWorkflow: one risk from report to review, with hard timers (step 4).

Level from the matrix in data/risk.toml unless given. Two required steps, each with the level's
limit: the group convenes (`acknowledge`), then the handling plan (`submit_plan`). A missed step
notifies the next one up the department's chain, raises the level one step and restarts the
step's clock under the new level; the step stays required. `regrade` changes the level (the open
step's clock restarts under it). Closing: `review` (复盘), then `resolve`.
"""

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from contract import search
    from workflows import attributes
    from contract.converter import Unreadable
    from contract.risk import (
        Acknowledge,
        Regrade,
        Resolve,
        RiskEntry,
        RiskPolicy,
        RiskReport,
        RiskReviewRecord,
        RiskState,
        RiskStatus,
        SubmitPlan,
        risk_workflow_id,
    )
    from workflows import activities as act
    from workflows import notices
    from contract.common import SHANGHAI
    from workflows.clock import wait_until
    from workflows.feedback import deadline
    from workflows.trail import SYSTEM, Trail
    from workflows.guard import refuse_input
    from contract.org import SYSTEM_ACTOR
    from workflows.authority import refuse_risk_owner, risk_people
    from workflows.proof import current_proof
    from workflows.governed import Governed
    from workflows.twins import SignalTwins
    from workflows.waiting import Waiting

LAST_EVENTS = 10


@workflow.defn(name="RiskWorkflow")
class RiskWorkflow(SignalTwins, Governed):
    @workflow.init
    def __init__(self, report: RiskReport | Unreadable | None = None) -> None:
        self.refused_input = refuse_input(report, RiskReport, lambda r: risk_workflow_id(r.risk_no))
        if self.refused_input is not None:
            return  # the guard fails the run with it (workflows/guard.py)
        assert isinstance(report, RiskReport)
        self._report = report
        self._trail = Trail("risk", report.risk_no)
        self._waiting = Waiting()  # who the open step waits on, for the inbox
        self._policy: RiskPolicy | None = None
        self._entry: RiskEntry | None = None
        self._due: datetime | None = None
        self._overdue = False
        self._regraded = 0  # bumps on every regrade: the open step's clock restarts
        self._ack: Acknowledge | None = None
        self._plan: SubmitPlan | None = None
        self._review: RiskReviewRecord | None = None
        self._resolve: Resolve | None = None
        self._resolve_proof = None  # the proof of the resolve message, for the `resolved` row
        self._closed = False

    @workflow.run
    async def run(self, report: RiskReport | Unreadable | None = None) -> RiskStatus:
        policy = self._policy = await act.risk_policy()
        level = report.level or policy.level_for(report.probability, report.impact)
        self._entry = RiskEntry(
            risk_no=report.risk_no,
            source=report.source,
            type=report.type,
            title=report.title,
            responsible_department=report.responsible_department,
            owner=report.owner,
            level=level,
            state=RiskState.AWAITING_ACKNOWLEDGEMENT,
            case_no=report.case_no,
            reported_at=workflow.now(),
        )
        attributes.upsert([search.DEPARTMENT.value_set(report.responsible_department)])
        await self._save()
        # Who reported it, as the guard proved it (hallflow for a risk a case or the watch raised).
        proof = self.start_proof
        await self._trail.record(
            "reported",
            proof.actor if proof is not None else SYSTEM,
            proof=proof,
            details={
                "owner": report.owner,
                "level": level.value,
                "from_matrix": report.level is None,
                "probability": report.probability,
                "impact": report.impact,
                "source": report.source,
                "case_no": report.case_no,
            },
        )
        title, body = notices.risk_reported(report.risk_no, report.title, level.value)
        for who in (report.owner, report.responsible_department):
            await self._trail.notify(who, "risk_reported", title, body)

        await self._step("acknowledge", lambda: self._ack is not None)
        self._entry.state, self._entry.acknowledged_at = RiskState.AWAITING_PLAN, workflow.now()
        await self._save()
        await self._step("plan", lambda: self._plan is not None)
        self._entry.state, self._entry.plan_at = RiskState.HANDLING, workflow.now()
        self._due, self._overdue = None, False
        await self._save()

        await workflow.wait_condition(lambda: self._resolve is not None)
        assert self._resolve is not None
        self._entry.state, self._entry.resolved_at = RiskState.RESOLVED, workflow.now()
        await self._save()
        await self._trail.record("resolved", self._resolve.officer, self._resolve.summary, proof=self._resolve_proof)
        if report.source == "satisfaction":
            # Let the department's watch open another emergency if the rate is still over the line.
            try:
                await workflow.get_external_workflow_handle(f"satisfaction-{report.responsible_department}").signal(
                    "risk_closed", report.risk_no
                )
            except Exception as err:  # the watch may be gone; the risk is closed either way
                workflow.logger.warning("watch_not_told", extra={"risk_no": report.risk_no, "error": str(err)})
        self._closed = True
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.status()

    async def _step(self, step: str, done) -> None:
        """Wait for `step` under the level's limit; each miss escalates one rank up the chain and
        restarts the clock. The ladder ends: once every rank has been told of this step, the step
        stays open and overdue with no further timer, so an ignored risk's history stays bounded
        (docs/reliability.md). A regrade, a human act, restarts the ladder: the clock starts again
        under the new level, and as many misses as the chain has ranks may escalate again."""
        assert self._entry is not None and self._policy is not None
        ranks = len(self._policy.escalation_chain(self._entry.responsible_department))
        start, missed = self._entry.reported_at, 0
        while not done():
            regraded = self._regraded
            if missed >= ranks:
                await workflow.wait_condition(lambda: done() or self._regraded != regraded)
                start, missed = workflow.now(), 0  # regraded (or done): a new ladder under the new level
                continue
            self._due = await self._limit_from(start, step)
            self._set_attributes()
            summary = f"{step} due {self._due.astimezone(SHANGHAI):%Y-%m-%d %H:%M}"
            if await wait_until(lambda: done() or self._regraded != regraded, self._due, summary):
                start, missed = workflow.now(), 0  # regraded (or done): the clock restarts under the new level
                continue
            await self._escalate(step)
            missed += 1
            start = workflow.now()
        self._overdue, self._due = False, None

    async def _limit_from(self, start: datetime, step: str) -> datetime:
        assert self._policy is not None and self._entry is not None
        limits = self._policy.limits[self._entry.level]
        limit = limits.acknowledge if step == "acknowledge" else limits.plan
        if limit.hours is not None:
            return start + timedelta(hours=limit.hours)  # red: wall-clock hours
        assert limit.working_days is not None
        return await deadline(start, limit.working_days, f"{self._entry.level.value} {step} limit")

    async def _escalate(self, step: str) -> None:
        assert self._policy is not None and self._entry is not None
        chain = self._policy.escalation_chain(self._entry.responsible_department)
        to = chain[min(self._entry.escalations, len(chain) - 1)]
        before = self._entry.level
        self._entry.level = before.raised()
        self._entry.escalations += 1
        self._overdue = True
        await self._save()
        await self._trail.record(
            "step_missed",
            SYSTEM,
            details={"step": step, "escalated_to": to, "level_from": before.value, "level_to": self._entry.level.value},
        )
        title, body = notices.risk_escalated(self._report.risk_no, self._report.title, step, self._entry.level.value)
        await self._trail.notify(to, "risk_escalated", title, body)

    async def _save(self) -> None:
        assert self._entry is not None
        self._set_attributes()
        await act.record_risk(self._entry.model_copy())

    def _set_attributes(self) -> None:
        assert self._entry is not None
        updates = [
            search.RISK_LEVEL.value_set(self._entry.level.value),
            search.RISK_STATE.value_set(self._entry.state.value),
            search.STEP_OVERDUE.value_set(self._overdue),
        ]
        if self._due is not None:
            updates.append(search.STEP_DUE_AT.value_set(self._due))
        elif self._entry.state == RiskState.HANDLING and self._plan:
            # While handling, the wait is due when the plan said it would be carried out.
            updates.append(search.STEP_DUE_AT.value_set(self._plan.due))
        # The owner acts on every step; the department is accountable until the plan is in.
        who = {
            RiskState.AWAITING_ACKNOWLEDGEMENT: [self._entry.owner, self._entry.responsible_department],
            RiskState.AWAITING_PLAN: [self._entry.owner, self._entry.responsible_department],
            RiskState.HANDLING: [self._entry.owner],
        }
        self._waiting.publish(who.get(self._entry.state, []), along=updates)
        workflow.set_current_details(self._details_line())

    # ---- messages ---------------------------------------------------------------------------------

    @workflow.update(name="acknowledge")
    async def acknowledge(self, req: Acknowledge) -> RiskStatus:
        self._ack = req
        await self._trail.record("acknowledged", req.officer, details={"group": req.group})
        return self.status()

    @acknowledge.validator
    def _check_acknowledge(self, req: Acknowledge) -> None:
        self._require(RiskState.AWAITING_ACKNOWLEDGEMENT, "acknowledge")
        if self._ack is not None:
            raise ApplicationError("the group has already convened", type="AlreadyDone")

    @workflow.update(name="submit_plan")
    async def submit_plan(self, req: SubmitPlan) -> RiskStatus:
        self._plan = req
        await self._trail.record("plan_submitted", req.officer, req.plan, details={"carried_out_by": req.due.isoformat()})
        return self.status()

    @submit_plan.validator
    def _check_plan(self, req: SubmitPlan) -> None:
        self._require(RiskState.AWAITING_PLAN, "submit_plan")
        if self._plan is not None:
            raise ApplicationError("a plan has already been submitted", type="AlreadyDone")

    @workflow.update(name="regrade")
    async def regrade(self, req: Regrade) -> RiskStatus:
        assert self._entry is not None
        before, self._entry.level = self._entry.level, req.level
        self._regraded += 1
        await self._save()
        await self._trail.record("regraded", req.by, req.reason, details={"from": before.value, "to": req.level.value})
        return self.status()

    @regrade.validator
    def _check_regrade(self, req: Regrade) -> None:
        if self._entry is None or self._entry.state == RiskState.RESOLVED:
            raise ApplicationError("the risk is not open", type="WrongStage")
        if req.level == self._entry.level:
            raise ApplicationError(f"the risk is already {req.level.value}", type="Unchanged")

    @workflow.update(name="review")
    async def review(self, req: RiskReviewRecord) -> RiskStatus:
        self._review = req
        await self._trail.record(
            "reviewed",
            req.by,
            details={"cause": req.cause, "what_worked": req.what_worked, "what_changes": req.what_changes},
        )
        return self.status()

    @review.validator
    def _check_review(self, req: RiskReviewRecord) -> None:
        self._require(RiskState.HANDLING, "review")
        if self._review is not None:
            raise ApplicationError("the review (复盘) is already recorded", type="AlreadyDone")

    @workflow.update(name="resolve")
    async def resolve(self, req: Resolve) -> RiskStatus:
        self._resolve, self._resolve_proof = req, current_proof()  # recorded by run(), with this message's key
        await workflow.wait_condition(lambda: self._closed)
        return self.status()

    @resolve.validator
    def _check_resolve(self, req: Resolve) -> None:
        self._require(RiskState.HANDLING, "resolve")
        if self._review is None:
            raise ApplicationError(
                "a risk is resolved only after its review (复盘): send Update review {by, cause, what_worked, what_changes}",
                type="ReviewMissing",
            )
        if self._resolve is not None:
            raise ApplicationError("the risk is already being resolved", type="AlreadyDone")

    def _require(self, state: RiskState, update: str) -> None:
        current = self._entry.state if self._entry else None
        if current != state:
            raise ApplicationError(
                f"risk {self._report.risk_no} is {current.value if current else 'starting'}: "
                f"{update} is accepted only while {state.value}",
                type="WrongStage",
            )

    def who_may(self, message: str, req: Any) -> tuple[Iterable[str], str] | None:
        """Any officer may register a risk; its owner, the owner's head and every rank a missed step
        has reached act on it."""
        assert self.org is not None
        r, now = self._report, workflow.now()
        if message == "start":  # any officer in post, or hallflow (the watch, an overdue case)
            return [SYSTEM_ACTOR, *(o.id for o in self.org.officers if self.org.active(o.id, now))], "report a risk"
        reached: list[str] = []
        if self._policy is not None and self._entry is not None:
            chain = self._policy.escalation_chain(r.responsible_department)
            reached = chain[: min(self._entry.escalations, len(chain))]
        return risk_people(self.org, now, r.owner, r.responsible_department, reached), f"{message} risk {r.risk_no}"

    def check_start(self, req: RiskReport) -> None:
        """The responsible department must be in the directory, and the owner one who may own its
        risks (workflows/authority.py). hallflow's own reports (an overdue case, the watch: they
        name head:<department>) start as children and are not checked; one that hallflow signs
        is checked for its department only."""
        assert self.org is not None
        refuse_risk_owner(self.org, workflow.now(), req.owner, req.responsible_department,
                          department_only=self.sender == SYSTEM_ACTOR)

    SIGNAL_TWINS = {
        "acknowledge": (Acknowledge, _check_acknowledge),
        "submit_plan": (SubmitPlan, _check_plan),
        "regrade": (Regrade, _check_regrade),
        "review": (RiskReviewRecord, _check_review),
        "resolve": (Resolve, _check_resolve),
    }

    @workflow.query(name="status")
    def status(self) -> RiskStatus:
        assert self._entry is not None, "the risk is still being registered"
        return RiskStatus(
            entry=self._entry,
            due_at=self._due,
            overdue=self._overdue,
            plan=self._plan.plan if self._plan else "",
            reviewed=self._review is not None,
            last_events=self._trail.events[-LAST_EVENTS:],
            refused_signals=self.refused_signals,
            refused_signal_count=self.refused_signal_count,
        )

    def _details_line(self) -> str:
        assert self._entry is not None
        parts = [f"**{self._entry.level.value}**", self._entry.state.value, f"risk {self._report.risk_no}"]
        if self._due is not None:
            parts.append(("OVERDUE, due " if self._overdue else "due ") + f"{self._due.astimezone(SHANGHAI):%Y-%m-%d %H:%M}")
        return " · ".join(parts)
