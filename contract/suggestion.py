"""Public suggestions (意见征集 → 研究采纳 → 结果反馈), step 3: SuggestionWorkflow `suggestion-<no>`.

Answered within 15 working days (general) or 30 (complex) of submission; every answer says adopted
or not, a non-adoption with its reason; answers are published (采纳公示) and the submitter is told.
"""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from contract.case import CaseNo
from contract.common import Code, Name, RefusedSignal, Text

Complexity = Literal["general", "complex"]
# Working days to answer (domain.md).
ANSWER_DAYS: dict[str, int] = {"general": 15, "complex": 30}
Content = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]


def suggestion_workflow_id(suggestion_no: str) -> str:
    return f"suggestion-{suggestion_no}"


class Suggestion(BaseModel):
    """SuggestionWorkflow input."""

    model_config = ConfigDict(extra="forbid")

    suggestion_no: CaseNo
    submitter_id: Name = Field(description="opaque id; never in search attributes, logs or the publication")
    topic: Name
    content: Content
    department: Code = Field(description="the department that must answer")
    complexity: Complexity = "general"


class Reclassify(BaseModel):
    """Update `reclassify`: general ↔ complex, with a reason; the deadline is recomputed from submission."""

    model_config = ConfigDict(extra="forbid")

    complexity: Complexity
    reason: Content
    by: Name


class Respond(BaseModel):
    """Update `respond`: the department's answer, adopted or not."""

    model_config = ConfigDict(extra="forbid")

    department: Code
    officer: Name
    adopted: bool
    reason: Text = ""
    measures: Text = Field(default="", description="what will be done (when adopted)")

    @model_validator(mode="after")
    def _not_adopted_needs_reason(self) -> Self:
        if not self.adopted and not self.reason:
            raise ValueError("a suggestion not adopted must be answered with the reason (reason)")
        return self


class SuggestionStage(StrEnum):
    OPEN = "open"
    ANSWERED = "answered"


class Publication(BaseModel):
    """One entry of the public list of answers (采纳公示). No submitter."""

    suggestion_no: str
    topic: str
    department: str
    complexity: str
    adopted: bool
    reason: str = ""
    measures: str = ""
    submitted_at: datetime
    answered_at: datetime
    on_time: bool


class PublicationRecord(BaseModel):
    """Activity `publish_answer` input: the entry with its idempotency key."""

    key: str
    entry: Publication


class SuggestionStatus(BaseModel):
    suggestion_no: str
    topic: str
    department: str
    complexity: str
    stage: SuggestionStage
    submitted_at: datetime | None = None
    due_at: datetime | None = None
    overdue: bool = False
    answer: Publication | None = None
    last_events: list[dict] = Field(default_factory=list)
    # Signal twins refused (newest last): never applied; the reason says how to fix the message.
    refused_signals: list[RefusedSignal] = Field(default_factory=list)
    refused_signal_count: int = 0  # all refused in this run; only the first 100 are audited
