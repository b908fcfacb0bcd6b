"""CaseWorkflow's contract: its input, Updates, `status` query and result.

Integrators send these as JSON; docs/integration.md holds their generated JSON Schemas.
"""

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from contract.approval import CastVote, Consultation, Decision
from contract.common import Code, Instant, Name, RefusedSignal

CaseNo = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{2,63}$")]
ApplicantId = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{2,63}$")]


def case_workflow_id(case_no: str) -> str:
    return f"case-{case_no}"


class CaseStage(StrEnum):
    """Where a case stands. Also the CaseStage search attribute value."""

    RECEIVED = "received"  # started, acceptance check running
    NOT_ACCEPTED = "not_accepted"  # 不予受理: one notice listed everything missing
    ACCEPTED = "accepted"  # accepted; the approval route starts
    CONSULTING = "consulting"  # 并联审批: departments' opinions requested
    AWAITING_REVIEW = "awaiting_review"  # tier 1: comprehensive review (综合研判)
    RETURNED = "returned"  # 补正: returned to the applicant for correction, clock paused
    IN_PANEL = "in_panel"  # tier 2: collective decision (集体决策)
    APPROVED_PENDING_MATERIALS = "approved_pending_materials"  # approved; result waits for deferred materials
    APPROVED = "approved"  # result issued
    REJECTED = "rejected"  # decided against, with reasons
    TERMINATED = "terminated"  # 终止办理: deferral deadline missed
    WITHDRAWN = "withdrawn"  # applicant withdrew before a decision

    @property
    def is_final(self) -> bool:
        return self in {
            CaseStage.NOT_ACCEPTED,
            CaseStage.APPROVED,
            CaseStage.REJECTED,
            CaseStage.TERMINATED,
            CaseStage.WITHDRAWN,
        }


class Applicant(BaseModel):
    """The applicant. Only `applicant_id` (opaque) travels to search attributes, logs and notices;
    the personal details are stored in the application database."""

    model_config = ConfigDict(extra="forbid")

    applicant_id: ApplicantId
    kind: str = Field(default="person", pattern=r"^(person|enterprise)$")
    name: Name | None = None
    id_number: str | None = Field(default=None, max_length=64, description="ID card or credit code")
    phone: str | None = Field(default=None, max_length=32)


class CaseApplication(BaseModel):
    """Input of CaseWorkflow (workflow id `case-<case_no>`, task queue `hallflow`)."""

    model_config = ConfigDict(extra="forbid")

    case_no: CaseNo
    matter_code: Code
    hall: Name
    clerk: Name
    applicant: Applicant
    materials: list[Code] = Field(default_factory=list, description="codes of the materials handed in")
    # 告知承诺: the applicant signed the commitment to supply deferred materials in time.
    commitment_signed: bool = False


class SupplementMaterials(BaseModel):
    """Update `supplement_materials`: deferred materials handed in."""

    model_config = ConfigDict(extra="forbid")

    materials: list[Code] = Field(min_length=1)
    submitted_by: Name


class SupplementResult(BaseModel):
    still_missing: list[str]
    complete: bool
    # Sent before acceptance (update-with-start): codes the matter does not have, ignored.
    not_used: list[str] = Field(default_factory=list)


class Withdraw(BaseModel):
    """Update `withdraw`: the applicant withdraws before a decision."""

    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
    requested_by: Name


class Pause(BaseModel):
    """The case clock stopped (补正 or a special procedure)."""

    reason: str
    started_at: datetime
    ended_at: datetime | None = None
    working_days: int = 0


class Event(BaseModel):
    at: datetime
    action: str
    actor: str
    reason: str = ""


class CaseStatus(BaseModel):
    """Answer of the `status` query."""

    case_no: str
    stage: CaseStage
    matter_code: str
    matter_name: str | None = None
    department: str | None = None
    hall: str
    accepted_at: datetime | None = None
    promised_due_at: datetime | None = None
    statutory_due_at: datetime | None = None
    working_days_used: int | None = None
    working_days_left: int | None = None
    calendar_version: str | None = None
    missing_materials: list[str] = Field(default_factory=list, description="codes still missing")
    deferral_due_at: datetime | None = None
    pauses: list[Pause] = Field(default_factory=list)
    reviewer: str | None = Field(default=None, description="who holds the comprehensive review")
    consultations: list[Consultation] = Field(default_factory=list)
    votes: list[CastVote] = Field(default_factory=list)
    vote_closes_at: datetime | None = None
    warning: str | None = Field(default=None, description="yellow at 80% of the promised limit, red when overdue")
    waiting_on: list[str] = Field(
        default_factory=list,
        description="who the case waits on now, as in the WaitingOn search attribute: holders of the step, "
        "applicant:<id> while materials or the rating are awaited",
    )
    decision: Decision | None = None
    rating_open_until: datetime | None = Field(default=None, description="the applicant may rate until then")
    rating: int | None = Field(default=None, description="the applicant's score, 5 very satisfied … 1")
    last_events: list[Event] = Field(default_factory=list)
    # Signal twins refused (newest last): never applied; the reason says how to fix the message.
    refused_signals: list[RefusedSignal] = Field(default_factory=list)
    refused_signal_count: int = 0  # all refused in this run; only the first 100 are audited


class CaseOutcome(BaseModel):
    """Result of CaseWorkflow. A case that ends without a grant (not accepted, withdrawn,
    terminated) completes normally with this result; it does not fail."""

    case_no: str
    stage: CaseStage
    reason: str = ""
    missing_materials: list[str] = Field(default_factory=list)
    closed_at: Instant | None = None
    decision: Decision | None = None
    working_days_used: int | None = None
    promised_days: int | None = None
    statutory_days: int | None = None
    rating: int | None = Field(default=None, description="the applicant's score, if rated within the window")


class CaseRegistration(BaseModel):
    """What `register_case` stores: the case row and the applicant's personal details."""

    case_no: str
    matter_code: str
    hall: str
    clerk: str
    applicant: Applicant
    workflow_id: str
    received_at: Instant
    # The run registering the case: the store keeps the case number for this run only (a second
    # run under the same number fails with CaseNumberTaken). None from a run started before it.
    run_id: str | None = None


class Deadlines(BaseModel):
    """Working-day schedule of an accepted case, from the calendar activity."""

    promised: list[date]
    statutory: list[date]
