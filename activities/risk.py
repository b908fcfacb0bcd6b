"""The risk register (风险清单) and the risk policy, as activities.

`record_risk` upserts the register row with the workflow's current view: writing the same state
twice changes nothing, so a retry is harmless. Reads serve starter.py (`risks`) and reports.
"""

import tomllib
from pathlib import Path

import structlog
from pydantic import ValidationError
from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio import activity

from activities.db import RiskRow, database_activity
from contract.risk import RiskEntry, RiskPolicy

log = structlog.get_logger()


def load_risk_policy(path: Path) -> RiskPolicy:
    try:
        with path.open("rb") as file:
            return RiskPolicy.model_validate(tomllib.load(file))
    except (OSError, tomllib.TOMLDecodeError, ValidationError) as err:
        raise ValueError(f"{path}: {err}") from err


class RiskActivities:
    def __init__(self, engine: Engine, policy: RiskPolicy) -> None:
        self.engine = engine
        self.policy = policy

    @activity.defn(name="risk_policy")
    def risk_policy(self) -> RiskPolicy:
        return self.policy

    @activity.defn(name="record_risk")
    @database_activity
    def record_risk(self, entry: RiskEntry) -> None:
        with Session(self.engine) as session:
            row = session.get(RiskRow, entry.risk_no)
            values = entry.model_dump()
            if row is None:
                session.add(RiskRow(**values))
            else:
                for name, value in values.items():
                    setattr(row, name, value)
            session.commit()
        log.info("risk_recorded", risk_no=entry.risk_no, level=entry.level, state=entry.state)

    def register(self, department: str | None = None, level: str | None = None) -> list[RiskEntry]:
        with Session(self.engine) as session:
            query = select(RiskRow).order_by(RiskRow.reported_at)  # type: ignore[arg-type]
            if department:
                query = query.where(RiskRow.responsible_department == department)
            if level:
                query = query.where(RiskRow.level == level)
            return [RiskEntry.model_validate(r, from_attributes=True) for r in session.exec(query)]
