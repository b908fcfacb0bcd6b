"""The application database: engine, tables, and the one rule for stored times (activities/stored.py).

SQLite file by default (development, a single hall), PostgreSQL by URL (production).
Personal data lives in `applicants` only, sealed; every other table holds opaque ids and codes
(个人信息保护法 §6: minimum personal data). `audit` is append-only: nothing updates or deletes it,
and each subject's rows are hash-chained (activities/chain.py) so that a change made behind
hallflow's back shows.
"""

import functools
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, ParamSpec, TypeVar

import structlog
from sqlalchemy import Engine, String, Text, create_engine, event, exc, inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlmodel import Field, Session, SQLModel
from temporalio.exceptions import ApplicationError

from activities.chain import chain_existing_rows, configured_algorithm
from activities.stored import AuditRow, UtcDateTime, as_utc  # noqa: F401 (re-exported: import them from here)
from contract.case import Applicant
from security.sealing import LOOKUP_HEX, sealed_length

T = TypeVar("T")
P = ParamSpec("P")
log = structlog.get_logger()


class CaseRow(SQLModel, table=True):
    """The case projection (办件): its current stage and deadlines, for halls and reports."""

    __tablename__ = "cases"

    # The primary key is what refuses a second case under the same number (register_case).
    case_no: str = Field(primary_key=True)
    matter_code: str
    hall: str
    # Known from register_case; null while only events have arrived.
    clerk: str | None = None
    applicant_id: str | None = Field(default=None, index=True)
    workflow_id: str | None = None
    run_id: str | None = None  # the workflow run the case number belongs to
    stage: str = Field(index=True)
    department: str | None = None
    received_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    accepted_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    promised_due_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    statutory_due_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    deferral_due_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    closed_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    outcome: str | None = None
    updated_at: datetime = Field(sa_type=UtcDateTime)


def _longest(field: str) -> int:
    """The most characters contract/case.py's Applicant allows in `field`."""
    schema = Applicant.model_json_schema()["properties"][field]
    return max(choice.get("maxLength", 0) for choice in schema.get("anyOf", [schema]))


class ApplicantRow(SQLModel, table=True):
    """The applicant's personal details: the ONLY table holding personal data, and only sealed
    (security/sealing.py: encrypted with a named data key, bound to this row and column).
    Each column is as long as the longest value the contract allows, sealed."""

    __tablename__ = "applicants"

    applicant_id: str = Field(primary_key=True)
    kind: str  # person | enterprise
    name_sealed: str | None = Field(default=None, sa_type=String(sealed_length(_longest("name"))))
    # ID card number or unified social credit code.
    id_number_sealed: str | None = Field(default=None, sa_type=String(sealed_length(_longest("id_number"))))
    phone_sealed: str | None = Field(default=None, sa_type=String(sealed_length(_longest("phone"))))
    # HMAC of the normalised ID number: how a person is found again (broken commitments).
    id_number_hmac: str | None = Field(default=None, index=True, sa_type=String(LOOKUP_HEX))
    updated_at: datetime = Field(sa_type=UtcDateTime)


class OutboxRow(SQLModel, table=True):
    """A notice (contract.records.Notice) and whether it has been sent."""

    __tablename__ = "outbox"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True)
    recipient: str = Field(index=True)  # opaque id: applicant id, department code, officer
    kind: str
    subject_type: str
    subject_id: str = Field(index=True)
    title: str = Field(sa_type=Text)
    body: str = Field(sa_type=Text)
    at: datetime = Field(sa_type=UtcDateTime)
    # Committed before the channel is called: a claimed notice is never handed to it again.
    claimed_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UtcDateTime)  # null until the channel took it
    channel: str  # name of the channel that sends it


class BrokenCommitmentRow(SQLModel, table=True):
    """告知承诺 broken: while one is on record the applicant may not use deferral (容缺)."""

    __tablename__ = "broken_commitments"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True)
    applicant_id: str = Field(index=True)
    # The applicant's ID-number HMAC when it was recorded: the same person under another
    # applicant id is still found, by hash, never by the number itself.
    id_number_hmac: str | None = Field(default=None, index=True, sa_type=String(LOOKUP_HEX))
    case_no: str
    at: datetime = Field(sa_type=UtcDateTime)


class RatingRow(SQLModel, table=True):
    """好差评: one rating per case. No rater identity: the case number is the only link, and the
    satisfaction watch (step 4) and reports count these rows by department and matter."""

    __tablename__ = "ratings"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True)
    case_no: str = Field(unique=True)
    matter_code: str = Field(index=True)
    department: str = Field(index=True)
    hall: str
    score: int
    bad: bool
    comment: str = Field(default="", sa_type=Text)
    channel: str
    at: datetime = Field(sa_type=UtcDateTime)


