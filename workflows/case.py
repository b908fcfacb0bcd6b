"""CaseWorkflow: one case (办件) from the single window to its end.

Acceptance follows 行政许可法 §32 and the deferral rules (容缺受理 + 告知承诺) of domain.md:
- unknown matter or a core material missing: not accepted, ONE notice lists everything missing;
- only non-core materials missing, commitment signed, no broken commitment on record:
  accepted with deferral; the materials must follow within the matter's deferral limit;
  a missed deadline terminates the case and records a broken commitment.
"""

from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from contract import search
    from contract.calendar import WorkingDays, WorkingDaysRequest
    from contract.case import (
        CaseApplication,
        CaseOutcome,
        CaseRegistration,
        CaseStage,
        CaseStatus,
        Event,
        Pause,
        SupplementMaterials,
        SupplementResult,
        Withdraw,
    )
    from contract.matter import Matter
    from contract.records import AuditEntry, BrokenCommitment, CaseEvent, CaseSnapshot, Notice
    from workflows import activities as act
    from workflows import notices
    from workflows.clock import end_of_day, local_date, wait_until

SYSTEM = "hallflow"
LAST_EVENTS = 10


@workflow.defn(name="CaseWorkflow")
class CaseWorkflow:
    @workflow.init
    def __init__(self, app: CaseApplication) -> None:
        self._app = app
        self._stage = CaseStage.RECEIVED
        self._matter: Matter | None = None
        self._received: set[str] = set(app.materials)
        self._deferred: set[str] = set()  # non-core materials still owed under the commitment
        self._accepted_at: datetime | None = None
        self._days: WorkingDays | None = None  # working days from acceptance to the statutory limit
        self._deferral_due: datetime | None = None
        self._withdrawal: Withdraw | None = None
        self._outcome: CaseOutcome | None = None
        self._closed = False  # the final stage is in the audit trail
        self._events: list[Event] = []
        self._pauses: list[Pause] = []

    # ---- the procedure -------------------------------------------------------------------

    @workflow.run
    async def run(self, app: CaseApplication) -> CaseOutcome:
        workflow.upsert_search_attributes(
            [
                search.CASE_STAGE.value_set(self._stage),
                search.MATTER_CODE.value_set(app.matter_code),
                search.HALL.value_set(app.hall),
            ]
        )
        await act.register_case(
            CaseRegistration(
                case_no=app.case_no,
                matter_code=app.matter_code,
                hall=app.hall,
                clerk=app.clerk,
                applicant=app.applicant,
                workflow_id=workflow.info().workflow_id,
                received_at=workflow.now(),
            )
        )
        await self._record("received", app.clerk, details={"materials": sorted(self._received)})

        matter = await act.get_matter(app.matter_code)
        if matter is None:
            return await self._not_accept([], [f"未知事项编码 {app.matter_code}（unknown matter）"])
        self._matter = matter
        workflow.upsert_search_attributes([search.DEPARTMENT.value_set(matter.lead_department)])

        refusal = await self._acceptance_check(matter)
        if refusal is not None:
            missing, reasons = refusal
            return await self._not_accept(missing, reasons)
        await self._accept(matter)

        if self._deferred and self._withdrawal is None:
            await self._collect_deferred(matter)
        if self._stage == CaseStage.AWAITING_MATERIALS and self._withdrawal is None:
            await self._enter(CaseStage.AWAITING_REVIEW, SYSTEM, "materials_complete")
        if not self._stage.is_final:
            # Step 2 (two-tier approval) takes over here; until then the case waits for review.
            await workflow.wait_condition(lambda: self._withdrawal is not None)
            await self._close_withdrawn()
        await workflow.wait_condition(workflow.all_handlers_finished)
        assert self._outcome is not None
        return self._outcome

    async def _acceptance_check(self, matter: Matter) -> tuple[list[str], list[str]] | None:
        """Return (missing material codes, reasons) when the case may not be accepted."""
        missing_core = matter.core_codes - self._received
        missing_other = matter.material_codes - matter.core_codes - self._received
        everything_missing = sorted(missing_core | missing_other)
        if missing_core:
            return everything_missing, ["缺少核心材料，不能容缺受理（core materials missing）"]
        if not missing_other:
            return None
        if not self._app.commitment_signed:
            return everything_missing, ["容缺受理须签署告知承诺书（deferral needs a signed commitment）"]
        if await act.has_broken_commitment(self._app.applicant.applicant_id):
            return everything_missing, ["申请人有承诺失信记录，不适用容缺受理（broken commitment on record）"]
        self._deferred = missing_other
        return None

    async def _accept(self, matter: Matter) -> None:
        self._accepted_at = workflow.now()
        self._days = await act.working_days_after(
            WorkingDaysRequest(start=self._accepted_at, days=matter.statutory_days),
            summary=f"statutory limit: {matter.statutory_days} working days",
        )
        if self._deferred:
            self._deferral_due = end_of_day(self._days.days[matter.deferral_days - 1])
        workflow.upsert_search_attributes([search.CASE_DUE_AT.value_set(self.promised_due)])
        stage = CaseStage.AWAITING_MATERIALS if self._deferred else CaseStage.AWAITING_REVIEW
        await self._enter(
            stage,
            self._app.clerk,
            "accepted_with_deferral" if self._deferred else "accepted",
            details={
                "promised_due_at": self.promised_due.isoformat(),
                "statutory_due_at": self.statutory_due.isoformat(),
                "calendar_version": self._days.calendar_version,
                "deferred": sorted(self._deferred),
            },
        )
        if self._deferred:
            assert self._deferral_due is not None
            title, body = notices.deferral_accepted(
                self._app.case_no, matter.material_names(self._deferred), self._deferral_due
            )
            await self._notify_applicant("deferral_accepted", title, body)
        else:
            title, body = notices.accepted(self._app.case_no, matter.name, self.promised_due)
            await self._notify_applicant("accepted", title, body)

    async def _collect_deferred(self, matter: Matter) -> None:
        """Wait for the deferred materials; remind one working day before; terminate when missed."""
        assert self._days is not None and self._deferral_due is not None
        if matter.deferral_days >= 2:
            remind_at = end_of_day(self._days.days[matter.deferral_days - 2])
        else:
            remind_at = end_of_day(local_date(self._days.start))
        settled = lambda: not self._deferred or self._withdrawal is not None  # noqa: E731
        due_day = local_date(self._deferral_due - timedelta(seconds=1))

        if not await wait_until(settled, remind_at, f"deferral reminder {due_day}"):
            title, body = notices.deferral_reminder(
                self._app.case_no, matter.material_names(self._deferred), self._deferral_due
            )
            await self._notify_applicant("deferral_reminder", title, body)
            await self._record("deferral_reminded", SYSTEM, details={"missing": sorted(self._deferred)})
        if await wait_until(settled, self._deferral_due, f"deferral deadline {due_day}"):
            return

        # 告知承诺 broken: terminate (终止办理) and keep a credit record against the applicant.
        missing = sorted(self._deferred)
        await act.record_broken_commitment(
            BrokenCommitment(
                key=self._key(),
                applicant_id=self._app.applicant.applicant_id,
                case_no=self._app.case_no,
                at=workflow.now(),
            )
        )
        self._outcome = CaseOutcome(
            case_no=self._app.case_no,
            stage=CaseStage.TERMINATED,
            reason="deferral deadline missed",
            missing_materials=missing,
            closed_at=workflow.now(),
        )
        await self._enter(
            CaseStage.TERMINATED, SYSTEM, "terminated", reason="deferral deadline missed", details={"missing": missing}
        )
        self._closed = True
        title, body = notices.terminated(self._app.case_no, matter.material_names(missing))
        await self._notify_applicant("case_terminated", title, body)
        await self._notify(matter.lead_department, "case_terminated", title, body)

    async def _not_accept(self, missing: list[str], reasons: list[str]) -> CaseOutcome:
        self._outcome = CaseOutcome(
            case_no=self._app.case_no,
            stage=CaseStage.NOT_ACCEPTED,
            reason="; ".join(reasons),
            missing_materials=missing,
            closed_at=workflow.now(),
        )
        await self._enter(
            CaseStage.NOT_ACCEPTED, self._app.clerk, "not_accepted", reason="; ".join(reasons), details={"missing": missing}
        )
        self._closed = True
        names = self._matter.material_names(missing) if self._matter else []
        title, body = notices.not_accepted(self._app.case_no, names, reasons)
        await self._notify_applicant("not_accepted", title, body)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._outcome

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

    # ---- messages from outside ---------------------------------------------------------------

    @workflow.update(name="supplement_materials")
    async def supplement_materials(self, req: SupplementMaterials) -> SupplementResult:
        new = set(req.materials) & self._deferred
        self._received |= new
        self._deferred -= new
        await self._record(
            "materials_supplemented",
            req.submitted_by,
            details={"materials": sorted(new), "still_missing": sorted(self._deferred)},
        )
        return SupplementResult(still_missing=sorted(self._deferred), complete=not self._deferred)

    @supplement_materials.validator
    def _check_supplement(self, req: SupplementMaterials) -> None:
        if self._stage != CaseStage.AWAITING_MATERIALS or self._matter is None:
            raise ApplicationError(
                f"case {self._app.case_no} is {self._stage.value}: supplement_materials is accepted only "
                "while deferred materials are awaited (stage awaiting_materials)",
                type="WrongStage",
            )
        unknown = sorted(set(req.materials) - self._matter.material_codes)
        if unknown:
            raise ApplicationError(
                f"unknown material codes {unknown} for matter {self._matter.code}; "
                f"valid codes: {sorted(self._matter.material_codes)}",
                type="UnknownMaterial",
            )
        not_owed = sorted(set(req.materials) - self._deferred)
        if not_owed:
            raise ApplicationError(
                f"materials {not_owed} are not awaited (already received); still missing: {sorted(self._deferred)}",
                type="MaterialNotAwaited",
            )

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
        if self._withdrawal is not None:
            raise ApplicationError(f"case {self._app.case_no} is already being withdrawn", type="WrongStage")

    @workflow.query(name="status")
    def status(self) -> CaseStatus:
        used = left = None
        if self._days is not None and self._matter is not None:
            today = local_date(workflow.now())
            used = sum(1 for d in self._days.days if d <= today)
            left = self._matter.promised_days - used
        return CaseStatus(
            case_no=self._app.case_no,
            stage=self._stage,
            matter_code=self._app.matter_code,
            matter_name=self._matter.name if self._matter else None,
            department=self._matter.lead_department if self._matter else None,
            hall=self._app.hall,
            accepted_at=self._accepted_at,
            promised_due_at=self.promised_due if self._days else None,
            statutory_due_at=self.statutory_due if self._days else None,
            working_days_used=used,
            working_days_left=left,
            calendar_version=self._days.calendar_version if self._days else None,
            missing_materials=sorted(self._deferred),
            deferral_due_at=self._deferral_due,
            pauses=self._pauses,
            last_events=self._events[-LAST_EVENTS:],
        )

    # ---- helpers -----------------------------------------------------------------------------

    @property
    def promised_due(self) -> datetime:
        assert self._days is not None and self._matter is not None
        return end_of_day(self._days.days[self._matter.promised_days - 1])

    @property
    def statutory_due(self) -> datetime:
        assert self._days is not None
        return self._days.due_at

    def _key(self) -> str:
        # Deterministic on replay, unique per record: the idempotency key activities dedupe on.
        return str(workflow.uuid4())

    async def _enter(
        self, stage: CaseStage, actor: str, action: str, reason: str = "", details: dict[str, Any] | None = None
    ) -> None:
        self._stage = stage
        workflow.upsert_search_attributes([search.CASE_STAGE.value_set(stage)])
        workflow.set_current_details(self._details_line())
        workflow.logger.info("case_stage", extra={"case_no": self._app.case_no, "stage": stage.value})
        await self._record(action, actor, reason, details)

    async def _record(self, action: str, actor: str, reason: str = "", details: dict[str, Any] | None = None) -> None:
        info = workflow.info()
        now = workflow.now()
        self._events.append(Event(at=now, action=action, actor=actor, reason=reason))
        await act.record_case_event(
            CaseEvent(
                audit=AuditEntry(
                    key=self._key(),
                    subject_type="case",
                    subject_id=self._app.case_no,
                    action=action,
                    actor=actor,
                    reason=reason,
                    at=now,
                    workflow_id=info.workflow_id,
                    run_id=info.run_id,
                    details=details or {},
                ),
                case=self._snapshot(),
            )
        )

    def _snapshot(self) -> CaseSnapshot:
        return CaseSnapshot(
            case_no=self._app.case_no,
            matter_code=self._app.matter_code,
            hall=self._app.hall,
            stage=self._stage.value,
            department=self._matter.lead_department if self._matter else None,
            accepted_at=self._accepted_at,
            promised_due_at=self.promised_due if self._days else None,
            statutory_due_at=self.statutory_due if self._days else None,
            deferral_due_at=self._deferral_due,
            closed_at=self._outcome.closed_at if self._outcome else None,
            outcome=self._outcome.stage.value if self._outcome else None,
        )

    def _details_line(self) -> str:
        parts = [f"**{self._stage.value}**", f"case {self._app.case_no}", self._app.matter_code]
        if self._deferred and self._deferral_due:
            parts.append(f"{len(self._deferred)} deferred material(s) due {local_date(self._deferral_due - timedelta(seconds=1))}")
        if self._days is not None and not self._stage.is_final:
            parts.append(f"promised by {local_date(self.promised_due - timedelta(seconds=1))}")
        return " · ".join(parts)

    async def _notify_applicant(self, kind: str, title: str, body: str) -> None:
        await self._notify(f"applicant:{self._app.applicant.applicant_id}", kind, title, body)

    async def _notify(self, recipient: str, kind: str, title: str, body: str) -> None:
        await act.notify(
            Notice(
                key=self._key(),
                recipient=recipient,
                kind=kind,
                subject_type="case",
                subject_id=self._app.case_no,
                title=title,
                body=body,
                at=workflow.now(),
            )
        )
