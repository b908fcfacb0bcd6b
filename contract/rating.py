"""Ratings (好差评) and the rectification of bad reviews (差评整改), step 3.

Update `rate` on CaseWorkflow; a bad review starts RectificationWorkflow (`rectification-<case_no>`).
The rater is the case's applicant: their identity is never in search attributes, logs or published data.
"""

from datetime import datetime
from enum import StrEnum
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contract.case import ApplicantId, CaseNo
from contract.common import Code, Instant, Name, RefusedSignal, Text

# 5 very satisfied, 4 satisfied, 3 basically satisfied, 2 dissatisfied, 1 very dissatisfied.
BAD_SCORES = {1, 2}



def rectification_workflow_id(case_no: str) -> str:
    return f"rectification-{case_no}"

class Rate(BaseModel):
    """Update `rate` on CaseWorkflow: the applicant's one rating, within the rating window."""

    model_config = ConfigDict(extra="forbid")

    score: int = Field(ge=1, le=5, description="5 very satisfied … 1 very dissatisfied; 1 and 2 are bad reviews")
    comment: Text = ""
    channel: Literal["window", "app", "web", "sms", "hotline", "kiosk"] = Field(
        description="where the rating was given (评价渠道)"
    )

    @property
    def bad(self) -> bool:
        return self.score in BAD_SCORES


class Rating(BaseModel):
    """A rating as recorded: no rater identity, only the case."""

    model_config = ConfigDict(extra="forbid")

    case_no: CaseNo
    matter_code: Code
    department: Name = Field(description="who puts a bad review right: the lead department, or the hall")
    hall: Name
    score: int = Field(ge=1, le=5)
    comment: Text = ""
    channel: Name
    at: Instant

    @property
    def bad(self) -> bool:
        return self.score in BAD_SCORES


class RatingRecord(BaseModel):
    """Activity `record_rating` input: the rating with its idempotency key."""

    key: str
    rating: Rating


class FeedbackPolicy(BaseModel):
    """The locality's feedback settings (HALLFLOW_RATING_WINDOW_DAYS, HALLFLOW_RECTIFY_DAYS), read by an
    activity so the values a case used are in its history."""

    rating_window_days: int = Field(ge=1)
    verify_days: int = Field(default=1, ge=1)
    rectify_days: int = Field(ge=5, le=15)


class RectificationOrder(BaseModel):
    """RectificationWorkflow input: a bad review to verify, rectify and answer, owned by the department
    that handled the case."""

    model_config = ConfigDict(extra="forbid")

    case_no: CaseNo
    matter_code: Code
    department: Name
    hall: Name
    rating: Rating
    applicant_id: ApplicantId = Field(description="opaque id, only to answer the applicant; never published or logged")
    verify_days: int = Field(default=1, ge=1)
    rectify_days: int = Field(default=5, ge=1)


class Verify(BaseModel):
    """Update `verify`: the call-back (回访核实) within the verify deadline."""

    model_config = ConfigDict(extra="forbid")

    officer: Name
    finding: Text = Field(description="what the call-back found; the reason when malicious")
    malicious: bool = False

    @model_validator(mode="after")
    def _malicious_needs_reason(self) -> Self:
        if self.malicious and not self.finding:
            raise ValueError("a review may be found malicious only with the reason (finding)")
        return self


class ConfirmSetAside(BaseModel):
    """Update `confirm_set_aside`: a second officer confirms that a malicious review is set aside."""

    model_config = ConfigDict(extra="forbid")

    officer: Name
    reason: Text = Field(min_length=1)


class Rectify(BaseModel):
    """Update `rectify`: what was done (or explained) and the reply the applicant receives."""

    model_config = ConfigDict(extra="forbid")

    officer: Name
    action: Text = Field(min_length=1, description="the rectification, or the explanation (整改或解释说明)")
    reply: Text = Field(min_length=1, description="the answer sent to the applicant")


class RectificationStage(StrEnum):
    VERIFYING = "verifying"  # call back within verify_days
    AWAITING_CONFIRMATION = "awaiting_confirmation"  # found malicious: a second officer must confirm
    RECTIFYING = "rectifying"  # rectify or explain, and answer, within rectify_days
    RECTIFIED = "rectified"  # answered
    SET_ASIDE = "set_aside"  # malicious, confirmed by a second officer


class RectificationStatus(BaseModel):
    case_no: str
    department: str
    stage: RectificationStage
    score: int
    due_at: datetime | None = None
    overdue: bool = False
    verified_by: str | None = None
    finding: str = ""
    malicious: bool = False
    confirmed_by: str | None = None
    action: str = ""
    reply: str = ""
    last_events: list[dict] = Field(default_factory=list)
    # Signal twins refused (newest last): never applied; the reason says how to fix the message.
    refused_signals: list[RefusedSignal] = Field(default_factory=list)
    refused_signal_count: int = 0  # all refused in this run; only the first 100 are audited
