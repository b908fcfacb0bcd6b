"""What activities persist: audit entries, notices, the case projection.

Every record carries an idempotency `key` made in the workflow (deterministic on replay),
so an activity retry finds its own earlier write instead of adding a second one.
"""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from contract.case import CaseRegistration
from contract.common import Instant, Name, Text
from contract.rating import RatingRecord


class AuditEntry(BaseModel):
    """One state change: who, what, when, why, in which workflow run."""

    key: str
    subject_type: str  # case | rectification | suggestion | risk ...
    subject_id: str
    action: str  # short event name: accepted, not_accepted, materials_supplemented ...
    # Who caused it, as the worker proved it ("hallflow" for a workflow's own steps); for a
    # refusal whose proof failed, whom the message named.
    actor: Name
    # Composed by the workflow (a template and the sender's already checked text): not capped.
    reason: str = ""
    at: Instant
    workflow_id: str
    run_id: str
    # No personal data here: codes, counts and dates only.
    details: dict[str, Any] = Field(default_factory=dict)
    # The id of the key (in the organisation directory) that the worker verified for the message
    # this row records: that message's own, even when its actor signed others with other keys; a
    # row a workflow writes later without that message's proof takes the key of the actor's last
    # accepted message (workflows/trail.py signed_with). None for hallflow's own steps, for a
    # workflow another hallflow workflow started, for a refusal whose proof failed, and for an
    # unsigned message where assertions are not required. Covered by the audit chain's hash.
    signed_with: str | None = None


class CaseSnapshot(BaseModel):
    """The case's current state, kept in the `cases` table for reports and halls."""

    case_no: str
    matter_code: str
    hall: str
    stage: str
    department: str | None = None
    accepted_at: datetime | None = None
    promised_due_at: datetime | None = None
    statutory_due_at: datetime | None = None
    deferral_due_at: datetime | None = None
    closed_at: datetime | None = None
    outcome: str | None = None


class CaseEvent(BaseModel):
    """An audit entry and the case state after it, written in one transaction."""

    audit: AuditEntry
    case: CaseSnapshot


class Notice(BaseModel):
    """A notification; recipients are opaque ids (applicant id, department code, officer)."""

    key: str
    recipient: str
    kind: str  # not_accepted, deferral_accepted, deferral_reminder, case_terminated ...
    subject_type: str
    subject_id: str
    title: str
    body: str  # a template and the sender's already checked text: not capped
    at: Instant


class BrokenCommitment(BaseModel):
    """告知承诺 broken: deferred materials not supplied in time; blocks deferral for the applicant."""

    key: str
    applicant_id: str
    case_no: str
    at: Instant


class Step(BaseModel):
    """What one moment of a workflow leaves behind, written by one activity (record_step): the
    applicant's registration, a rating or a broken commitment when there is one, then the audit
    rows (a case's with its case row) and the notices' outbox rows in one transaction; the notices
    are handed to their channel after the commit. Every part is keyed: a retry writes nothing twice."""

    registration: CaseRegistration | None = None  # the case's first step
    rating: RatingRecord | None = None
    broken_commitment: BrokenCommitment | None = None
    case_events: list[CaseEvent] = Field(default_factory=list)
    entries: list[AuditEntry] = Field(default_factory=list)
    notices: list[Notice] = Field(default_factory=list)