class PublicationRow(SQLModel, table=True):
    """采纳公示: one answered suggestion, published with no submitter identity (activities/publication.py)."""

    __tablename__ = "publications"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True)  # idempotency key made by the workflow
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


class RiskRow(SQLModel, table=True):
    """The risk register (风险清单): each risk's current level and state (activities/risk.py)."""

    __tablename__ = "risks"

    risk_no: str = Field(primary_key=True)
    source: str
    type: str
    title: str
    responsible_department: str = Field(index=True)
    owner: str
    level: str = Field(index=True)
    state: str
    case_no: str | None = Field(default=None, index=True)
    reported_at: datetime = Field(sa_type=UtcDateTime)
    acknowledged_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    plan_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    resolved_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    escalations: int = 0


def make_engine(url: str, connect_args: dict[str, Any] | None = None) -> Engine:
    """An engine for `url`: a SQLite file (its folder is created) or PostgreSQL.

    hide_parameters: SQLAlchemy puts a statement's values into its errors and its log lines
    (at DEBUG): never show them (a reason typed at a window, an applicant's sealed details).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # pre_ping: a pooled connection dropped by the server or a failover is replaced, not used.
        return create_engine(url, pool_pre_ping=True, hide_parameters=True, connect_args=connect_args or {})
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    # Activities run in a thread pool, so connections move between threads.
    engine = create_engine(
        url, hide_parameters=True, connect_args={"check_same_thread": False, **(connect_args or {})}
    )
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # WAL: readers do not block the writer. The driver must not open transactions on its own:
    # _sqlite_on_begin does it.
    dbapi_connection.isolation_level = None
    dbapi_connection.execute("PRAGMA journal_mode=WAL")
    dbapi_connection.execute("PRAGMA busy_timeout=10000")


def _sqlite_on_begin(connection: Any) -> None:
    # SQLite allows one writer. Taking the write lock at BEGIN makes concurrent transactions
    # queue (busy_timeout) instead of failing halfway when a read turns into a write.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


# What an operator needs from a driver's error, in a few words: its text may hold the statement
# and, for some errors, a value from it. First match wins.
_REASONS = [
    (("connection refused",), "connection refused"),
    (("timeout", "timed out"), "timed out"),
    (("could not translate host name", "name or service not known", "failed to resolve host", "nodename nor servname"),
     "host not found"),
    (("authentication failed", "no pg_hba.conf entry"), "authentication failed"),
    (("too many clients", "too many connections", "remaining connection slots"), "too many connections"),
    (("terminating connection", "server closed the connection", "connection is closed", "consuming input failed",
      "connection reset", "ssl syscall", "eof detected", "connection is lost", "broken pipe"), "connection lost"),
    (("the database system is starting up", "the database system is shutting down", "in recovery mode"),
     "server starting or stopping"),
    (("no such table", "no such column", 'relation "', 'column "'), "schema out of date"),
    (("does not exist",), "database does not exist"),
    (("database is locked",), "database locked"),
    (("unable to open database file",), "cannot open the database file"),
    (("disk i/o error", "database or disk is full", "readonly database", "read-only"), "disk error"),
]
_UNAVAILABLE = (exc.OperationalError, exc.InterfaceError, exc.DisconnectionError, exc.TimeoutError)


def failure_reason(err: exc.SQLAlchemyError) -> tuple[str, bool]:
    """A database error in a few words, and whether it means the database is unavailable."""
    driver = err.orig if isinstance(err, exc.DBAPIError) and err.orig is not None else err
    said = str(driver).lower()
    if isinstance(err, exc.TimeoutError):
        reason = "connection pool exhausted"
    else:
        reason = next((r for needles, r in _REASONS if any(n in said for n in needles)), type(driver).__name__)
    unavailable = isinstance(err, _UNAVAILABLE) or getattr(err, "connection_invalidated", False)
    return reason, unavailable and reason != "schema out of date"


def database_failure(err: exc.SQLAlchemyError) -> ApplicationError:
    """The activity failure for a database error: a few words, no statement, no values.

    The Web UI shows an activity's last failure: a driver's multi-kilobyte traceback goes over the
    server's size limit ("Failure exceeds size limit") and SQLAlchemy's text can hold a statement's
    values. Retryable: the activity tries again until the database is back.
    """
    driver = err.orig if isinstance(err, exc.DBAPIError) and err.orig is not None else err
    reason, unavailable = failure_reason(err)
    if unavailable:
        log.warning("database_unavailable", reason=reason, error=type(driver).__name__)
        return ApplicationError(f"application database unavailable: {reason}", type="DatabaseUnavailable")
    log.error("database_error", reason=reason, error=type(driver).__name__)
    return ApplicationError(f"application database error: {reason}", type="DatabaseError")


def database_activity(fn: Callable[P, T]) -> Callable[P, T]:
    """For every activity that touches the application database, under its `@activity.defn`:
    a database error fails the activity with `database_failure`'s short message, chaining
    nothing (Temporal would send the driver's error along as the failure's cause)."""

    @functools.wraps(fn)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except exc.SQLAlchemyError as err:
            failure = database_failure(err)
        raise failure  # outside the except block: no __context__ either

    return guarded


def transaction(engine: Engine, write: Callable[[Session], T], attempts: int = 2) -> T:
    """Run `write` in one transaction and commit.

    Two attempts of one activity may run at once (a retry after a timeout while the first is
    still working): both check a key, both insert, one hits the unique constraint. Then `write`
    runs once more and finds the row the other attempt committed. An audit row may meet another
    writer's row at its place in the chain instead: it then runs again on the new head, as many
    `attempts` as there are writers (activities/chain.py).
    """
    for attempt in range(1, attempts + 1):
        with Session(engine) as session:
            try:
                result = write(session)
                session.commit()
                return result
            except exc.IntegrityError:
                if attempt == attempts:
                    raise
    raise AssertionError("unreachable")


# Columns added after a table was first created: (table, column, SQL type). create_all leaves an
# existing table as it is, so a database made by an earlier version (a developer's
# var/hallflow.db) gets them here. Add-only, nullable: old rows keep working.
ADDED_COLUMNS = [
    ("cases", "run_id", "VARCHAR"),
    ("outbox", "claimed_at", "TIMESTAMP WITH TIME ZONE"),
    ("audit", "signed_with", "VARCHAR"),
    ("audit", "seq", "INTEGER"),
    ("audit", "prev_hash", "VARCHAR"),
    ("audit", "hash_alg", "VARCHAR"),
    ("audit", "hash", "VARCHAR"),
    ("broken_commitments", "id_number_hmac", "VARCHAR(64)"),
]


def _chain_audit(conn: Connection) -> None:
    """The audit rows written before the chain are chained, and the chain's index made, in the
    transaction that adds its columns: no worker appends to a chain before its old rows are in."""
    chained = chain_existing_rows(conn, configured_algorithm())
    conn.execute(text("CREATE UNIQUE INDEX IF NOT EXISTS ux_audit_chain ON audit (subject_type, subject_id, seq)"))
    log.info("audit_chained", rows=chained)


AFTER_ADDING: dict[str, Callable[[Connection], None]] = {"audit": _chain_audit}


def create_tables(engine: Engine) -> None:
    """Create missing tables and add missing columns (called on worker start)."""
    if engine.dialect.name == "postgresql":
        # Replicas starting together on a new database: one creates, the others wait and find it
        # made (create_all checks, then creates; two at once collide on the catalog).
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended('hallflow create_tables', 0))"))
            SQLModel.metadata.create_all(conn)
    else:
        SQLModel.metadata.create_all(engine)
    if "name_sealed" not in {c["name"] for c in inspect(engine).get_columns("applicants")}:
        # Made before personal data was sealed: its rows are plaintext, and nothing that old was
        # released, so there is no migration. Said at start, not by every case's registration.
        raise RuntimeError(
            f"{engine.url.render_as_string(hide_password=True)}: the applicants table predates sealed personal "
            "data and holds it in plaintext; drop it (DROP TABLE applicants), or delete a development database, "
            "then start again"
        )

    def missing(table: str) -> list[tuple[str, str]]:
        present = {c["name"] for c in inspect(engine).get_columns(table)}
        return [(column, sql_type) for t, column, sql_type in ADDED_COLUMNS if t == table and column not in present]

    # A table's columns in one transaction with what must follow them (AFTER_ADDING).
    for table in dict.fromkeys(t for t, _, _ in ADDED_COLUMNS):
        columns = missing(table)
        if not columns:
            continue
        try:
            with engine.begin() as conn:
                for column, sql_type in columns:
                    conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}"))
                if table in AFTER_ADDING:
                    AFTER_ADDING[table](conn)
        except exc.DBAPIError:
            if missing(table):  # not another worker starting at the same moment
                raise
            continue
        log.info("columns_added", table=table, columns=[column for column, _ in columns])
