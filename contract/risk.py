"""Risks (风险清单) and their escalation, step 4: RiskWorkflow `risk-<risk_no>`.

Red: the emergency group convenes within 2 hours and submits a handling plan within 24 hours
(wall-clock); yellow and blue: in working days, as data/risk.toml says. A missed step notifies the
next level up and raises the risk one level; the step stays required. Closing needs a review (复盘).
"""

from datetime import date, datetime
from enum import StrEnum
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contract.case import CaseNo
from contract.common import Code, Instant, Name, RefusedSignal, Text


class Level(StrEnum):
    BLUE = "blue"
    YELLOW = "yellow"
    RED = "red"

    def raised(self) -> "Level":
        order = [Level.BLUE, Level.YELLOW, Level.RED]
        return order[min(order.index(self) + 1, len(order) - 1)]


Impact = Literal["low", "medium", "high"]


def risk_workflow_id(risk_no: str) -> str:
    return f"risk-{risk_no}"


class RiskReport(BaseModel):
    """RiskWorkflow input."""

    model_config = ConfigDict(extra="forbid")

    risk_no: CaseNo
    source: Literal["manual", "overdue_case", "satisfaction", "other"] = "manual"
    type: Literal["policy", "technology", "execution", "social"]
    title: Name
    description: Text = ""
    probability: float = Field(ge=0, le=1)
    impact: Impact
    responsible_department: Code
    owner: Name
    case_no: CaseNo | None = None
    level: Level | None = Field(default=None, description="explicit level; otherwise from the matrix")


class Limit(BaseModel):
    """How long a step may take: wall-clock hours or working days, one of them."""

    model_config = ConfigDict(extra="forbid")

    hours: int | None = Field(default=None, ge=1)
    working_days: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_unit(self) -> Self:
        if (self.hours is None) == (self.working_days is None):
            raise ValueError("give either hours or working_days")
        return self


class LevelLimits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    acknowledge: Limit
    plan: Limit


class RiskPolicy(BaseModel):
    """data/risk.toml: the probability x impact matrix, step limits per level, escalation chains."""

    model_config = ConfigDict(extra="forbid")

    impact_weight: dict[str, float]
    red_from: float = Field(description="probability x impact weight at or above: red")
    yellow_from: float = Field(description="at or above: yellow; below: blue")
    limits: dict[Level, LevelLimits]
    # Who is told when a step is missed, one further up each time; "{department}" is filled in.
    chain: list[str] = Field(min_length=1)
    chains: dict[str, list[str]] = Field(default_factory=dict, description="per department, overrides chain")
    satisfaction: "WatchPolicy" = Field(default_factory=lambda: WatchPolicy())

    def level_for(self, probability: float, impact: str) -> Level:
        score = probability * self.impact_weight[impact]
        if score >= self.red_from:
            return Level.RED
        return Level.YELLOW if score >= self.yellow_from else Level.BLUE

    def escalation_chain(self, department: str) -> list[str]:
        return [who.format(department=department) for who in self.chains.get(department, self.chain)]


class Acknowledge(BaseModel):
    """Update `acknowledge`: the emergency (or handling) group has convened."""

    model_config = ConfigDict(extra="forbid")

    officer: Name
    group: Name


class SubmitPlan(BaseModel):
    """Update `submit_plan`: the handling plan, with when it will be carried out."""

    model_config = ConfigDict(extra="forbid")

    officer: Name
    plan: Text = Field(min_length=1)
    due: Instant = Field(description="when the plan will be carried out: a time with an offset")


class Regrade(BaseModel):
    """Update `regrade`: another level, with a reason; the open step's deadline follows the new level."""

    model_config = ConfigDict(extra="forbid")

    level: Level
    reason: Text = Field(min_length=1)
    by: Name


class RiskReviewRecord(BaseModel):
    """Update `review` (复盘): required before a risk can be resolved."""

    model_config = ConfigDict(extra="forbid")

    by: Name
    cause: Text = Field(min_length=1)
    what_worked: Text = Field(min_length=1)
    what_changes: Text = Field(min_length=1)


