"""RectificationWorkflow: every bad review (差评) verified, rectified or explained, and answered.

Started by CaseWorkflow for a rating of 1 or 2, id `rectification-<case_no>`, owned by the department
that handled the case, or by the hall for a case whose matter is unknown (the order's department is
then the hall's code): its clerks and supervisors act, and its supervisors are escalated to.
Steps (domain.md, Feedback):
1. verify by calling back within `verify_days` working days (Update `verify`);
2. found malicious: set aside only with a reason and a second officer's confirmation
   (Update `confirm_set_aside`), within the rectification deadline; the rater is not answered;
3. otherwise rectify or explain and answer the applicant within `rectify_days` working days of the
   start of the rectification (Update `rectify`).
Each step is reminded to the department at 00:00 of its deadline's last working day, escalated once
to the department head (a hall's supervisors) when missed, and stays open until done: nothing closes silently (the target
is 100% rectification).
"""

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from contract import search
    from workflows import attributes
    from contract.converter import Unreadable
    from contract.rating import (
        ConfirmSetAside,
        RectificationOrder,
        RectificationStage,
        RectificationStatus,
        Rectify,
        Verify,
        rectification_workflow_id,
    )
    from workflows import notices
    from workflows.feedback import chase, deadline, overdue_flags, show_day
    from workflows.trail import SYSTEM, Trail
    from workflows.guard import refuse_input
    from contract.org import SYSTEM_ACTOR, Role
    from workflows.authority import department_people, hall_people
    from workflows.governed import Governed
    from workflows.twins import SignalTwins
    from workflows.waiting import Waiting

LAST_EVENTS = 10
# Step names as the department reads them in reminders and escalations (the audit keeps the keys).
STEP_NAMES = {"call-back": "回访核实", "set-aside confirmation": "恶意差评剔除复核", "rectification": "整改答复"}


