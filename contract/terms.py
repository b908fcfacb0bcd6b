"""The terms a case is accepted under, read in one lookup at the single window (activities/terms.py)."""

from pydantic import BaseModel

from contract.calendar import WorkingDays
from contract.case import ApplicantId
from contract.common import Code, Instant
from contract.matter import Matter
from contract.rating import FeedbackPolicy


class CaseTermsRequest(BaseModel):
    matter_code: Code
    start: Instant  # the working days are counted after this instant's date (Asia/Shanghai)
    # Whose credit record to read for broken commitments (告知承诺): given when the applicant signed
    # a commitment, so materials may be deferred.
    applicant_id: ApplicantId | None = None


class CaseTerms(BaseModel):
    """The matter, the working days after `start` (enough for its statutory limit and then the
    rating window) and the feedback settings. `schedule` is None when the matter is unknown or the
    calendar lacks a year: the workflow then asks `working_days_after`, whose error names the file."""

    matter: Matter | None
    schedule: WorkingDays | None
    feedback: FeedbackPolicy
    broken_commitment: bool | None = None  # None when no applicant_id was asked about
