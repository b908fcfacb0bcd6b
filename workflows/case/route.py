"""Phase 2, route: the matter's approval route, from acceptance to a decision.

Automatic approval (秒批) by rule; or parallel department opinions (并联审批, each with its own
deadline, escalated to the lead department's coordinator when missed, 逾期视为同意 where the matter
says so) → comprehensive review by one reviewer (综合研判: approve, return for correction with the
clock paused (补正), reject; transfer to another allowed reviewer) → collective decision by the
matter's panel (集体决策: quorum, recusal of the reviewer, majority or chair-decides, 缓议 reopens).
"""

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from contract import search
    from workflows import attributes
    from contract.approval import (
        AUTOMATIC_RULE,
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
    from contract.calendar import WorkingDaysBetween, WorkingDaysRequest
    from contract.case import CaseStage, CaseStatus, Pause
    from contract.matter import Matter
    from workflows import activities as act
    from workflows import notices
    from workflows.approval import Tally, consultations_settled, disagreements
    from workflows.authority import require_active
    from workflows.clock import end_of_day, local_date, wait_until
    from workflows.trail import SYSTEM

class RoutePhase:
    async def route(self, matter: Matter) -> Decision | None:
        """The decision the route reached; None when the case ended first (withdrawn, terminated)."""
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
            WorkingDaysRequest(start=workflow.now(), days=longest),
            summary=f"opinion deadlines (≤ {longest} working days)",
            known=self._days,
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
            await self._trail.notify(c.department, "opinion_requested", title, body)

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
                await self._trail.notify(f"coordinator:{matter.lead_department}", "opinion_overdue", title, body)
                await self._trail.record("opinion_overdue", SYSTEM, details={"department": c.department})
                if c.state == OpinionState.DEEMED_CONSENT:
                    await self._trail.record("opinion_deemed_consent", SYSTEM, details={"department": c.department})

    async def _comprehensive_review(self, matter: Matter) -> Review | None:
        """综合研判 by one reviewer: approve, return for correction (clock paused) or reject."""
        # The first reviewer still in post; if all have left, the first (to be transferred).
        assert self.org is not None
        present = [r for r in matter.reviewers if self.org.active(r, workflow.now()) is not None]
        self._reviewer = self._reviewer or (present or matter.reviewers)[0]
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
            await self._trail.notify(self._reviewer, "review_requested", title, body)
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
        self._resubmission = None  # this return takes one resubmission; kept until the next return
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
        attributes.upsert([search.CASE_DUE_AT.value_set(self.promised_due)])
        await self._trail.record(
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
                WorkingDaysRequest(start=workflow.now(), days=panel.voting_days), summary="voting deadline", known=self._days
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
                await self._trail.notify(member, "vote_requested", title, body)
            decided = lambda closing=False: tally.outcome(closing) is not None or self._stopping()  # noqa: E731
            if not await wait_until(decided, closes, f"vote closes {local_date(closes - timedelta(seconds=1))}"):
                if not decided(True):
                    # Undecided at the deadline: tell the chair, keep the case open until it is decided.
                    votes = {"votes": len(tally.votes), "quorum": tally.quorum}
                    if tally.has_quorum:  # chair_decides, and the chair has not spoken
                        title, body = notices.chair_awaited(self._app.case_no)
                        await self._trail.notify(panel.chair, "vote_chair_awaited", title, body)
                        await self._trail.record("vote_chair_awaited", SYSTEM, details=votes)
                    else:
                        title, body = notices.no_quorum(self._app.case_no, len(tally.votes), tally.quorum)
                        await self._trail.notify(panel.chair, "vote_no_quorum", title, body)
                        await self._trail.record("vote_no_quorum", SYSTEM, details=votes)
                    await workflow.wait_condition(lambda: decided(True))
            if self._stopping():
                return None
            outcome = tally.outcome(closing=True)
            tally.closed = True  # no vote slips in while the close is recorded
            minutes = {m: v.choice for m, v in tally.votes.items()}
            await self._trail.record("vote_closed", SYSTEM, details={"outcome": outcome, "votes": minutes})
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

    # ---- Updates: department_opinion, review, transfer, resubmit, vote, urge ----------------------

    def _require_stage(self, update: str, *stages: CaseStage) -> None:
        if self._stage not in stages or self._withdrawal is not None:
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
        await self._trail.record(
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
        await self._trail.record(
            "reviewed", req.reviewer, req.opinion, details={"decision": req.decision, "corrections": req.corrections}
        )
        # Answer after the change: returned, in the panel, or decided.
        await workflow.wait_condition(lambda: self._stage != CaseStage.AWAITING_REVIEW or self._stopping())
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
        await self._trail.record("transferred", req.by, req.reason, details={"to": req.to_reviewer})
        against = [c.department for c in disagreements(self._consultations)]
        title, body = notices.review_requested(self._app.case_no, self._matter.name if self._matter else "", against)
        await self._trail.notify(req.to_reviewer, "review_requested", title, body)
        return self.status()

    @transfer.validator
    def _check_transfer(self, req: Transfer) -> None:
        self._require_stage("transfer", CaseStage.AWAITING_REVIEW)
        assert self._matter is not None
        if self._review_taken():
            raise ApplicationError("a review decision for this case is already being applied", type="AlreadyDecided")
        # Who may transfer (the reviewer, the lead department's head, a hall supervisor: a case
        # assigned to someone who left) is the guard's check (who_may).
        if req.to_reviewer not in self._matter.reviewers:
            raise ApplicationError(
                f"{req.to_reviewer} may not review matter {self._matter.code}; allowed: {self._matter.reviewers}",
                type="NotReviewer",
            )
        if req.to_reviewer == self._reviewer:
            raise ApplicationError(f"the case is already assigned to {req.to_reviewer}", type="NotReviewer")
        assert self.org is not None
        require_active(self.org, workflow.now(), req.to_reviewer, f"review matter {self._matter.code}")

    @workflow.update(name="resubmit")
    async def resubmit(self, req: Resubmit) -> CaseStatus:
        self._received |= set(req.materials)
        self._resubmission = req
        await self._trail.record("resubmitted", req.submitted_by, req.note, details={"materials": sorted(req.materials)})
        # Answer after the change: the clock runs again and the review is requested again.
        await workflow.wait_condition(lambda: self._stage != CaseStage.RETURNED or self._stopping())
        return self.status()

    @resubmit.validator
    def _check_resubmit(self, req: Resubmit) -> None:
        self._require_stage("resubmit", CaseStage.RETURNED)
        if self._resubmission is not None:
            raise ApplicationError(
                f"case {self._app.case_no} has been resubmitted already; the review starts again", type="AlreadyResubmitted"
            )
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
        await self._trail.record(
            "vote_changed" if changed else "voted", req.member, req.opinion, details={"choice": req.choice}
        )
        tally = self._tally
        if tally.outcome(closing=False) is not None:
            # The deciding vote answers after the change: the vote closed and the case moved on.
            await workflow.wait_condition(
                lambda: self._stage != CaseStage.IN_PANEL or self._tally is not tally or self._stopping()
            )
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
        await self._trail.record("urged", req.by, req.note, details={"holders": holders, "stage": self._stage.value})
        for holder in holders:
            title, body = notices.urged(self._app.case_no, self._stage.value, req.note)
            await self._trail.notify(holder, "urge", title, body)
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