@workflow.defn(name="RectificationWorkflow")
class RectificationWorkflow(SignalTwins, Governed):
    @workflow.init
    def __init__(self, order: RectificationOrder | Unreadable | None = None) -> None:
        self.refused_input = refuse_input(order, RectificationOrder, lambda o: rectification_workflow_id(o.case_no))
        if self.refused_input is not None:
            return  # the guard fails the run with it (workflows/guard.py)
        assert isinstance(order, RectificationOrder)
        self._order = order
        self._stage = RectificationStage.VERIFYING
        self._trail = Trail("rectification", order.case_no)
        self._due: datetime | None = None
        self._rectify_due: datetime | None = None
        self._overdue = False
        self._verify: Verify | None = None
        self._confirm: ConfirmSetAside | None = None
        self._rectify: Rectify | None = None
        self._closed = False  # the last step is in the audit trail (and the applicant answered)
        self._waiting = Waiting()  # who the open step waits on, for the inbox

    @workflow.run
    async def run(self, order: RectificationOrder | Unreadable | None = None) -> RectificationStatus:
        attributes.upsert(
            [
                search.FEEDBACK_STAGE.value_set(self._stage),
                search.DEPARTMENT.value_set(order.department),
                search.MATTER_CODE.value_set(order.matter_code),
                search.HALL.value_set(order.hall),
            ]
        )
        start = workflow.now()
        self._rectify_due = await deadline(start, order.rectify_days, "rectification deadline")
        await self._enter(RectificationStage.VERIFYING, await deadline(start, order.verify_days, "call-back deadline"))
        # The comment may say anything: it stays in the ratings table, not in the audit trail.
        await self._trail.record(
            "opened",
            SYSTEM,
            details={"score": order.rating.score, "channel": order.rating.channel, "rectify_due_at": self._rectify_due.isoformat()},
        )
        title, body = notices.bad_review(order.case_no, order.rating.score, self._due_or_raise(), self._rectify_due)
        await self._trail.notify(order.department, "bad_review", title, body)

        await self._step("call-back", lambda: self._verify is not None)
        assert self._verify is not None
        if self._verify.malicious:
            # The set-aside closes the review instead of an answer, so it owes the answer's deadline
            # (rectify_days from the start). The call-back deadline, often the same day, would leave
            # a second officer no time; a new one counted from the finding would let the finding
            # postpone the review's deadline.
            await self._enter(RectificationStage.AWAITING_CONFIRMATION, self._rectify_due)
            await self._step("set-aside confirmation", lambda: self._confirm is not None)
            await self._enter(RectificationStage.SET_ASIDE, None)
            assert self._confirm is not None
            await self._trail.record("set_aside", self._confirm.officer, self._confirm.reason)
        else:
            await self._enter(RectificationStage.RECTIFYING, self._rectify_due)
            await self._step("rectification", lambda: self._rectify is not None)
            assert self._rectify is not None
            await self._enter(RectificationStage.RECTIFIED, None)
            await self._trail.record("rectified", self._rectify.officer, self._rectify.action)
            title, body = notices.bad_review_answered(order.case_no, self._rectify.reply)
            await self._trail.notify(f"applicant:{order.applicant_id}", "rating_answered", title, body)
        self._closed = True
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.status()

    async def _step(self, what: str, done) -> None:
        subject, step = f"差评 {self._order.case_no}", STEP_NAMES[what]

        async def remind() -> None:
            title, body = notices.feedback_reminder(subject, step, self._due_or_raise())
            await self._trail.notify(self._order.department, "rectification_reminder", title, body)
            await self._trail.record("reminded", SYSTEM, details={"step": what, "due_at": self._due_or_raise().isoformat()})

        async def escalate() -> None:
            self._overdue = True
            above = self._escalated_to()
            self._waiting.publish([self._order.department, *above], along=overdue_flags(True, None))
            workflow.set_current_details(self._details_line())
            title, body = notices.feedback_overdue(subject, step, self._due_or_raise())
            for recipient in above:
                await self._trail.notify(recipient, "rectification_overdue", title, body)
            await self._trail.record("step_overdue", SYSTEM, details={"step": what, "due_at": self._due_or_raise().isoformat()})

        await chase(what, self._due_or_raise, done, remind, escalate)

    async def _enter(self, stage: RectificationStage, due: datetime | None) -> None:
        self._stage, self._due, self._overdue = stage, due, False
        self._waiting.publish(
            [self._order.department] if due is not None else [],
            along=[search.FEEDBACK_STAGE.value_set(stage), *overdue_flags(False, due)],
        )
        workflow.set_current_details(self._details_line())

    def _hall_owned(self) -> bool:
        """A bad review of a case whose matter is unknown: the hall that received it owns it."""
        return self._order.department == self._order.hall

    def _escalated_to(self) -> list[str]:
        """Who a missed step is escalated to: the department's head (`head:<department>`), or for a
        hall-owned review the hall's supervisors in the directory now (by id; `supervisor:<hall>`
        if the directory names none, so the notice still says whom it is for)."""
        if not self._hall_owned():
            return [f"head:{self._order.department}"]
        assert self.org is not None
        hall = self._order.hall
        return self.org.with_role(Role.SUPERVISOR, workflow.now(), hall=hall) or [f"supervisor:{hall}"]

    def _due_or_raise(self) -> datetime:
        assert self._due is not None
        return self._due

    # ---- messages from the department ------------------------------------------------------------

    @workflow.update(name="verify")
    async def verify(self, req: Verify) -> RectificationStatus:
        self._verify = req
        if self._due is None:
            # Sent with the start, or queued while no worker ran: the call-back goes in the audit
            # trail after "opened" (the deadlines come from the calendar first).
            await workflow.wait_condition(lambda: self._due is not None)
        action = "found_malicious" if req.malicious else "verified"
        await self._trail.record(action, req.officer, req.finding, details={"malicious": req.malicious})
        # Answer after the change: awaiting the set-aside's confirmation, or rectifying.
        await workflow.wait_condition(lambda: self._stage != RectificationStage.VERIFYING)
        return self.status()

    @verify.validator
    def _check_verify(self, req: Verify) -> None:
        if self._verify is not None:
            raise ApplicationError(
                f"the bad review of case {self._order.case_no} was already verified by {self._verify.officer}",
                type="AlreadyVerified",
            )
        self._require(RectificationStage.VERIFYING, "verify")

    @workflow.update(name="confirm_set_aside")
    async def confirm_set_aside(self, req: ConfirmSetAside) -> RectificationStatus:
        self._confirm = req
        await self._trail.record("set_aside_confirmed", req.officer, req.reason)
        await workflow.wait_condition(lambda: self._closed)  # answer with the final state
        return self.status()

    @confirm_set_aside.validator
    def _check_confirm(self, req: ConfirmSetAside) -> None:
        self._require(RectificationStage.AWAITING_CONFIRMATION, "confirm_set_aside")
        if self._confirm is not None:
            raise ApplicationError("the set-aside is already confirmed", type="AlreadyConfirmed")
        assert self._verify is not None
        # Four eyes: the same officer id typed in other letter case is still the same officer.
        if req.officer.casefold() == self._verify.officer.casefold():
            raise ApplicationError(
                f"{req.officer} found the review malicious; a second officer must confirm the set-aside",
                type="SameOfficer",
            )

    @workflow.update(name="rectify")
    async def rectify(self, req: Rectify) -> RectificationStatus:
        self._rectify = req
        await workflow.wait_condition(lambda: self._closed)  # answer once recorded and the applicant told
        return self.status()

    @rectify.validator
    def _check_rectify(self, req: Rectify) -> None:
        self._require(RectificationStage.RECTIFYING, "rectify")
        if self._rectify is not None:
            raise ApplicationError("the rectification is already being recorded", type="AlreadyRectified")

    def _require(self, stage: RectificationStage, update: str) -> None:
        if self._stage != stage:
            raise ApplicationError(
                f"the rectification of case {self._order.case_no} is {self._stage.value}: "
                f"{update} is accepted only while {stage.value}",
                type="WrongStage",
            )

    def who_may(self, message: str, req: Any) -> tuple[Iterable[str], str] | None:
        """Only hallflow opens a rectification (a bad review); the responsible department's officers
        and heads, or for a hall-owned review the hall's clerks and supervisors, verify, confirm a
        set-aside (a second officer: the validator) and rectify."""
        assert self.org is not None
        if message == "start":
            return [SYSTEM_ACTOR], "open a rectification (hallflow does, for every bad review)"
        dept = self._order.department
        if self._hall_owned():
            return hall_people(self.org, workflow.now(), dept), f"{message} a bad review owned by the hall {dept}"
        return department_people(self.org, workflow.now(), dept), f"{message} a bad review owned by {dept}"

    SIGNAL_TWINS = {
        "verify": (Verify, _check_verify),
        "confirm_set_aside": (ConfirmSetAside, _check_confirm),
        "rectify": (Rectify, _check_rectify),
    }

    @workflow.query(name="status")
    def status(self) -> RectificationStatus:
        return RectificationStatus(
            case_no=self._order.case_no,
            department=self._order.department,
            stage=self._stage,
            score=self._order.rating.score,
            due_at=self._due,
            overdue=self._overdue,
            verified_by=self._verify.officer if self._verify else None,
            finding=self._verify.finding if self._verify else "",
            malicious=self._verify.malicious if self._verify else False,
            confirmed_by=self._confirm.officer if self._confirm else None,
            action=self._rectify.action if self._rectify else "",
            reply=self._rectify.reply if self._rectify else "",
            last_events=self._trail.events[-LAST_EVENTS:],
            refused_signals=self.refused_signals,
            refused_signal_count=self.refused_signal_count,
        )

    def _details_line(self) -> str:
        parts = [f"**{self._stage.value}**", f"bad review of case {self._order.case_no}", self._order.department]
        if self._due is not None:
            parts.append(("OVERDUE since " if self._overdue else "due ") + show_day(self._due))
        return " · ".join(parts)
