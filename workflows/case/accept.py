"""Phase 1, accept: the single window's acceptance check and the deferred materials.

行政许可法 §32 and the deferral rules (容缺受理 + 告知承诺) of domain.md:
- unknown matter or a core material missing: not accepted, ONE notice lists everything missing;
- only non-core materials missing, commitment signed, no broken commitment on record: accepted
  with deferral; the materials must follow within the matter's deferral limit, reminded one
  working day before; a missed deadline terminates the case and records a broken commitment.
"""

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from contract import search
    from workflows import attributes
    from contract.calendar import WorkingDaysRequest
    from contract.case import CaseApplication, CaseOutcome, CaseRegistration, CaseStage, SupplementMaterials, SupplementResult
    from contract.matter import Matter
    from contract.terms import CaseTermsRequest
    from workflows import activities as act
    from workflows import notices
    from workflows.clock import CaseClock, end_of_day, local_date, wait_until
    from workflows.trail import SYSTEM


class AcceptPhase:
    async def accept(self) -> Matter | None:
        """Register the case and check it; the matter when accepted, None when not."""
        app = self._app
        workflow.set_current_details(self._details_line())
        attributes.upsert(
            [
                search.CASE_STAGE.value_set(self._stage),
                search.MATTER_CODE.value_set(app.matter_code),
                search.HALL.value_set(app.hall),
            ]
        )
        self._trail.attach(
            registration=CaseRegistration(
                case_no=app.case_no,
                matter_code=app.matter_code,
                hall=app.hall,
                clerk=app.clerk,
                applicant=app.applicant,
                workflow_id=workflow.info().workflow_id,
                received_at=workflow.now(),
                run_id=workflow.info().run_id,
            )
        )  # written with the `received` row, in the same step
        await self._trail.record("received", app.clerk, details={"materials": sorted(self._received - self._early)})
        self._registered = True  # what is recorded from now on comes after `received`

        matter = await self._check(app)
        # The registration is written first in the acceptance's step (record_step): a case number
        # already taken fails it before the step's rows and notices, and fails the run here.
        await self._trail.settle()
        return matter

    async def _check(self, app: CaseApplication) -> Matter | None:
        # The credit record matters only where materials may be deferred: under a signed commitment.
        applicant = app.applicant.applicant_id if app.commitment_signed else None
        terms = await act.case_terms(
            CaseTermsRequest(matter_code=app.matter_code, start=workflow.now(), applicant_id=applicant)
        )
        self._broken_commitment = bool(terms.broken_commitment)
        self._feedback = terms.feedback  # the rating window, when the case ends, is counted by these
        self._schedule = terms.schedule
        matter = terms.matter
        if matter is None:
            await self._not_accept([], [f"未知事项编码 {app.matter_code}（unknown matter）"])
            return None
        self._matter = matter
        attributes.upsert([search.DEPARTMENT.value_set(matter.lead_department)])
        refusal = self._acceptance_check(matter)
        if refusal is not None:
            await self._not_accept(*refusal)
            return None
        await self._accept_case(matter)
        return matter

    def _acceptance_check(self, matter: Matter) -> tuple[list[str], list[str]] | None:
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
        if self._broken_commitment:
            return everything_missing, ["申请人有承诺失信记录，不适用容缺受理（broken commitment on record）"]
        self._deferred = missing_other
        self._materials_complete = False
        return None

    async def _accept_case(self, matter: Matter) -> None:
        self._accepted_at = workflow.now()
        # Through the statutory limit and a rating window after it, so that the panel's and the
        # rating's deadlines are read off it too (workflows/clock.within), without a lookup each.
        days = matter.statutory_days + self._feedback.rating_window_days
        self._days = await act.working_days_after(
            WorkingDaysRequest(start=self._accepted_at, days=days),
            summary=f"statutory limit: {matter.statutory_days} working days",
            known=self._schedule,
        )
        self._clock = CaseClock(self._days, matter.promised_days, matter.statutory_days)
        if self._deferred:
            self._deferral_due = end_of_day(self._days.days[matter.deferral_days - 1])
        attributes.upsert(
            [search.CASE_DUE_AT.value_set(self.promised_due), search.MATERIALS_PENDING.value_set(bool(self._deferred))]
        )
        await self._enter(
            CaseStage.ACCEPTED,
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

    async def _not_accept(self, missing: list[str], reasons: list[str]) -> None:
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

    async def collect_deferred(self, matter: Matter) -> None:
        """Wait for the deferred materials; remind one working day before; terminate when missed."""
        assert self._days is not None and self._deferral_due is not None
        if matter.deferral_days >= 2:
            remind_at = end_of_day(self._days.days[matter.deferral_days - 2])
        else:
            remind_at = end_of_day(local_date(self._days.start))
        settled = lambda: not self._deferred or self._withdrawal is not None or self._stage.is_final  # noqa: E731
        due_day = local_date(self._deferral_due - timedelta(seconds=1))

        if not await wait_until(settled, remind_at, f"deferral reminder {due_day}"):
            title, body = notices.deferral_reminder(
                self._app.case_no, matter.material_names(self._deferred), self._deferral_due
            )
            await self._notify_applicant("deferral_reminder", title, body)
            await self._trail.record("deferral_reminded", SYSTEM, details={"missing": sorted(self._deferred)})
        if await wait_until(settled, self._deferral_due, f"deferral deadline {due_day}"):
            return  # supplement_materials records materials_complete itself

        # 告知承诺 broken: terminate (终止办理) and keep a credit record against the applicant.
        missing = sorted(self._deferred)
        self._trail.broken_commitment(self._app.applicant.applicant_id, self._app.case_no)
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
        await self._trail.notify(matter.lead_department, "case_terminated", title, body)

    # ---- Update: supplement_materials ---------------------------------------------------------

    @workflow.update(name="supplement_materials")
    async def supplement_materials(self, req: SupplementMaterials) -> SupplementResult:
        if self._stage == CaseStage.RECEIVED:
            return await self._supplement_before_acceptance(req)
        new = set(req.materials) & self._deferred
        self._received |= new
        self._deferred -= new
        self._publish_waiting()
        await self._trail.record(
            "materials_supplemented",
            req.submitted_by,
            details={"materials": sorted(new), "still_missing": sorted(self._deferred)},
        )
        if not self._deferred:
            attributes.upsert([search.MATERIALS_PENDING.value_set(False)])
            await self._trail.record("materials_complete", req.submitted_by)
            self._materials_complete = True  # the result may be issued now, after this record
        return SupplementResult(still_missing=sorted(self._deferred), complete=not self._deferred)

    async def _supplement_before_acceptance(self, req: SupplementMaterials) -> SupplementResult:
        """Materials sent with the start (update-with-start) or before acceptance was decided: the
        acceptance check counts them, so they can turn a not-accepted or deferred case into a
        complete one. Codes the matter turns out not to have are reported back, never used."""
        given = set(req.materials)
        self._received |= given
        self._early |= given
        # The check may have decided a deferral already, with acceptance still being recorded.
        self._deferred -= given
        if not self._deferred:
            self._materials_complete = True
        await workflow.wait_condition(lambda: self._registered)
        await self._trail.record(
            "materials_supplemented", req.submitted_by, details={"materials": sorted(given), "before_acceptance": True}
        )
        await workflow.wait_condition(lambda: self._stage != CaseStage.RECEIVED)
        unknown = sorted(given - self._matter.material_codes) if self._matter else sorted(given)
        if self._outcome is not None and self._outcome.stage == CaseStage.NOT_ACCEPTED:
            return SupplementResult(still_missing=self._outcome.missing_materials, complete=False, not_used=unknown)
        return SupplementResult(still_missing=sorted(self._deferred), complete=not self._deferred, not_used=unknown)

    @supplement_materials.validator
    def _check_supplement(self, req: SupplementMaterials) -> None:
        if self._stage == CaseStage.RECEIVED and self._withdrawal is None:
            # Acceptance is not decided yet (the matter is still being looked up).
            given = sorted(set(req.materials) & set(self._app.materials))
            if given:
                raise ApplicationError(
                    f"materials {given} were handed in with the application already", type="MaterialNotAwaited"
                )
            again = sorted(set(req.materials) & self._early)
            if again:
                raise ApplicationError(f"materials {again} were handed in already", type="MaterialNotAwaited")
            return
        awaited = bool(self._deferred) and not self._stage.is_final and self._withdrawal is None
        if not awaited or self._matter is None:
            raise ApplicationError(
                f"case {self._app.case_no} is {self._stage.value}: supplement_materials is accepted only "
                "while deferred materials are awaited (status.missing_materials is not empty)",
                type="WrongStage",
            )
        self._require_known_materials(req.materials)
        not_owed = sorted(set(req.materials) - self._deferred)
        if not_owed:
            raise ApplicationError(
                f"materials {not_owed} are not awaited (already received); still missing: {sorted(self._deferred)}",
                type="MaterialNotAwaited",
            )

    def _require_known_materials(self, codes: list[str]) -> None:
        assert self._matter is not None
        unknown = sorted(set(codes) - self._matter.material_codes)
        if unknown:
            raise ApplicationError(
                f"unknown material codes {unknown} for matter {self._matter.code}; "
                f"valid codes: {sorted(self._matter.material_codes)}",
                type="UnknownMaterial",
            )