class Resolve(BaseModel):
    """Update `resolve`: close the risk (after its plan and its review)."""

    model_config = ConfigDict(extra="forbid")

    officer: Name
    summary: Text = Field(min_length=1)


class RiskState(StrEnum):
    AWAITING_ACKNOWLEDGEMENT = "awaiting_acknowledgement"
    AWAITING_PLAN = "awaiting_plan"
    HANDLING = "handling"  # plan in; review and resolution to come
    RESOLVED = "resolved"


class RiskEntry(BaseModel):
    """The risk register's row (风险清单), kept current by the workflow."""

    risk_no: str
    source: str
    type: str
    title: str
    responsible_department: str
    owner: str
    level: Level
    state: RiskState
    case_no: str | None = None
    reported_at: datetime
    acknowledged_at: datetime | None = None
    plan_at: datetime | None = None
    resolved_at: datetime | None = None
    escalations: int = 0


class RiskStatus(BaseModel):
    entry: RiskEntry
    due_at: datetime | None = None
    overdue: bool = False
    plan: str = ""
    reviewed: bool = False
    last_events: list[dict] = Field(default_factory=list)
    # Signal twins refused (newest last): never applied; the reason says how to fix the message.
    refused_signals: list[RefusedSignal] = Field(default_factory=list)
    refused_signal_count: int = 0  # all refused in this run; only the first 100 are audited


class WatchPolicy(BaseModel):
    """The satisfaction watch's window (data/risk.toml [satisfaction])."""

    model_config = ConfigDict(extra="forbid")

    window_days: int = Field(default=30, ge=1, description="ratings of the last N days count")
    min_ratings: int = Field(default=20, ge=1, description="no rate is judged on fewer ratings")
    max_bad_share: float = Field(default=0.05, gt=0, lt=1, description="over this bad-review rate: red risk")
    ratings_per_run: int = Field(default=500, ge=10, description="continue-as-new after this many signals")


# How many of the last counted ratings' case numbers the watch keeps, so that a rating delivered
# twice (a retried delivery, minutes or hours later) counts once. It bounds the carried state
# whatever the rating rate: at most 2,000 case numbers of up to 64 characters (about 140 KB), and
# one count per day of the window (about 50 bytes each): far below Temporal's 2 MiB payload limit.
RECENT_CASES = 2_000


class RatingDay(BaseModel):
    """One Asia/Shanghai day of the watch's window: how many ratings it counted, how many bad."""

    model_config = ConfigDict(extra="forbid")

    day: date
    ratings: int = Field(ge=1)
    bad: int = Field(ge=0)

    @model_validator(mode="after")
    def _bad_among_ratings(self) -> Self:
        if self.bad > self.ratings:
            raise ValueError(f"{self.bad} bad of {self.ratings} ratings")
        return self


class WatchState(BaseModel):
    """SatisfactionWatchWorkflow input: carried across continue-as-new so the window stays intact.
    Its size is bounded whatever the rate: one count per day of the window, and the last
    RECENT_CASES case numbers."""

    model_config = ConfigDict(extra="forbid")

    department: Name
    days: list[RatingDay] = Field(
        default_factory=list, description="ratings and bad reviews per Asia/Shanghai day of the window, oldest first"
    )
    recent: list[CaseNo] = Field(
        default_factory=list,
        max_length=RECENT_CASES,
        description="case numbers of the last ratings counted, newest last: a rating delivered twice counts once",
    )
    open_risk: str | None = None
    over_line: bool = False
    risks_raised: int = 0


class WatchStatus(BaseModel):
    department: str
    ratings: int
    bad: int
    bad_share: float | None = Field(description="None while fewer than min_ratings ratings are in the window")
    over_line: bool
    open_risk: str | None = None


RiskPolicy.model_rebuild()
