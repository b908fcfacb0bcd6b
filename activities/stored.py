"""What activities/db.py and activities/chain.py share, so that neither imports the other: the one
rule for stored times, and the audit row that chain.py links by hash and db.py's create_tables
chains when it adds the chain's columns. db.py re-exports both: import them from there.
"""

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, DateTime, Index, Text, TypeDecorator
from sqlmodel import Field, SQLModel


def as_utc(value: datetime) -> datetime:
    """The one place stored times are normalised: SQLite gives naive values, which are UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


class UtcDateTime(TypeDecorator[datetime]):
    """DateTime(timezone=True) that takes aware values only and gives back UTC-aware ones.

    SQLite has no zone-aware type and would drop the offset silently, so every value is
    converted to UTC before it is written; PostgreSQL returns the session's zone, so reads
    are converted back to UTC too.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: hallflow stores timezone-aware instants only")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else as_utc(value)


class AuditRow(SQLModel, table=True):
    """One state change (contract.records.AuditEntry). Append-only, hash-chained per subject."""

    __tablename__ = "audit"
    __table_args__ = (
        Index("ix_audit_subject", "subject_type", "subject_id"),
        # One row per place in a subject's chain: two writers cannot both append after one head.
        Index("ux_audit_chain", "subject_type", "subject_id", "seq", unique=True),
    )

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True)  # idempotency key made by the workflow
    subject_type: str
    subject_id: str
    action: str
    actor: str
    reason: str = Field(default="", sa_type=Text)
    at: datetime = Field(sa_type=UtcDateTime)  # when it happened (workflow time)
    workflow_id: str
    run_id: str
    details: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)  # codes, counts, dates only
    signed_with: str | None = None  # the key id that signed the message behind this row, if any
    recorded_at: datetime = Field(sa_type=UtcDateTime)  # when this row was written
    # The chain (activities/chain.py). Null only on a row added outside it, which verify reports.
    seq: int | None = None  # 1, 2, 3 … within the subject
    prev_hash: str | None = None  # the subject's previous row's hash
    hash_alg: str | None = None  # sha256 | sm3
    hash: str | None = None  # over every field above but id
