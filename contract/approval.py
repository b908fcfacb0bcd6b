"""The approval route's messages (step 2): parallel opinions, comprehensive review, panel vote, urge.

Updates on CaseWorkflow (workflow id `case-<case_no>`); JSON Schemas in docs/schemas/.
"""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from contract.common import Code, Name, Text

Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]


class DepartmentOpinion(BaseModel):
    """Update `department_opinion`: a consulted department answers (并联审批)."""

    model_config = ConfigDict(extra="forbid")

    department: Code
    officer: Name
    agree: bool
    opinion: Text = ""

    @model_validator(mode="after")
    def _disagreement_has_reasons(self) -> Self:
        if not self.agree and not self.opinion:
            raise ValueError("a disagreeing opinion must say why (opinion)")
        return self


class Review(BaseModel):
    """Update `review`: tier 1, comprehensive review (综合研判)."""

    model_config = ConfigDict(extra="forbid")

    reviewer: Name
    decision: Literal["approve", "return", "reject"]
    opinion: Text = ""
    corrections: list[Reason] = Field(default_factory=list, description="every correction at once (return)")

    @model_validator(mode="after")
    def _decision_has_what_it_needs(self) -> Self:
        if self.decision == "return" and not self.corrections:
            raise ValueError("return must list every correction the applicant has to make (corrections)")
        if self.decision == "reject" and not self.opinion:
            raise ValueError("reject must give the reasons (opinion)")
        return self


class Resubmit(BaseModel):
    """Update `resubmit`: the applicant's corrections after a return (补正); restarts the clock."""

    model_config = ConfigDict(extra="forbid")

    materials: list[Code] = Field(default_factory=list, description="codes of corrected or added materials")
    note: Text = ""
    submitted_by: Name = "applicant"


class Transfer(BaseModel):
    """Update `transfer`: the reviewer hands the case to another allowed reviewer (转办)."""

    model_config = ConfigDict(extra="forbid")

    by: Name
    to_reviewer: Name
    reason: Reason


class Vote(BaseModel):
    """Update `vote`: tier 2, a panel member's position (集体决策: 同意/不同意/缓议)."""

    model_config = ConfigDict(extra="forbid")

    member: Name
    choice: Literal["approve", "reject", "defer"]
    opinion: Text = ""


class Urge(BaseModel):
    """Update `urge` (催办): chase whoever holds the case now; one per working day."""

    model_config = ConfigDict(extra="forbid")

    by: Name
    note: Text = ""


class OpinionState(StrEnum):
    PENDING = "pending"
    AGREED = "agreed"
    DISAGREED = "disagreed"
    DEEMED_CONSENT = "deemed_consent"  # 逾期视为同意


class Consultation(BaseModel):
    """One department's part in parallel approval, as shown in `status`."""

    department: str
    due_at: datetime
    state: OpinionState = OpinionState.PENDING
    officer: str | None = None
    opinion: str = ""
    escalated: bool = False


class CastVote(BaseModel):
    member: str
    choice: str
    opinion: str = ""
    at: datetime
    changed: bool = False


# `Decision.by` of an automatic approval (秒批): a rule, not a person.
AUTOMATIC_RULE = "rule:complete-materials"


class Decision(BaseModel):
    """How the case was decided, with what the rule or people saw."""

    result: Literal["approve", "reject"]
    by: str  # "rule:<name>", a reviewer, or "panel"
    at: datetime
    reasons: str = ""
    inputs: dict = Field(default_factory=dict)
