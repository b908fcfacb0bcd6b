"""Phase 3, decide: the route's decision carried out, and the limits watched until then.

An approval is issued only once every deferred material has arrived (approved_pending_materials
until then); a rejection gives its reasons. The applicant may withdraw before a decision. While
the case is open its promised limit is watched: yellow at 80% of it, red once overdue, and an
overdue case raises one execution risk of its department (step 4).
"""

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from contract import search
    from workflows import attributes
    from contract.approval import Decision
    from contract.case import CaseOutcome, CaseStage, Withdraw
    from contract.common import SHANGHAI
    from contract.risk import RiskReport, risk_workflow_id
    from workflows import notices
    from workflows.clock import wait_until
    from workflows.detached import start_detached
    from workflows.trail import SYSTEM


class DecidePhase:
    def _stopping(self) -> bool:
        return self._withdrawal is not None or self._stage.is_final

    async def decide(self, decision: Decision | None) -> None:
        """Issue or reject as decided; close a withdrawn case."""
        if decision is not None and not self._stopping():
            self._decision = decision
            if decision.result == "reject":
                await self._close_decided(CaseStage.REJECTED, decision)
            else:
                if not self._materials_complete:
                    await self._enter(CaseStage.APPROVED_PENDING_MATERIALS, decision.by, "approved_pending_materials")
                    await workflow.wait_condition(lambda: self._materials_complete or self._stopping())
                if not self._stopping():
                    await self._close_decided(CaseStage.APPROVED, decision)
        if self._withdrawal is not None and not self._stage.is_final:
            await self._close_withdrawn()

    async def _close_decided(self, stage: CaseStage, decision: Decision) -> None:
        assert self._clock is not None and self._matter is not None
        used = self._clock.days_used(workflow.now())
        self._outcome = CaseOutcome(
            case_no=self._app.case_no,
            stage=stage,
            reason=decision.reasons,
            closed_at=workflow.now(),
            decision=decision,
            working_days_used=used,
            promised_days=self._matter.promised_days,
            statutory_days=self._matter.statutory_days,
        )
        await self._enter(
            stage,
            decision.by,
            "approved" if stage == CaseStage.APPROVED else "rejected",
            reason=decision.reasons,
            details={
                "decided_by": decision.by,
                "inputs": decision.inputs,
                "working_days_used": used,
                "promised_days": self._matter.promised_days,
                "statutory_days": self._matter.statutory_days,
                "on_time": workflow.now() <= self.promised_due,
            },
        )
        self._closed = True
        if stage == CaseStage.APPROVED:
            title, body = notices.approved(self._app.case_no, self._matter.name)
            await self._notify_applicant("result_issued", title, body)
        else:
            title, body = notices.rejected(self._app.case_no, decision.reasons)
            await self._notify_applicant("case_rejected", title, body)

    async def _close_withdrawn(self) -> None:
        assert self._withdrawal is not None
        self._outcome = CaseOutcome(
            case_no=self._app.case_no,
            stage=CaseStage.WITHDRAWN,
            reason=self._withdrawal.reason,
            missing_materials=sorted(self._deferred),
            closed_at=workflow.now(),
        )
        await self._enter(CaseStage.WITHDRAWN, self._withdrawal.requested_by, "withdrawn", reason=self._withdrawal.reason)
        self._closed = True
        title, body = notices.withdrawn(self._app.case_no)
        await self._notify_applicant("case_withdrawn", title, body)

    async def watch_deadlines(self) -> None:
        """Yellow at 80% of the promised limit, red once overdue; re-armed when a pause moves them."""
        assert self._clock is not None and self._matter is not None
        clock = self._clock
        while not self._stage.is_final and self._warning != "red":
            if clock.paused_since is not None:
                await workflow.wait_condition(lambda: clock.paused_since is None or self._stage.is_final)
                continue
            level, at = ("yellow", clock.warn_at) if self._warning is None else ("red", clock.promised_due)
            revision = clock.revision
            moved = lambda: self._stage.is_final or clock.revision != revision  # noqa: E731
            if await wait_until(moved, at, f"{level} warning {at.astimezone(SHANGHAI):%Y-%m-%d %H:%M}"):
                continue
            self._warning = level
            attributes.upsert(
                [search.RISK_LEVEL.value_set(level), search.CASE_OVERDUE.value_set(level == "red")]
            )
            title, body = notices.deadline(self._app.case_no, level, self.promised_due)
            await self._trail.notify(self._matter.lead_department, f"deadline_{level}", title, body)
            await self._trail.record(
                f"deadline_{level}", SYSTEM, details={"promised_due_at": self.promised_due.isoformat()}
            )
            if level == "red":
                await self._raise_overdue_risk()

    async def _raise_overdue_risk(self) -> None:
        """An overdue case is an execution risk of its department: one per case (the id sees to it)."""
        assert self._matter is not None
        risk_no = f"case-{self._app.case_no}"
        report = RiskReport(
            risk_no=risk_no,
            source="overdue_case",
            type="execution",
            title=f"case {self._app.case_no} ({self._matter.code}) past its promised limit",
            probability=1.0,  # it has happened
            impact="low",  # one case; the matrix makes it yellow (data/risk.toml)
            responsible_department=self._matter.lead_department,
            owner=f"head:{self._matter.lead_department}",
            case_no=self._app.case_no,
        )
        summary = f"overdue case {self._app.case_no} · {self._matter.lead_department}"
        details = (
            f"Case **{self._app.case_no}** (matter `{self._matter.code}`, hall {self._app.hall}) passed its promised "
            f"limit; owner `head:{self._matter.lead_department}`."
        )
        if await start_detached("RiskWorkflow", report, risk_workflow_id(risk_no), summary, details):
            await self._trail.record("risk_raised", SYSTEM, details={"workflow_id": risk_workflow_id(risk_no)})

    # ---- Update: withdraw ------------------------------------------------------------------------

    @workflow.update(name="withdraw")
    async def withdraw(self, req: Withdraw) -> CaseOutcome:
        self._withdrawal = req
        # Answer once the withdrawal (or another end reached meanwhile) is in the audit trail.
        await workflow.wait_condition(lambda: self._closed)
        assert self._outcome is not None
        return self._outcome

    @withdraw.validator
    def _check_withdraw(self, req: Withdraw) -> None:
        if self._stage.is_final:
            raise ApplicationError(f"case {self._app.case_no} has already ended ({self._stage.value})", type="WrongStage")
        if self._decision is not None:
            raise ApplicationError(
                f"case {self._app.case_no} has been decided ({self._decision.result}, {self._stage.value}): "
                "withdraw is accepted only before a decision",
                type="WrongStage",
            )
        if self._withdrawal is not None:
            raise ApplicationError(f"case {self._app.case_no} is already being withdrawn", type="WrongStage")
