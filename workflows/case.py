"""CaseWorkflow: one case (办件) from the single window to its end.

Acceptance follows 行政许可法 §32 and the deferral rules (容缺受理 + 告知承诺) of domain.md:
- unknown matter or a core material missing: not accepted, ONE notice lists everything missing;
- only non-core materials missing, commitment signed, no broken commitment on record:
  accepted with deferral; the materials must follow within the matter's deferral limit;
  a missed deadline terminates the case and records a broken commitment.

Then the matter's route decides it (step 2, behind the `two-tier-approval` patch): automatic
approval (秒批), or parallel department opinions (并联审批) → comprehensive review (综合研判) →
collective decision (集体决策); the clock pauses while the case is returned for correction (补正);
yellow at 80% of the promised limit, red when overdue. The result is issued only once every
deferred material has arrived.
"""

import asyncio

from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from contract import search
    from contract.common import SHANGHAI
    from contract.approval import (
        CastVote,
        Consultation,
        Decision,
        DepartmentOpinion,
        OpinionState,
        Resubmit,
        Review,
        Transfer,
        Urge,
        Vote,
    )
    from contract.calendar import WorkingDays, WorkingDaysBetween, WorkingDaysRequest
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
    from contract.rating import Rate, Rating, RatingRecord, RectificationOrder
    from contract.risk import RiskReport, risk_workflow_id
    from contract.records import AuditEntry, BrokenCommitment, CaseEvent, CaseSnapshot, Notice
    from workflows import activities as act
    from workflows import notices
    from workflows.approval import Tally, consultations_settled, disagreements
    from workflows.clock import CaseClock, end_of_day, local_date, wait_until
    from workflows.detached import start_detached
    from workflows.twins import SignalTwins
    from workflows.waiting import Waiting

SYSTEM = "hallflow"
LAST_EVENTS = 10
# Cases started before this patch wait in awaiting_review after their deferred materials.
APPROVAL_PATCH = "two-tier-approval"
AUTOMATIC_RULE = "rule:complete-materials"
# Cases started before this patch complete at their end; since, they stay open for a rating (好差评).
RATING_PATCH = "rating-window"
# Since this patch an overdue case raises one risk (step 4), RiskWorkflow `risk-case-<case_no>`.
OVERDUE_RISK_PATCH = "overdue-risk"
# Since this patch every rating also goes to its department's satisfaction watch (step 4).
SATISFACTION_WATCH_PATCH = "satisfaction-watch"


