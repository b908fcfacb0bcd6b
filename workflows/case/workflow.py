"""CaseWorkflow: one case (办件) from the single window to its end.

The procedure is `run`, one module per phase:
1. accept (accept.py): acceptance at the single window, 行政许可法 §32; deferred materials under a
   signed commitment (容缺受理 + 告知承诺), chased beside the route, termination when missed;
2. route (route.py): automatic approval (秒批), or parallel opinions (并联审批) → comprehensive
   review (综合研判) → collective decision (集体决策), the clock paused while returned (补正);
3. decide (decide.py): the result issued once every deferred material is in, or the rejection;
   withdrawal; yellow at 80% of the promised limit, red (and a risk) when overdue;
4. rate (rate.py): 好差评 after the end; a bad review starts its rectification.
This module holds the case's state, its `status` and the bookkeeping every phase shares.
"""

import asyncio
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contract import search
    from contract.approval import Consultation, Decision, DepartmentOpinion, OpinionState, Resubmit, Review
    from contract.approval import Transfer, Urge, Vote
    from contract.calendar import WorkingDays
    from contract.case import CaseApplication, CaseOutcome, CaseStage, CaseStatus, Pause, SupplementMaterials, Withdraw
    from contract.case import case_workflow_id
    from contract.converter import Unreadable
    from contract.matter import Matter
    from contract.rating import FeedbackPolicy, Rate, Rating
    from contract.records import CaseSnapshot
    from workflows.approval import Tally
    from workflows.case.accept import AcceptPhase
    from workflows.case.decide import DecidePhase
    from workflows.case.rate import RatePhase
    from workflows.case.route import RoutePhase
    from workflows.case.trail import CaseTrail
    from workflows.clock import CaseClock, local_date
    from contract.org import APPLICANT, Role
    from workflows.authority import department_people, hall_people
    from workflows.governed import Governed
    from workflows.guard import refuse_input
    from workflows.twins import SignalTwins
    from workflows.waiting import Waiting

LAST_EVENTS = 10


