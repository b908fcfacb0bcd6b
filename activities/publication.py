"""采纳公示: the public list of answered suggestions, adopted and not adopted with reasons.

Written by SuggestionWorkflow through the idempotent activity `publish_answer`; read by starter.py
and a publishing site. It holds no submitter identity. One entry per suggestion: a second answer
for the same suggestion (a run reset to before its answer answers again) replaces the first.
"""


import structlog
from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio import activity

from activities.db import PublicationRow, database_activity, transaction
from contract.suggestion import Publication, PublicationRecord

log = structlog.get_logger()


class PublicationActivities:
    """The publication table as activities and reads. Register `publish_answer` on the worker."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @activity.defn(name="publish_answer")
    @database_activity
    def publish_answer(self, record: PublicationRecord) -> bool:
        """Publish the answer once; False when a retry finds it already published."""
        entry = record.entry.model_dump()

        def write(session: Session) -> str:
            row = session.exec(
                select(PublicationRow).where(PublicationRow.suggestion_no == record.entry.suggestion_no)
            ).first()
            if row is None:
                session.add(PublicationRow(key=record.key, **entry))
                return "published"
            if row.key == record.key:
                return "already_published"
            # Another run answered it first (a reset, or a number started twice): the newest answer stands.
            for name, value in entry.items():
                setattr(row, name, value)
            row.key = record.key
            return "replaced"

        outcome = transaction(self.engine, write)
        if outcome == "already_published":
            log.debug("answer_already_published", suggestion_no=record.entry.suggestion_no, key=record.key)
            return False
        if outcome == "replaced":
            log.warning("published_answer_replaced", suggestion_no=record.entry.suggestion_no, key=record.key)
        else:
            log.info("answer_published", suggestion_no=record.entry.suggestion_no, adopted=record.entry.adopted)
        return True

    def published(self, department: str | None = None) -> list[Publication]:
        """The public list, newest answer first."""
        query = select(PublicationRow).order_by(
            PublicationRow.answered_at.desc(), PublicationRow.id.desc()  # type: ignore[attr-defined,union-attr]
        )
        if department:
            query = query.where(PublicationRow.department == department)
        with Session(self.engine) as session:
            return [Publication.model_validate(r, from_attributes=True) for r in session.exec(query)]
