"""采纳公示: the public list of answered suggestions, adopted and not adopted with reasons.

Written by SuggestionWorkflow through the idempotent activity `publish_answer`; read by starter.py
and a publishing site. It holds no submitter identity.
"""

from datetime import datetime

import structlog
from sqlalchemy import Engine
from sqlmodel import Field, Session, SQLModel, select
from temporalio import activity

from activities.db import UtcDateTime
from contract.suggestion import Publication, PublicationRecord

log = structlog.get_logger()


class PublicationRow(SQLModel, table=True):
    __tablename__ = "publications"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True)
    suggestion_no: str = Field(unique=True)
    topic: str
    department: str = Field(index=True)
    complexity: str
    adopted: bool
    reason: str = ""
    measures: str = ""
    submitted_at: datetime = Field(sa_type=UtcDateTime)
    answered_at: datetime = Field(sa_type=UtcDateTime)
    on_time: bool


class PublicationActivities:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @activity.defn(name="publish_answer")
    def publish_answer(self, record: PublicationRecord) -> bool:
        """Publish the answer once; False when a retry finds it already published."""
        with Session(self.engine) as session:
            if session.exec(select(PublicationRow.id).where(PublicationRow.key == record.key)).first() is not None:
                return False
            session.add(PublicationRow(key=record.key, **record.entry.model_dump()))
            session.commit()
        log.info("answer_published", suggestion_no=record.entry.suggestion_no, adopted=record.entry.adopted)
        return True

    def published(self, department: str | None = None) -> list[Publication]:
        """The public list, newest answer first."""
        with Session(self.engine) as session:
            query = select(PublicationRow).order_by(PublicationRow.answered_at.desc())  # type: ignore[attr-defined]
            if department:
                query = query.where(PublicationRow.department == department)
            return [Publication.model_validate(r, from_attributes=True) for r in session.exec(query)]