@workflow.defn(name="CaseWorkflow")
class CaseWorkflow(AcceptPhase, RoutePhase, DecidePhase, RatePhase, SignalTwins, Governed):
    @workflow.init
    def __init__(self, app: CaseApplication | Unreadable | None = None) -> None:
        self.refused_input = refuse_input(app, CaseApplication, lambda a: case_workflow_id(a.case_no))
        if self.refused_input is not None:
            return  # the guard fails the run with it (workflows/guard.py)
        assert isinstance(app, CaseApplication)
        self._app = app
        self._stage = CaseStage.RECEIVED
        self._trail = CaseTrail(app.case_no, self._snapshot)
        self._waiting = Waiting()  # who the case waits on, for the inbox
        self._matter: Matter | None = None
        self._outcome: CaseOutcome | None = None
        self._closed = False  # the final stage is in the audit trail
        # accept
        self._received: set[str] = set(app.materials)
        # Handed in by supplement_materials before acceptance (update-with-start): the acceptance
        # check counts them; the `received` entry lists the application's own.
        self._early: set[str] = set()
        self._registered = False  # the `received` entry is queued: what is recorded next follows it
        self._broken_commitment = False  # the applicant's credit record, read with the case's terms
        self._deferred: set[str] = set()  # non-core materials still owed under the commitment
        self._materials_complete = True  # no material owed, and that is in the audit trail
        self._accepted_at: datetime | None = None
        self._schedule: WorkingDays | None = None  # from case_terms: read off by _days when the dates match
        self._days: WorkingDays | None = None  # working days from acceptance to the statutory limit and a rating window
        self._feedback: FeedbackPolicy | None = None  # the feedback settings the case was received under
        self._clock: CaseClock | None = None
        self._deferral_due: datetime | None = None
        # route
        self._consultations: list[Consultation] = []
        self._reviewer: str | None = None
        self._review: Review | None = None
        self._approved_by: str | None = None
        self._resubmission: Resubmit | None = None
        self._pauses: list[Pause] = []
        self._tally: Tally | None = None
        self._vote_closes_at: datetime | None = None
        self._last_urge_day = None
        # decide
        self._decision: Decision | None = None
        self._withdrawal: Withdraw | None = None
        self._warning: str | None = None
        # rate
        self._rating_open_until: datetime | None = None
        self._rating: Rating | None = None

    @workflow.run
    async def run(self, app: CaseApplication | Unreadable | None = None) -> CaseOutcome:
        matter = await self.accept()
        if matter is not None:
            # The limits are watched and deferred materials chased while the route runs.
            beside = [asyncio.create_task(self.watch_deadlines())]
            if self._deferred:
                beside.append(asyncio.create_task(self.collect_deferred(matter)))
            decision = await self.route(matter)
            await self.decide(decision)
            await asyncio.gather(*beside)
        await self.collect_rating()
        await workflow.wait_condition(workflow.all_handlers_finished)
        assert self._outcome is not None
        return self._outcome

    def who_may(self, message: str, req: Any) -> tuple[Iterable[str], str] | None:
        """The seed's rule per step: the hall's own clerks accept; the applicant or the hall hands in,
        resubmits and withdraws; a consulted department answers through its own officers."""
        assert self.org is not None
        org, now, hall, case = self.org, workflow.now(), self._app.hall, self._app.case_no
        people = hall_people(org, now, hall)
        if message == "start":
            return org.with_role(Role.CLERK, now, hall=hall), f"accept cases at {hall}"
        if message in ("supplement_materials", "resubmit", "withdraw", "rate"):
            return [APPLICANT, *people], f"{message} for case {case} (the applicant, or {hall} for them)"
        if message == "urge":
            return [APPLICANT, hall, *people], f"urge case {case}"
        if message == "department_opinion":
            return department_people(org, now, req.department), f"give {req.department}'s opinion"
        if message == "transfer":
            lead = self._matter.lead_department if self._matter else ""
            heads = org.with_role(Role.HEAD, now, department=lead) + org.with_role(Role.SUPERVISOR, now, hall=hall)
            return [*([self._reviewer] if self._reviewer else []), *heads], f"transfer the review of case {case}"
        return None  # review and vote: the catalog names who (the assigned reviewer, the panel)

    # Every Update is also the signal `<update>_signal` (workflows/twins.py).
    SIGNAL_TWINS = {
        "supplement_materials": (SupplementMaterials, AcceptPhase._check_supplement),
        "withdraw": (Withdraw, DecidePhase._check_withdraw),
        "department_opinion": (DepartmentOpinion, RoutePhase._check_opinion),
        "review": (Review, RoutePhase._check_review),
        "transfer": (Transfer, RoutePhase._check_transfer),
        "resubmit": (Resubmit, RoutePhase._check_resubmit),
        "vote": (Vote, RoutePhase._check_vote),
        "urge": (Urge, RoutePhase._check_urge),
        "rate": (Rate, RatePhase._check_rate),
    }

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
            missing_materials=self._missing(),
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
            last_events=self._trail.events[-LAST_EVENTS:],
            refused_signals=self.refused_signals,
            refused_signal_count=self.refused_signal_count,
        )

    # ---- what every phase shares -------------------------------------------------------------

    @property
    def promised_due(self) -> datetime:
        assert self._clock is not None
        return self._clock.promised_due

    @property
    def statutory_due(self) -> datetime:
        assert self._clock is not None
        return self._clock.statutory_due

    async def _enter(
        self, stage: CaseStage, actor: str, action: str, reason: str = "", details: dict[str, Any] | None = None
    ) -> None:
        if self._stage.is_final:
            return  # a concurrent step ended the case first (withdrawal, termination)
        self._stage = stage
        along = [search.CASE_STAGE.value_set(stage)]
        if stage.is_final and self._deferred:
            along.append(search.MATERIALS_PENDING.value_set(False))  # an ended case waits for nothing
        self._publish_waiting(along=along)
        workflow.set_current_details(self._details_line())
        workflow.logger.info("case_stage", extra={"case_no": self._app.case_no, "stage": stage.value})
        await self._trail.record(action, actor, reason, details)

    async def _notify_applicant(self, kind: str, title: str, body: str) -> None:
        await self._trail.notify(f"applicant:{self._app.applicant.applicant_id}", kind, title, body)

    def _missing(self) -> list[str]:
        """What the case lacks: the deferred materials while it is open; at its end, what its last
        notice named (not accepted, terminated), else nothing (it no longer waits for any)."""
        if self._outcome is not None and self._outcome.stage in (CaseStage.NOT_ACCEPTED, CaseStage.TERMINATED):
            return self._outcome.missing_materials
        return [] if self._stage.is_final else sorted(self._deferred)

    def _waiting_on(self) -> list[str]:
        """Who holds the current step: who is chased by `urge`."""
        if self._stage == CaseStage.CONSULTING:
            return [c.department for c in self._consultations if c.state == OpinionState.PENDING]
        if self._stage == CaseStage.AWAITING_REVIEW and self._reviewer and not self._review_taken():
            return [self._reviewer]
        if self._stage == CaseStage.IN_PANEL and self._tally:
            return self._tally.waiting_on()
        if self._stage in (CaseStage.RETURNED, CaseStage.APPROVED_PENDING_MATERIALS):
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

    def _snapshot(self) -> CaseSnapshot:
        """The case row written with each audit entry."""
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
        """The Web UI's current details: where the case stands, in one line."""
        parts = [f"**{self._stage.value}**", f"case {self._app.case_no}", self._app.matter_code]
        if self._deferred and self._deferral_due:
            parts.append(f"{len(self._deferred)} deferred material(s) due {local_date(self._deferral_due - timedelta(seconds=1))}")
        if self._days is not None and not self._stage.is_final:
            parts.append(f"promised by {local_date(self.promised_due - timedelta(seconds=1))}")
        if self._rating_open_until is not None:
            parts.append(f"rating open until {local_date(self._rating_open_until - timedelta(seconds=1))}")
        return " · ".join(parts)
