"""SuggestionWorkflow: a public suggestion answered on deadline, the answer published (采纳公示).

15 working days for a general suggestion, 30 for a complex one, counted from submission (domain.md,
Feedback); a reclassification recomputes the deadline from the same submission. The department is
reminded at 00:00 of the deadline's last working day, its head is told when the deadline passes,
and the suggestion stays open until answered. Every answer says adopted or not, a non-adoption
with its reason; the answer is published (采纳公示) without the submitter, who is told.
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
    from contract.suggestion import (
        ANSWER_DAYS,
        Publication,
        PublicationRecord,
        Reclassify,
        Respond,
        Suggestion,
        SuggestionStage,
        SuggestionStatus,
        suggestion_workflow_id,
    )
    from workflows import activities as act
    from workflows import notices
    from workflows.feedback import chase, deadline, overdue_flags, show_day
    from workflows.trail import SYSTEM, Trail
    from workflows.guard import refuse_input
    from contract.org import Role
    from workflows.authority import department_people
    from workflows.proof import current_proof
    from workflows.governed import Governed
    from workflows.twins import SignalTwins
    from workflows.waiting import Waiting

LAST_EVENTS = 10


@workflow.defn(name="SuggestionWorkflow")
class SuggestionWorkflow(SignalTwins, Governed):
    @workflow.init
    def __init__(self, suggestion: Suggestion | Unreadable | None = None) -> None:
        self.refused_input = refuse_input(suggestion, Suggestion, lambda s: suggestion_workflow_id(s.suggestion_no))
        if self.refused_input is not None:
            return  # the guard fails the run with it (workflows/guard.py)
        assert isinstance(suggestion, Suggestion)
        self._s = suggestion
        self._complexity = suggestion.complexity
        self._stage = SuggestionStage.OPEN
        self._trail = Trail("suggestion", suggestion.suggestion_no)
        self._submitted_at: datetime | None = None
        self._due: datetime | None = None
        self._overdue = False
        self._reclassifying = False
        self._response: Respond | None = None
        self._response_proof = None  # the proof of the respond message, for the `answered` row
        self._answer: Publication | None = None
        self._closed = False  # the answer is published and the submitter told
        self._waiting = Waiting()  # the department owes the answer, for the inbox

    @workflow.run
    async def run(self, suggestion: Suggestion | Unreadable | None = None) -> SuggestionStatus:
        self._submitted_at = workflow.now()
        attributes.upsert(
            [search.FEEDBACK_STAGE.value_set(self._stage), search.DEPARTMENT.value_set(suggestion.department)]
        )
        await self._set_due(await self._answer_deadline())
        # Who submitted it, as the guard proved it (the applicant through a portal, or an officer).
        proof = self.start_proof
        await self._trail.record(
            "submitted",
            proof.actor if proof is not None else SYSTEM,
            proof=proof,
            details={"complexity": self._complexity, "due_at": self._due_at().isoformat()},
        )
        title, body = notices.suggestion_received(suggestion.suggestion_no, suggestion.topic, self._due_at())
        await self._trail.notify(suggestion.department, "suggestion_received", title, body)

        await chase("answer", self._due_at, lambda: self._response is not None, self._remind, self._escalate)
        await self._publish()
        self._closed = True
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.status()

    async def _answer_deadline(self) -> datetime:
        assert self._submitted_at is not None
        return await deadline(self._submitted_at, ANSWER_DAYS[self._complexity], f"{self._complexity} suggestion")

    async def _set_due(self, due: datetime) -> None:
        self._due = due
        self._overdue = self._overdue and due <= workflow.now()
        self._waiting.publish(self._owed_by(), along=overdue_flags(self._overdue, due))
        workflow.set_current_details(self._details_line())

    def _owed_by(self) -> list[str]:
        # Once escalated the department head owes it too.
        return [self._s.department] + ([f"head:{self._s.department}"] if self._overdue else [])

    def _due_at(self) -> datetime:
        assert self._due is not None
        return self._due

    async def _remind(self) -> None:
        title, body = notices.feedback_reminder(f"建议 {self._s.suggestion_no}", "答复", self._due_at())
        await self._trail.notify(self._s.department, "suggestion_reminder", title, body)
        await self._trail.record("reminded", SYSTEM, details={"due_at": self._due_at().isoformat()})

    async def _escalate(self) -> None:
        self._overdue = True
        self._waiting.publish(self._owed_by(), along=overdue_flags(True, None))
        workflow.set_current_details(self._details_line())
        title, body = notices.feedback_overdue(f"建议 {self._s.suggestion_no}", "答复", self._due_at())
        await self._trail.notify(f"head:{self._s.department}", "suggestion_overdue", title, body)
        await self._trail.record("step_overdue", SYSTEM, details={"due_at": self._due_at().isoformat()})

    async def _publish(self) -> None:
        r = self._response
        assert r is not None and self._submitted_at is not None
        now = workflow.now()
        self._answer = Publication(
            suggestion_no=self._s.suggestion_no,
            topic=self._s.topic,
            department=self._s.department,
            complexity=self._complexity,
            adopted=r.adopted,
            reason=r.reason,
            measures=r.measures,
            submitted_at=self._submitted_at,
            answered_at=now,
            on_time=now <= self._due_at(),
        )
        self._stage = SuggestionStage.ANSWERED
        self._overdue = False
        self._waiting.publish([], along=[search.FEEDBACK_STAGE.value_set(self._stage), search.STEP_OVERDUE.value_set(False)])
        workflow.set_current_details(self._details_line())
        await self._trail.record(
            "answered", r.officer, r.reason, details={"adopted": r.adopted, "on_time": self._answer.on_time},
            proof=self._response_proof,
        )
        await act.publish_answer(PublicationRecord(key=str(workflow.uuid4()), entry=self._answer))
        await self._trail.record("published", SYSTEM)
        title, body = notices.suggestion_answered(self._s.suggestion_no, r.adopted, r.reason, r.measures)
        await self._trail.notify(f"submitter:{self._s.submitter_id}", "suggestion_answered", title, body)

    # ---- messages ---------------------------------------------------------------------------------

    @workflow.update(name="reclassify")
    async def reclassify(self, req: Reclassify) -> SuggestionStatus:
        self._reclassifying = True
        before, self._complexity = self._complexity, req.complexity
        try:
            await self._set_due(await self._answer_deadline())
            await self._trail.record(
                "reclassified",
                req.by,
                req.reason,
                details={"from": before, "to": req.complexity, "due_at": self._due_at().isoformat()},
            )
        finally:
            self._reclassifying = False
        return self.status()

    @reclassify.validator
    def _check_reclassify(self, req: Reclassify) -> None:
        self._require_open("reclassify")
        if self._reclassifying:
            raise ApplicationError("a reclassification is already being applied", type="Busy")
        if req.complexity == self._complexity:
            raise ApplicationError(f"suggestion {self._s.suggestion_no} is already {req.complexity}", type="Unchanged")

    @workflow.update(name="respond")
    async def respond(self, req: Respond) -> SuggestionStatus:
        self._response, self._response_proof = req, current_proof()  # run() records it, with this message's key
        await workflow.wait_condition(lambda: self._closed)  # answer once published and the submitter told
        return self.status()

    @respond.validator
    def _check_respond(self, req: Respond) -> None:
        self._require_open("respond")
        if self._reclassifying:
            # Answered now, it would be judged against the old deadline and logged before "reclassified".
            raise ApplicationError(
                f"suggestion {self._s.suggestion_no} is being reclassified; send the answer again in a moment",
                type="Busy",
            )
        if req.department != self._s.department:
            raise ApplicationError(
                f"suggestion {self._s.suggestion_no} is for {self._s.department} to answer, not {req.department}",
                type="WrongDepartment",
            )

    def _require_open(self, update: str) -> None:
        if self._due is None:
            # Only before the first calendar answer, e.g. an Update sent with the start (update-with-start).
            raise ApplicationError(
                f"suggestion {self._s.suggestion_no} is still being registered (its deadline is being computed): "
                f"send {update} again in a moment",
                type="WrongStage",
            )
        if self._stage != SuggestionStage.OPEN or self._response is not None:
            raise ApplicationError(
                f"suggestion {self._s.suggestion_no} has been answered: {update} is accepted only while it is open",
                type="WrongStage",
            )

    def who_may(self, message: str, req: Any) -> tuple[Iterable[str], str] | None:
        """The public submits (through a portal or a hall); the responsible department answers and
        reclassifies."""
        assert self.org is not None
        if message == "start":
            return None  # the public (through a portal's or hall's key), or any officer in post
        dept = self._s.department
        people = department_people(self.org, workflow.now(), dept) + self.org.with_role(Role.COORDINATOR, workflow.now(), department=dept)
        return people, f"{message} suggestion {self._s.suggestion_no} (for {dept})"

    def check_start(self, req: Suggestion) -> None:
        """The department that is to answer must be in the directory."""
        assert self.org is not None
        if not self.org.is_department(req.department):
            raise ApplicationError(
                f"suggestion {req.suggestion_no} is for {req.department}, which is not in the organisation directory "
                f"(version {self.org.version}); departments: {', '.join(d.code for d in self.org.departments)}",
                type="UnknownActor",
                non_retryable=True,
            )

    SIGNAL_TWINS = {
        "reclassify": (Reclassify, _check_reclassify),
        "respond": (Respond, _check_respond),
    }

    @workflow.query(name="status")
    def status(self) -> SuggestionStatus:
        return SuggestionStatus(
            suggestion_no=self._s.suggestion_no,
            topic=self._s.topic,
            department=self._s.department,
            complexity=self._complexity,
            stage=self._stage,
            submitted_at=self._submitted_at,
            due_at=self._due,
            overdue=self._overdue,
            answer=self._answer,
            last_events=self._trail.events[-LAST_EVENTS:],
            refused_signals=self.refused_signals,
            refused_signal_count=self.refused_signal_count,
        )

    def _details_line(self) -> str:
        parts = [f"**{self._stage.value}**", f"suggestion {self._s.suggestion_no}", self._s.department, self._complexity]
        if self._due is not None and self._stage == SuggestionStage.OPEN:
            parts.append(("OVERDUE since " if self._overdue else "answer by ") + show_day(self._due))
        return " · ".join(parts)
