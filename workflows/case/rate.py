"""Phase 4, rate: 好差评 after the end.

Once the case has ended (whatever the outcome), the applicant may rate it within the rating
window (data: feedback policy). Every rating goes to the department's satisfaction watch; a bad
review (1 or 2) starts its rectification, which outlives the case.
"""

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from contract.calendar import WorkingDaysRequest
    from contract.case import CaseStatus
    from contract.rating import Rate, Rating, RatingRecord, RectificationOrder, rectification_workflow_id
    from workflows import activities as act
    from workflows import notices
    from workflows.clock import local_date, wait_until
    from workflows.detached import start_detached
    from workflows.trail import SYSTEM, step_key


RATING_GRACE = timedelta(minutes=1)


class RatePhase:
    async def collect_rating(self) -> None:
        policy = self._feedback or await act.feedback_policy()
        days = await act.working_days_after(
            WorkingDaysRequest(start=workflow.now(), days=policy.rating_window_days),
            summary=f"rating window: {policy.rating_window_days} working days",
            known=self._days,
        )
        self._rating_open_until = days.due_at
        workflow.set_current_details(self._details_line())
        self._publish_waiting()
        title, body = notices.rating_invited(self._app.case_no, self._rating_open_until)
        await self._notify_applicant("rating_invited", title, body)
        day = local_date(days.due_at - timedelta(seconds=1))
        # The window's timer is left to run once rated: the case ends a minute later, and a timer
        # pending at the end costs no event where cancelling it costs one.
        rated = lambda: self._rating is not None  # noqa: E731
        if await wait_until(rated, days.due_at, f"rating window closes {day}", cancel=False):
            rating = self._rating
            assert rating is not None and self._outcome is not None
            self._outcome.rating = rating.score
            await act.send_rating_to_watch(rating)
            if rating.bad:
                await self._start_rectification(rating, policy.verify_days, policy.rectify_days)
            # A second rating sent right after the first gets AlreadyRated, not an aborted Update.
            await workflow.sleep(RATING_GRACE, summary="a second rating is refused for a minute more")
        else:
            await self._trail.record("rating_window_closed", SYSTEM, details={"rated": False})
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
        workflow_id = rectification_workflow_id(self._app.case_no)
        summary = f"bad review of case {self._app.case_no} · {rating.department}"
        details = (
            f"Bad review (score {rating.score}) of case **{self._app.case_no}**, matter `{self._app.matter_code}`, "
            f"to be put right by `{rating.department}`; accepted at {self._app.hall}."
        )
        started = await start_detached("RectificationWorkflow", order, workflow_id, summary, details)
        action = "rectification_started" if started else "rectification_already_open"
        await self._trail.record(action, SYSTEM, details={"workflow_id": workflow_id})

    # ---- Update: rate ----------------------------------------------------------------------------

    @workflow.update(name="rate")
    async def rate(self, req: Rate) -> CaseStatus:
        self._rating = Rating(
            case_no=self._app.case_no,
            matter_code=self._app.matter_code,
            # A case not accepted (unknown matter) was the hall's own doing: the hall puts it right.
            department=self._matter.lead_department if self._matter else self._app.hall,
            hall=self._app.hall,
            score=req.score,
            comment=req.comment,
            channel=req.channel,
            at=workflow.now(),
        )
        self._publish_waiting()
        self._trail.attach(rating=RatingRecord(key=step_key("rating"), rating=self._rating))  # one per case
        # The comment stays in the ratings table: audit details hold codes and counts only.
        await self._trail.record("rated", "applicant", details={"score": req.score, "bad": req.bad, "channel": req.channel})
        return self.status()

    @rate.validator
    def _check_rate(self, req: Rate) -> None:
        if self._rating is not None:
            raise ApplicationError(f"case {self._app.case_no} has already been rated; one rating per case", type="AlreadyRated")
        if not self._stage.is_final:
            raise ApplicationError(
                f"case {self._app.case_no} is {self._stage.value}: its rating window opens once it has ended",
                type="RatingClosed",
            )
        if self._rating_open_until is None or workflow.now() >= self._rating_open_until:
            raise ApplicationError(f"the rating window of case {self._app.case_no} is not open", type="RatingClosed")