@workflow.defn(name="CaseWorkflow")
class CaseWorkflow(SignalTwins):
    @workflow.init
    def __init__(self, app: CaseApplication) -> None:
        self._app = app
        self._stage = CaseStage.RECEIVED
        self._matter: Matter | None = None
        self._received: set[str] = set(app.materials)
        # Handed in by supplement_materials before acceptance (update-with-start): the acceptance
        # check counts them; the `received` entry lists the application's own.
        self._early: set[str] = set()
        self._registered = False  # the `received` entry is in the audit trail
        self._deferred: set[str] = set()  # non-core materials still owed under the commitment
        self._materials_complete = True  # v2: no material owed, and that is in the audit trail
        self._accepted_at: datetime | None = None
        self._days: WorkingDays | None = None  # working days from acceptance to the statutory limit
        self._deferral_due: datetime | None = None
        self._withdrawal: Withdraw | None = None
        self._outcome: CaseOutcome | None = None
        self._closed = False  # the final stage is in the audit trail
        self._events: list[Event] = []
        self._pauses: list[Pause] = []
        # Step 2: the approval route.
        self._v2 = False
        self._clock: CaseClock | None = None
        self._records = asyncio.Lock()  # keeps audit rows and the case row in workflow order
        self._consultations: list[Consultation] = []
        self._reviewer: str | None = None
        self._review: Review | None = None
        self._approved_by: str | None = None
        self._resubmission: Resubmit | None = None
        self._tally: Tally | None = None
        self._vote_closes_at: datetime | None = None
        self._warning: str | None = None
        self._decision: Decision | None = None
        self._last_urge_day = None
        # Step 3: the rating window after the end.
        self._rating_window = False
        self._overdue_risk = False
        self._rating_open_until: datetime | None = None
        self._rating: Rating | None = None
        # Step 5: who the case waits on, for the inbox (patch `waiting-on`).
        self._waiting = Waiting()

    # ---- the procedure -------------------------------------------------------------------

    @workflow.run
    async def run(self, app: CaseApplication) -> CaseOutcome:
        self._v2 = workflow.patched(APPROVAL_PATCH)
        self._rating_window = workflow.patched(RATING_PATCH)
        self._overdue_risk = workflow.patched(OVERDUE_RISK_PATCH)
        self._waiting.start()
        workflow.set_current_details(self._details_line())
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
        await self._record("received", app.clerk, details={"materials": sorted(self._received - self._early)})
        self._registered = True

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
        if self._v2:
            await self._decide(matter)
        else:
            await self._wait_for_review_before_step_2(matter)
        await self._collect_rating()
        await workflow.wait_condition(workflow.all_handlers_finished)
        assert self._outcome is not None
        return self._outcome

    async def _collect_rating(self) -> None:
        """好差评: once the case has ended, the applicant may rate it within the window."""
        if not self._rating_window:
            return
        policy = await act.feedback_policy()
        days = await act.working_days_after(
            WorkingDaysRequest(start=workflow.now(), days=policy.rating_window_days),
            summary=f"rating window: {policy.rating_window_days} working days",
        )
        self._rating_open_until = days.due_at
        workflow.set_current_details(self._details_line())
        self._publish_waiting()
        title, body = notices.rating_invited(self._app.case_no, self._rating_open_until)
        await self._notify_applicant("rating_invited", title, body)
        day = local_date(days.due_at - timedelta(seconds=1))
        if await wait_until(lambda: self._rating is not None, days.due_at, f"rating window closes {day}"):
            rating = self._rating
            assert rating is not None and self._outcome is not None
            self._outcome.rating = rating.score
            if workflow.patched(SATISFACTION_WATCH_PATCH):
                await act.send_rating_to_watch(rating)
            if rating.bad:
                await self._start_rectification(rating, policy.verify_days, policy.rectify_days)
        else:
            await self._record("rating_window_closed", SYSTEM, details={"rated": False})
        self._rating_open_until = None
        workflow.set_current_details(self._details_line())
        self._publish_waiting()

    async def _start_rectification(self, rating: Rating, verify_days: int, rectify_days: int) -> None:
        """A bad review (差评) goes to the department that handled the case; it outlives the case."""
        order = RectificationOrder(
            case_no=self._app.case_no,
            matter_code=self._app.matter_code,
            department=rating.department,
            hall=self._app.hall,
            rating=rating,
            applicant_id=self._app.applicant.applicant_id,
            verify_days=verify_days,
            rectify_days=rectify_days,
        )
        workflow_id = f"rectification-{self._app.case_no}"
        summary = f"bad review of case {self._app.case_no} · {rating.department}"
        details = (
            f"Bad review (score {rating.score}) of case **{self._app.case_no}**, matter `{self._app.matter_code}`, "
            f"to be put right by `{rating.department}`; accepted at {self._app.hall}."
        )
        started = await start_detached("RectificationWorkflow", order, workflow_id, summary, details)
        action = "rectification_started" if started else "rectification_already_open"
        await self._record(action, SYSTEM, details={"workflow_id": workflow_id})

    async def _wait_for_review_before_step_2(self, matter: Matter) -> None:
        """How cases started before the approval route behave: kept for their replay."""
        if self._deferred and self._withdrawal is None:
            await self._collect_deferred(matter)
        if self._stage == CaseStage.AWAITING_MATERIALS and self._withdrawal is None:
            await self._enter(CaseStage.AWAITING_REVIEW, SYSTEM, "materials_complete")
        if not self._stage.is_final:
            # Step 2 (two-tier approval) takes over here; until then the case waits for review.
            await workflow.wait_condition(lambda: self._withdrawal is not None)
            await self._close_withdrawn()

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
        received = set(self._received)
        broken = await act.has_broken_commitment(self._app.applicant.applicant_id)
        if self._received != received:
            # Materials arrived while the record was checked (sent with the start): check again.
            return await self._acceptance_check(matter)
        if broken:
            return everything_missing, ["申请人有承诺失信记录，不适用容缺受理（broken commitment on record）"]
        self._deferred = missing_other
        self._materials_complete = False
        return None

    async def _accept(self, matter: Matter) -> None:
        self._accepted_at = workflow.now()
        self._days = await act.working_days_after(
            WorkingDaysRequest(start=self._accepted_at, days=matter.statutory_days),
            summary=f"statutory limit: {matter.statutory_days} working days",
        )
        self._clock = CaseClock(self._days, matter.promised_days, matter.statutory_days)
        if self._deferred:
            self._deferral_due = end_of_day(self._days.days[matter.deferral_days - 1])
        workflow.upsert_search_attributes([search.CASE_DUE_AT.value_set(self.promised_due)])
        if self._v2:
            stage = CaseStage.ACCEPTED
            workflow.upsert_search_attributes([search.MATERIALS_PENDING.value_set(bool(self._deferred))])
        else:
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
        settled = lambda: not self._deferred or self._withdrawal is not None or self._stage.is_final  # noqa: E731
        due_day = local_date(self._deferral_due - timedelta(seconds=1))

        if not await wait_until(settled, remind_at, f"deferral reminder {due_day}"):
            title, body = notices.deferral_reminder(
                self._app.case_no, matter.material_names(self._deferred), self._deferral_due
            )
            await self._notify_applicant("deferral_reminder", title, body)
            await self._record("deferral_reminded", SYSTEM, details={"missing": sorted(self._deferred)})
        if await wait_until(settled, self._deferral_due, f"deferral deadline {due_day}"):
            return  # v2: supplement_materials records materials_complete itself

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
        await self._collect_rating()
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

    # ---- step 2: the approval route ----------------------------------------------------------

    def _stopping(self) -> bool:
        return self._withdrawal is not None or self._stage.is_final

    async def _decide(self, matter: Matter) -> None:
        """Deferred materials, deadline warnings and the route run side by side until the end."""
        watchers = [asyncio.create_task(self._watch_deadlines())]
        if self._deferred:
            watchers.append(asyncio.create_task(self._collect_deferred(matter)))
        decision = await self._route(matter)
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
        await asyncio.gather(*watchers)

    async def _route(self, matter: Matter) -> Decision | None:
        if matter.automatic:
            # 秒批: a standard matter with complete materials is decided by rule, no person involved.
            return Decision(
                result="approve",
                by=AUTOMATIC_RULE,
                at=workflow.now(),
                reasons="all required materials present and matter marked automatic in the catalog",
                inputs={"materials": sorted(self._received), "deferred": sorted(self._deferred)},
            )
        if matter.consult:
            await self._consult(matter)
            if self._stopping():
                return None
        review = await self._comprehensive_review(matter)
        if review is None:
            return None
        if review.decision == "reject":
            return Decision(result="reject", by=review.reviewer, at=workflow.now(), reasons=review.opinion)
        self._approved_by = review.reviewer
        if matter.panel is None:
            return Decision(result="approve", by=review.reviewer, at=workflow.now(), reasons=review.opinion)
        return await self._collective_decision(matter)

    async def _consult(self, matter: Matter) -> None:
        """并联审批: every department asked at once, each with its own deadline."""
        longest = max(c.deadline_days for c in matter.consult)
        days = await act.working_days_after(
            WorkingDaysRequest(start=workflow.now(), days=longest), summary=f"opinion deadlines (≤ {longest} working days)"
        )
        self._consultations = [
            Consultation(department=c.department, due_at=end_of_day(days.days[c.deadline_days - 1])) for c in matter.consult
        ]
        await self._enter(
            CaseStage.CONSULTING,
            matter.lead_department,
            "opinions_requested",
            details={c.department: c.due_at.isoformat() for c in self._consultations},
        )
        for c in self._consultations:
            title, body = notices.opinion_requested(self._app.case_no, matter.name, c.due_at)
            await self._notify(c.department, "opinion_requested", title, body)

        settled = lambda: consultations_settled(self._consultations) or self._stopping()  # noqa: E731
        consent_on_silence = {c.department for c in matter.consult if c.silence_is_consent}
        while not settled():
            open_ = [c for c in self._consultations if c.state == OpinionState.PENDING and not c.escalated]
            if not open_:
                await workflow.wait_condition(settled)
                break
            due = min(c.due_at for c in open_)
            if await wait_until(settled, due, f"opinion due {local_date(due - timedelta(seconds=1))}"):
                break
            overdue = [c for c in open_ if c.due_at <= workflow.now() and c.state == OpinionState.PENDING]
            # Settled at 24:00, before the activities below give a late answer a chance to slip in.
            for c in overdue:
                c.escalated = True
                if c.department in consent_on_silence:
                    c.state = OpinionState.DEEMED_CONSENT  # 逾期视为同意, as the matter declares
            self._publish_waiting()
            for c in overdue:
                title, body = notices.opinion_overdue(self._app.case_no, c.department)
                await self._notify(f"coordinator:{matter.lead_department}", "opinion_overdue", title, body)
                await self._record("opinion_overdue", SYSTEM, details={"department": c.department})
                if c.state == OpinionState.DEEMED_CONSENT:
                    await self._record("opinion_deemed_consent", SYSTEM, details={"department": c.department})

    async def _comprehensive_review(self, matter: Matter) -> Review | None:
        """综合研判 by one reviewer: approve, return for correction (clock paused) or reject."""
        self._reviewer = self._reviewer or matter.reviewers[0]
        while True:
            against = [c.department for c in disagreements(self._consultations)]
            await self._enter(
                CaseStage.AWAITING_REVIEW,
                SYSTEM,
                "review_requested",
                details={
                    "reviewer": self._reviewer,
                    "disagreeing_departments": against,
                    "opinions": {
                        c.department: {"state": c.state.value, "officer": c.officer, "opinion": c.opinion}
                        for c in self._consultations
                    },
                },
            )
            title, body = notices.review_requested(self._app.case_no, matter.name, against)
            await self._notify(self._reviewer, "review_requested", title, body)
            await workflow.wait_condition(lambda: self._review is not None or self._stopping())
            if self._stopping():
                return None
            review, self._review = self._review, None
            assert review is not None
            if review.decision != "return":
                return review
            await self._return_for_correction(review)
            if self._stopping():
                return None

    async def _return_for_correction(self, review: Review) -> None:
        assert self._clock is not None and self._days is not None and self._accepted_at is not None
        self._clock.paused_since = workflow.now()
        pause = Pause(reason="补正: returned for correction", started_at=workflow.now())
        self._pauses.append(pause)
        self._clock.revision += 1
        await self._enter(
            CaseStage.RETURNED, review.reviewer, "returned", reason=review.opinion, details={"corrections": review.corrections}
        )
        title, body = notices.returned(self._app.case_no, review.corrections)
        await self._notify_applicant("returned_for_correction", title, body)
        await workflow.wait_condition(lambda: self._resubmission is not None or self._stopping())
        self._resubmission = None
        # The paused working days move both due dates (行政许可法 §45 style pause, domain.md).
        counted = await act.working_days_between(WorkingDaysBetween(start=pause.started_at, end=workflow.now()))
        ended_at = workflow.now()
        # Extend the schedule before the clock counts the pause: status() reads the due dates from
        # it and may run (a query, an Update's answer) while working_days_after is awaited.
        needed = self._clock.days_needed() + counted.days
        if len(self._clock.schedule.days) < needed:
            self._clock.schedule = self._days = await act.working_days_after(
                WorkingDaysRequest(start=self._accepted_at, days=needed),
                summary="due dates after the pause",
            )
        pause.ended_at = ended_at
        pause.working_days = counted.days
        self._clock.paused_days += counted.days
        self._clock.paused_since = None
        self._clock.revision += 1
        workflow.upsert_search_attributes([search.CASE_DUE_AT.value_set(self.promised_due)])
        await self._record(
            "clock_resumed",
            SYSTEM,
            details={"paused_working_days": counted.days, "promised_due_at": self.promised_due.isoformat()},
        )

    async def _collective_decision(self, matter: Matter) -> Decision | None:
        """集体决策: quorum, recusal of the tier-1 reviewer, the matter's rule; 缓议 reconvenes."""
        panel = matter.panel
        assert panel is not None
        recused = self._approved_by if self._approved_by in panel.members else None
        while True:
            tally = self._tally = Tally(panel, recused)
            days = await act.working_days_after(
                WorkingDaysRequest(start=workflow.now(), days=panel.voting_days), summary="voting deadline"
            )
            closes = self._vote_closes_at = days.due_at
            await self._enter(
                CaseStage.IN_PANEL,
                SYSTEM,
                "vote_opened",
                details={"electors": tally.electors, "quorum": tally.quorum, "rule": panel.rule, "recused": recused},
            )
            for member in tally.electors:
                title, body = notices.vote_requested(self._app.case_no, matter.name, closes)
                await self._notify(member, "vote_requested", title, body)
            decided = lambda closing=False: tally.outcome(closing) is not None or self._stopping()  # noqa: E731
            if not await wait_until(decided, closes, f"vote closes {local_date(closes - timedelta(seconds=1))}"):
                if not decided(True):
                    # Undecided at the deadline: tell the chair, keep the case open until it is decided.
                    votes = {"votes": len(tally.votes), "quorum": tally.quorum}
                    if tally.has_quorum:  # chair_decides, and the chair has not spoken
                        title, body = notices.chair_awaited(self._app.case_no)
                        await self._notify(panel.chair, "vote_chair_awaited", title, body)
                        await self._record("vote_chair_awaited", SYSTEM, details=votes)
                    else:
                        title, body = notices.no_quorum(self._app.case_no, len(tally.votes), tally.quorum)
                        await self._notify(panel.chair, "vote_no_quorum", title, body)
                        await self._record("vote_no_quorum", SYSTEM, details=votes)
                    await workflow.wait_condition(lambda: decided(True))
            if self._stopping():
                return None
            outcome = tally.outcome(closing=True)
            tally.closed = True  # no vote slips in while the close is recorded
            minutes = {m: v.choice for m, v in tally.votes.items()}
            await self._record("vote_closed", SYSTEM, details={"outcome": outcome, "votes": minutes})
            if outcome == "defer":
                continue  # 缓议: the panel takes it up again with a fresh vote
            opinions = "; ".join(f"{m}: {v.choice} {v.opinion}".strip() for m, v in tally.votes.items())
            return Decision(
                result="approve" if outcome == "approve" else "reject",
                by="panel",
                at=workflow.now(),
                reasons=opinions,
                inputs={"rule": panel.rule, "votes": minutes, "recused": recused},
            )

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

    async def _watch_deadlines(self) -> None:
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
            workflow.upsert_search_attributes(
                [search.RISK_LEVEL.value_set(level), search.CASE_OVERDUE.value_set(level == "red")]
            )
            title, body = notices.deadline(self._app.case_no, level, self.promised_due)
            await self._notify(self._matter.lead_department, f"deadline_{level}", title, body)
            await self._record(f"deadline_{level}", SYSTEM, details={"promised_due_at": self.promised_due.isoformat()})
            if level == "red" and self._overdue_risk:
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
            await self._record("risk_raised", SYSTEM, details={"workflow_id": risk_workflow_id(risk_no)})

    def _waiting_on(self) -> list[str]:
        if self._stage == CaseStage.CONSULTING:
            return [c.department for c in self._consultations if c.state == OpinionState.PENDING]
        if self._stage == CaseStage.AWAITING_REVIEW and self._reviewer and not self._review_taken():
            return [self._reviewer]
        if self._stage == CaseStage.IN_PANEL and self._tally:
            return self._tally.waiting_on()
        if self._stage in (CaseStage.RETURNED, CaseStage.APPROVED_PENDING_MATERIALS, CaseStage.AWAITING_MATERIALS):
            return [f"applicant:{self._app.applicant.applicant_id}"]
        return []

    def _inbox(self) -> tuple[list[str], datetime | None]:
        """Who the case waits on and by when: the holders of the current step, the applicant while
        deferred materials are owed, and the applicant's rating while its window is open."""
        who, dues = list(self._waiting_on()), []
        if who and self._stage == CaseStage.CONSULTING:
            dues += [c.due_at for c in self._consultations if c.state == OpinionState.PENDING]
        elif who and self._stage == CaseStage.AWAITING_REVIEW and self._clock is not None:
            dues.append(self.promised_due)
        elif who and self._stage == CaseStage.IN_PANEL and self._vote_closes_at is not None:
            dues.append(self._vote_closes_at)
        applicant = f"applicant:{self._app.applicant.applicant_id}"
        if self._deferred and self._deferral_due is not None and not self._stage.is_final:
            who.append(applicant)
            dues.append(self._deferral_due)
        if self._rating_open_until is not None and self._rating is None:
            who.append(applicant)
            dues.append(self._rating_open_until)
        return list(dict.fromkeys(who)), min(dues) if dues else None

    def _publish_waiting(self, along=()) -> None:
        who, due = self._inbox()
        self._waiting.publish(who, due, with_due=True, along=along)

    # ---- messages from outside ---------------------------------------------------------------

    @workflow.update(name="supplement_materials")
    async def supplement_materials(self, req: SupplementMaterials) -> SupplementResult:
        if self._stage == CaseStage.RECEIVED:
            return await self._supplement_before_acceptance(req)
        new = set(req.materials) & self._deferred
        self._received |= new
        self._deferred -= new
        self._publish_waiting()
        await self._record(
            "materials_supplemented",
            req.submitted_by,
            details={"materials": sorted(new), "still_missing": sorted(self._deferred)},
        )
        if self._v2 and not self._deferred:
            workflow.upsert_search_attributes([search.MATERIALS_PENDING.value_set(False)])
            await self._record("materials_complete", req.submitted_by)
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
        await self._record("materials_supplemented", req.submitted_by, details={"materials": sorted(given), "before_acceptance": True})
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
            return
        if self._v2:
            awaited = bool(self._deferred) and not self._stage.is_final and self._withdrawal is None
        else:
            awaited = self._stage == CaseStage.AWAITING_MATERIALS
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

    # ---- step 2 messages: opinions, review, resubmit, transfer, vote, urge ------------------------

    def _require_stage(self, update: str, *stages: CaseStage) -> None:
        if not self._v2 or self._stage not in stages or self._withdrawal is not None:
            wanted = " or ".join(s.value for s in stages)
            raise ApplicationError(
                f"case {self._app.case_no} is {self._stage.value}: {update} is accepted only in stage {wanted}",
                type="WrongStage",
            )

    @workflow.update(name="department_opinion")
    async def department_opinion(self, req: DepartmentOpinion) -> CaseStatus:
        c = next(c for c in self._consultations if c.department == req.department)
        c.state = OpinionState.AGREED if req.agree else OpinionState.DISAGREED
        c.officer, c.opinion = req.officer, req.opinion
        self._publish_waiting()
        await self._record(
            "department_opinion", req.officer, req.opinion, details={"department": req.department, "agree": req.agree}
        )
        return self.status()

    @department_opinion.validator
    def _check_opinion(self, req: DepartmentOpinion) -> None:
        self._require_stage("department_opinion", CaseStage.CONSULTING)
        asked = {c.department: c for c in self._consultations}
        if req.department not in asked:
            raise ApplicationError(
                f"department {req.department} was not asked for an opinion; asked: {sorted(asked)}", type="NotConsulted"
            )
        if asked[req.department].state != OpinionState.PENDING:
            raise ApplicationError(
                f"department {req.department} has already answered ({asked[req.department].state.value})",
                type="AlreadyAnswered",
            )

    @workflow.update(name="review")
    async def review(self, req: Review) -> CaseStatus:
        self._review = req
        self._publish_waiting()
        await self._record(
            "reviewed", req.reviewer, req.opinion, details={"decision": req.decision, "corrections": req.corrections}
        )
        return self.status()

    @review.validator
    def _check_review(self, req: Review) -> None:
        self._require_stage("review", CaseStage.AWAITING_REVIEW)
        if self._review_taken():
            raise ApplicationError("a review decision for this case is already being applied", type="AlreadyDecided")
        if req.reviewer != self._reviewer:
            raise ApplicationError(
                f"case {self._app.case_no} is assigned to {self._reviewer}; only they may review it "
                "(they can transfer it to another allowed reviewer)",
                type="NotReviewer",
            )

    def _review_taken(self) -> bool:
        # Between an approval and the panel opening, the stage still reads awaiting_review.
        return self._review is not None or self._approved_by is not None

    @workflow.update(name="transfer")
    async def transfer(self, req: Transfer) -> CaseStatus:
        self._reviewer = req.to_reviewer
        self._publish_waiting()
        await self._record("transferred", req.by, req.reason, details={"to": req.to_reviewer})
        against = [c.department for c in disagreements(self._consultations)]
        title, body = notices.review_requested(self._app.case_no, self._matter.name if self._matter else "", against)
        await self._notify(req.to_reviewer, "review_requested", title, body)
        return self.status()

    @transfer.validator
    def _check_transfer(self, req: Transfer) -> None:
        self._require_stage("transfer", CaseStage.AWAITING_REVIEW)
        assert self._matter is not None
        if self._review_taken():
            raise ApplicationError("a review decision for this case is already being applied", type="AlreadyDecided")
        if req.by != self._reviewer:
            raise ApplicationError(f"only the assigned reviewer {self._reviewer} may transfer this case", type="NotReviewer")
        if req.to_reviewer not in self._matter.reviewers:
            raise ApplicationError(
                f"{req.to_reviewer} may not review matter {self._matter.code}; allowed: {self._matter.reviewers}",
                type="NotReviewer",
            )
        if req.to_reviewer == self._reviewer:
            raise ApplicationError(f"the case is already assigned to {req.to_reviewer}", type="NotReviewer")

    @workflow.update(name="resubmit")
    async def resubmit(self, req: Resubmit) -> CaseStatus:
        self._received |= set(req.materials)
        self._resubmission = req
        await self._record("resubmitted", req.submitted_by, req.note, details={"materials": sorted(req.materials)})
        return self.status()

    @resubmit.validator
    def _check_resubmit(self, req: Resubmit) -> None:
        self._require_stage("resubmit", CaseStage.RETURNED)
        assert self._matter is not None
        self._require_known_materials(req.materials)

    @workflow.update(name="vote")
    async def vote(self, req: Vote) -> CaseStatus:
        assert self._tally is not None
        changed = req.member in self._tally.votes
        self._tally.votes[req.member] = CastVote(
            member=req.member, choice=req.choice, opinion=req.opinion, at=workflow.now(), changed=changed
        )
        self._publish_waiting()
        await self._record("vote_changed" if changed else "voted", req.member, req.opinion, details={"choice": req.choice})
        return self.status()

    @vote.validator
    def _check_vote(self, req: Vote) -> None:
        self._require_stage("vote", CaseStage.IN_PANEL)
        tally = self._tally
        assert tally is not None
        if tally.closed:
            raise ApplicationError(
                f"voting on case {self._app.case_no} has closed; a new vote, if any, opens shortly", type="WrongStage"
            )
        if req.member == tally.recused:
            raise ApplicationError(
                f"{req.member} did the comprehensive review of this case and does not vote on it (recusal)",
                type="Recused",
            )
        if req.member not in tally.panel.members:
            raise ApplicationError(
                f"{req.member} is not on the panel of this matter; members: {tally.panel.members}", type="NotPanelMember"
            )
        earlier = tally.votes.get(req.member)
        if earlier is not None and earlier.choice == req.choice:
            raise ApplicationError(f"{req.member} has already voted {req.choice}", type="AlreadyVoted")

    @workflow.update(name="urge")
    async def urge(self, req: Urge) -> CaseStatus:
        self._last_urge_day = self._working_day_of(workflow.now())
        holders = self._waiting_on()
        await self._record("urged", req.by, req.note, details={"holders": holders, "stage": self._stage.value})
        for holder in holders:
            title, body = notices.urged(self._app.case_no, self._stage.value, req.note)
            await self._notify(holder, "urge", title, body)
        return self.status()

    @urge.validator
    def _check_urge(self, req: Urge) -> None:
        self._require_stage(
            "urge",
            CaseStage.CONSULTING,
            CaseStage.AWAITING_REVIEW,
            CaseStage.RETURNED,
            CaseStage.IN_PANEL,
            CaseStage.APPROVED_PENDING_MATERIALS,
        )
        if self._last_urge_day == self._working_day_of(workflow.now()):
            raise ApplicationError(
                f"case {self._app.case_no} was already urged this working day; one urge per working day",
                type="TooSoon",
            )

    def _working_day_of(self, instant: datetime) -> tuple[int, object]:
        """Which working day `instant` belongs to (a weekend or holiday counts with the working day
        before it), from the schedule already in history; past its end, the calendar date."""
        assert self._clock is not None
        days = self._clock.schedule.days
        today = local_date(instant)
        index = sum(1 for d in days if d <= today)
        return (index, today if index == len(days) else None)

    @workflow.update(name="rate")
    async def rate(self, req: Rate) -> CaseStatus:
        self._rating = Rating(
            case_no=self._app.case_no,
            matter_code=self._app.matter_code,
            department=self._matter.lead_department if self._matter else "hall:" + self._app.hall,
            hall=self._app.hall,
            score=req.score,
            comment=req.comment,
            channel=req.channel,
            at=workflow.now(),
        )
        self._publish_waiting()
        await act.record_rating(RatingRecord(key=self._key(), rating=self._rating))
        # The comment stays in the ratings table: audit details hold codes and counts only.
        await self._record("rated", "applicant", details={"score": req.score, "bad": req.bad, "channel": req.channel})
        return self.status()

    @rate.validator
    def _check_rate(self, req: Rate) -> None:
        if self._rating is not None:
            raise ApplicationError(f"case {self._app.case_no} has already been rated; one rating per case", type="AlreadyRated")
        if not self._rating_window or not self._stage.is_final:
            raise ApplicationError(
                f"case {self._app.case_no} is {self._stage.value}: it can be rated once it has ended", type="WrongStage"
            )
        if self._rating_open_until is None or workflow.now() >= self._rating_open_until:
            raise ApplicationError(f"the rating window of case {self._app.case_no} is not open", type="RatingClosed")

    SIGNAL_TWINS = {
        "supplement_materials": (SupplementMaterials, _check_supplement),
        "withdraw": (Withdraw, _check_withdraw),
        "department_opinion": (DepartmentOpinion, _check_opinion),
        "review": (Review, _check_review),
        "transfer": (Transfer, _check_transfer),
        "resubmit": (Resubmit, _check_resubmit),
        "vote": (Vote, _check_vote),
        "urge": (Urge, _check_urge),
        "rate": (Rate, _check_rate),
    }

    def _audit(self):
        return self._record  # the case audits with its case row (record_case_event)

    @workflow.query(name="status")
    def status(self) -> CaseStatus:
        used = left = None
        if self._clock is not None:
            used = self._clock.days_used(workflow.now())
            left = self._clock.promised_days - used
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
            reviewer=self._reviewer,
            consultations=self._consultations,
            votes=list(self._tally.votes.values()) if self._tally else [],
            vote_closes_at=self._vote_closes_at if self._stage == CaseStage.IN_PANEL else None,
            warning=self._warning,
            waiting_on=self._inbox()[0],
            decision=self._decision,
            rating_open_until=self._rating_open_until,
            rating=self._rating.score if self._rating else None,
            last_events=self._events[-LAST_EVENTS:],
            refused_signals=self.refused_signals,
            refused_signal_count=self.refused_signal_count,
        )

    # ---- helpers -----------------------------------------------------------------------------

    @property
    def promised_due(self) -> datetime:
        assert self._clock is not None
        return self._clock.promised_due

    @property
    def statutory_due(self) -> datetime:
        assert self._clock is not None
        return self._clock.statutory_due

    def _key(self) -> str:
        # Deterministic on replay, unique per record: the idempotency key activities dedupe on.
        return str(workflow.uuid4())

    async def _enter(
        self, stage: CaseStage, actor: str, action: str, reason: str = "", details: dict[str, Any] | None = None
    ) -> None:
        if self._v2 and self._stage.is_final:
            return  # a concurrent step ended the case first (withdrawal, termination)
        self._stage = stage
        self._publish_waiting(along=[search.CASE_STAGE.value_set(stage)])
        workflow.set_current_details(self._details_line())
        workflow.logger.info("case_stage", extra={"case_no": self._app.case_no, "stage": stage.value})
        await self._record(action, actor, reason, details)

    async def _record(self, action: str, actor: str, reason: str = "", details: dict[str, Any] | None = None) -> None:
        now = workflow.now()
        self._events.append(Event(at=now, action=action, actor=actor, reason=reason))
        event = self._case_event(action, actor, reason, details, now)
        if not self._v2:
            await act.record_case_event(event)
            return
        # Handlers and the procedure record concurrently: one at a time keeps the audit trail
        # and the case row in the order things happened.
        async with self._records:
            await act.record_case_event(event)

    def _case_event(self, action: str, actor: str, reason: str, details: dict[str, Any] | None, now: datetime) -> CaseEvent:
        info = workflow.info()
        return CaseEvent(
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
        if self._rating_open_until is not None:
            parts.append(f"rating open until {local_date(self._rating_open_until - timedelta(seconds=1))}")
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
