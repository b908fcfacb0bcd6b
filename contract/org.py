"""The organisation directory (data/org.toml + the public keys file): who exists, in which hall or
department, with which roles, and which keys speak for whom.

A workflow holds the directory as it stood when the workflow started, and each later change it
was sent (signal `directory_changed`); both are in its history, so a replay decides exactly as
the run did, whatever the file says today. Every rule here is a pure function of that copy.
"""

from datetime import date, datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contract.assertion import ShortLine
from contract.common import SHANGHAI, Code, Instant, Name

APPLICANT = "applicant"  # the applicant, as a hall's or portal's system vouches for them
SYSTEM_ACTOR = "hallflow"  # hallflow's own workers


class Role(StrEnum):
    CLERK = "clerk"  # 窗口: accepts cases at their hall
    SUPERVISOR = "supervisor"  # 大厅督办: watches and urges the hall's cases
    REVIEWER = "reviewer"  # 综合研判, for the matters whose catalog entry names them
    PANEL_MEMBER = "panel_member"  # 集体决策, on the panels whose catalog entry names them
    PANEL_CHAIR = "panel_chair"
    OFFICER = "department_officer"  # opinions, call-backs, rectifications, answers of their department
    HEAD = "department_head"  # the department's head: first rank a missed risk step reaches
    COORDINATOR = "coordinator"  # 首席协调官 of a lead department: reclassifies, chases opinions
    RISK_OWNER = "risk_owner"
    DIRECTORY_ADMIN = "directory_admin"  # sends directory changes to running workflows


class Unit(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: Code
    name: Name


class Officer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: Code
    department: Code | None = None  # hall staff have a hall instead
    hall: Code | None = None
    roles: list[Role] = Field(min_length=1)
    # Escalation ranks that data/risk.toml's chains name besides department heads, e.g. "office:director".
    ranks: list[str] = Field(default_factory=list)
    # The last day (Asia/Shanghai) they may act; from the next day on they cannot.
    left_after: date | None = None

    @model_validator(mode="after")
    def _placed(self) -> "Officer":
        if (self.department is None) == (self.hall is None):
            raise ValueError("an officer belongs to exactly one department or one hall")
        if Role.CLERK in self.roles and self.hall is None:
            raise ValueError("a clerk belongs to a hall")
        return self


class System(BaseModel):
    """A calling system (starter.py at a hall, a portal, another bureau's system) and whom its key
    may speak for: "*" anyone; "applicant"; "hallflow"; "hall:<code>" the hall and its staff;
    "department:<code>" its officers; or one officer id."""

    model_config = ConfigDict(extra="forbid")
    id: Code
    speaks_for: list[str] = Field(min_length=1)


class PublicKey(BaseModel):
    """A key that may sign assertions; security/keys.py adds the check of the key material."""

    model_config = ConfigDict(extra="forbid")
    id: ShortLine  # a line of the signed text
    principal: ShortLine  # a system id or an officer id
    alg: Literal["ed25519", "sm2"]
    public: str = Field(min_length=1, max_length=400)
    not_after: Instant | None = None  # retired from this instant on


class Directory(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str = Field(min_length=1, max_length=100)
    # Production requires a signed actor assertion on every message (docs/security.md).
    require_assertions: bool = True
    departments: list[Unit] = Field(default_factory=list)
    halls: list[Unit] = Field(default_factory=list)
    officers: list[Officer] = Field(default_factory=list)
    systems: list[System] = Field(default_factory=list)
    keys: list[PublicKey] = Field(default_factory=list)

    # ---- lookups -----------------------------------------------------------------------------

    def officer(self, actor: str) -> Officer | None:
        return next((o for o in self.officers if o.id == actor), None)

    def key(self, key_id: str) -> PublicKey | None:
        return next((k for k in self.keys if k.id == key_id), None)

    def system(self, system_id: str) -> System | None:
        return next((s for s in self.systems if s.id == system_id), None)

    def is_hall(self, code: str) -> bool:
        return any(h.code == code for h in self.halls)

    def is_department(self, code: str) -> bool:
        return any(d.code == code for d in self.departments)

    def active(self, actor: str, at: datetime) -> Officer | None:
        """The officer, if they exist and have not left by `at`."""
        officer = self.officer(actor)
        if officer is None or (officer.left_after is not None and at.astimezone(SHANGHAI).date() > officer.left_after):
            return None
        return officer

    def with_role(self, role: Role, at: datetime, *, department: str | None = None, hall: str | None = None) -> list[str]:
        """Who holds `role` (in a department or hall) on `at`: the names a refusal lists."""
        return [
            o.id
            for o in self.officers
            if role in o.roles
            and (department is None or o.department == department)
            and (hall is None or o.hall == hall)
            and self.active(o.id, at) is not None
        ]

    def holders(self, rank: str, at: datetime) -> list[str]:
        """Who a rank of an escalation chain means: "head:<dept>" its heads, "office:<x>" whoever holds it."""
        if rank.startswith("head:"):
            return self.with_role(Role.HEAD, at, department=rank.removeprefix("head:"))
        return [o.id for o in self.officers if rank in o.ranks and self.active(o.id, at) is not None] or (
            [rank] if self.active(rank, at) is not None else []
        )

    def speaks_for(self, principal: str, actor: str, at: datetime) -> bool:
        """May a key of `principal` assert `actor`? An officer's own key speaks only for them."""
        system = self.system(principal)
        if system is None:
            return principal == actor and self.active(actor, at) is not None
        officer = self.officer(actor)
        for scope in system.speaks_for:
            if scope in ("*", actor):
                return True
            kind, _, code = scope.partition(":")
            if kind == "hall" and (actor == code or (officer is not None and officer.hall == code)):
                return True
            if kind == "department" and officer is not None and officer.department == code:
                return True
        return False


class DirectoryChange(BaseModel):
    """Signal `directory_changed`: the whole new directory, sent by `starter.py admin directory
    publish` to every running workflow and signed by a directory admin's key."""

    directory: Directory
