"""The matter catalog (事项目录): one standard per matter, loaded from data/matters.toml."""

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contract.common import Code, Name


class Material(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: Code
    name: Name
    # Core materials must be present at acceptance; non-core ones may be deferred (容缺).
    core: bool = True


class Panel(BaseModel):
    """Collective decision (集体决策) panel of a matter."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    members: list[Name] = Field(min_length=1)
    chair: Name
    # Share of members who must vote for the decision to stand: at least half (domain.md).
    quorum: float = Field(default=0.5, ge=0.5, le=1)
    # majority: a majority of the members who should attend decides;
    # chair_decides: the chair decides after every present member has spoken.
    rule: Literal["majority", "chair_decides"] = "majority"
    voting_days: int = Field(default=3, ge=1, description="working days the vote stays open")

    @model_validator(mode="after")
    def _chair_is_member(self) -> Self:
        if self.chair not in self.members:
            raise ValueError(f"chair {self.chair!r} must be one of the members")
        if len(set(self.members)) != len(self.members):
            raise ValueError("members must not repeat")
        return self


class Consultation(BaseModel):
    """A department asked for its opinion in parallel approval (并联审批)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    department: Code
    deadline_days: int = Field(ge=1, description="working days the department has to answer")
    # 逾期视为同意: no answer in time counts as consent.
    silence_is_consent: bool = False


class Matter(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: Code
    name: Name
    lead_department: Code
    materials: list[Material] = Field(min_length=1)
    statutory_days: int = Field(ge=1, description="法定时限, working days")
    promised_days: int = Field(ge=1, description="承诺时限, working days; the case must end within it")
    # How long deferred (容缺) materials may wait; never beyond the promised limit.
    deferral_days: int = Field(ge=1)
    reviewers: list[Name] = Field(default_factory=list, description="who may do the comprehensive review")
    panel: Panel | None = None
    consult: list[Consultation] = Field(default_factory=list)
    # 秒批: decided by rule, without a person, when materials are complete.
    automatic: bool = False

    @model_validator(mode="after")
    def _limits_and_routes(self) -> Self:
        if self.promised_days > self.statutory_days:
            raise ValueError(
                f"promised_days ({self.promised_days}) may not exceed statutory_days ({self.statutory_days})"
            )
        if self.deferral_days > self.promised_days:
            raise ValueError(
                f"deferral_days ({self.deferral_days}) may not exceed promised_days ({self.promised_days})"
            )
        codes = [m.code for m in self.materials]
        if len(set(codes)) != len(codes):
            raise ValueError("material codes must not repeat")
        if not self.automatic and not self.reviewers:
            raise ValueError("a matter that is not automatic needs at least one reviewer")
        departments = [c.department for c in self.consult]
        if self.lead_department in departments:
            raise ValueError("the lead department does not consult itself")
        if len(set(departments)) != len(departments):
            raise ValueError("consulted departments must not repeat")
        for c in self.consult:
            if c.deadline_days > self.promised_days:
                raise ValueError(f"consult {c.department}: deadline_days may not exceed promised_days")
        if self.panel:
            if self.panel.voting_days > self.promised_days:
                raise ValueError("panel.voting_days may not exceed promised_days")
            # Recusal: the tier-1 reviewer does not vote on the same case, so the panel must
            # still reach quorum without any one reviewer, and a deciding chair cannot review.
            members = set(self.panel.members)
            for reviewer in set(self.reviewers) & members:
                if len(members) - 1 < self.panel.quorum * len(members):
                    raise ValueError(f"panel cannot reach quorum when reviewer {reviewer!r} recuses")
            if self.panel.rule == "chair_decides" and self.panel.chair in self.reviewers:
                raise ValueError("under chair_decides the chair may not also be a reviewer (recusal)")
        return self

    @property
    def core_codes(self) -> set[str]:
        return {m.code for m in self.materials if m.core}

    @property
    def material_codes(self) -> set[str]:
        return {m.code for m in self.materials}

    def material_names(self, codes: "list[str] | set[str]") -> list[str]:
        by_code = {m.code: m.name for m in self.materials}
        return [by_code.get(c, c) for c in sorted(codes)]
