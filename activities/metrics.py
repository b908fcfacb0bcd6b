"""hallflow's Prometheus metrics, served with the SDK's own on one port (HALLFLOW_METRICS_PORT).

The SDK's runtime serves its metrics (task latencies, schedule-to-start, sticky cache: prefix
`temporal_`) and hands out its meter; hallflow's instruments (prefix `hallflow_`) come from the
same meter. Each fact is taken where it is certain:

- Counters from what the application database COMMITS (`CommittedRows`): an audit row or a
  rating counts once its transaction commits on the worker's engine, whichever activity wrote it,
  so an activity retry that finds its row already there counts nothing, and neither does a
  rolled-back transaction. A counter starts at 0 again when the worker restarts; Prometheus'
  rate() and increase() expect that.
- Gauges of current state (`StateGauges`): read from the database every REFRESH_SECONDS (open
  cases, overdue cases, open risks), from Temporal (the task queue's backlog) and from the
  calendar directory (its last year), so they are right again one refresh after a restart.
  Every worker replica reports the same values: aggregate them with max, not sum.
- Failed activity attempts by error type (`ActivityFailures`), a worker interceptor.

Labels are codes only (matter, department, level, stage, action, error type): never a case
number or a person, so the series stay few.
"""

import asyncio
import functools
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import Connection, Engine, event, exists, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import object_session
from sqlalchemy.orm.util import identity_key
from sqlmodel import Session, col
from temporalio import activity
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.common import MetricMeter
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.runtime import Runtime
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from activities.db import AuditRow, CaseRow, RatingRow, RiskRow, failure_reason, make_engine
from contract.case import CaseStage
from contract.risk import Level, RiskState

log = structlog.get_logger()

REFRESH_SECONDS = 15.0
OPEN_STAGES = [stage.value for stage in CaseStage if not stage.is_final]
CLOSED_STAGES = [stage.value for stage in CaseStage if stage.is_final]
ACCEPTED = {"accepted": "false", "accepted_with_deferral": "true"}  # action: deferral label
CLOSED = {"not_accepted", "approved", "rejected", "withdrawn", "terminated"}  # the final stages' actions
OVERDUE, NEAR_DEADLINE = "deadline_red", "deadline_yellow"  # workflows/case/decide.py


def bind_address(host: str, port: int | None) -> str | None:
    """Where the runtime serves /metrics; None (no exporter) when the port is 0 or unset."""
    if not port:
        return None
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Metrics:
    """hallflow's instruments, on a runtime's meter."""

    def __init__(self, meter: MetricMeter) -> None:
        counter, gauge = meter.create_counter, meter.create_gauge
        self.audit_rows = counter("hallflow_audit_rows_total", "Audit rows committed, by subject type and action")
        self.accepted = counter("hallflow_cases_accepted_total", "Cases accepted, by matter and whether with deferral")
        self.closed = counter(
            "hallflow_cases_closed_total",
            "Cases ended, by matter and outcome (approved, rejected, not_accepted, withdrawn, terminated)",
        )
        self.overdue = counter("hallflow_cases_overdue_total", "Cases that passed their promised limit, by matter")
        self.near_deadline = counter(
            "hallflow_cases_near_deadline_total", "Cases that reached 80% of their promised limit, by matter"
        )
        self.ratings = counter("hallflow_ratings_total", "Ratings (好差评), by department and score")
        self.bad_reviews = counter("hallflow_bad_reviews_total", "Bad reviews (score 1-2), by department")
        self.activity_failures = counter(
            "hallflow_activity_failures_total", "Failed activity attempts, by activity type and error type"
        )
        self.open_cases = gauge("hallflow_open_cases", "Cases not yet ended, by stage")
        self.overdue_cases = gauge("hallflow_overdue_cases", "Open cases past their promised limit, by matter")
        self.open_risks = gauge("hallflow_open_risks", "Risks not yet resolved, by level")
        self.backlog = gauge("hallflow_task_queue_backlog", "Tasks waiting for a worker, by task queue and type")
        self.backlog_age = gauge(
            "hallflow_task_queue_backlog_age_seconds", "Age of the oldest waiting task, by task queue and type"
        )
        self.calendar_last_year = gauge(
            "hallflow_calendar_last_year", "The last year the working-day calendar directory has a file for"
        )
        self.refreshed_at = gauge(
            "hallflow_state_refreshed_timestamp_seconds", "When the gauges of current state were last read"
        )


def runtime_of(client: Client) -> Runtime:
    return client.service_client.config.runtime or Runtime.default()


@functools.cache
def _metrics(meter: MetricMeter) -> Metrics:
    return Metrics(meter)


def for_client(client: Client) -> Metrics | None:
    """hallflow's instruments on the client's runtime; None when that runtime serves no metrics."""
    meter = runtime_of(client).metric_meter
    return None if meter is MetricMeter.noop else _metrics(meter)


# --- counters: what the database committed -------------------------------------------------------


class CommittedRows:
    """Counts audit rows and ratings as their transaction commits on `engine`.

    An inserted row is noted on its connection (SQLAlchemy's `after_insert`), dropped with a
    savepoint or a transaction that rolls back, and counted at the commit. The counts are sent
    as the commit is sent: one that fails after that (the connection lost) may count a row that
    a retry then counts again."""

    PENDING = "hallflow_metrics_pending"

    def __init__(self, metrics: Metrics, engine: Engine) -> None:
        self.metrics = metrics
        self.engine = engine
        self._mapped = [(AuditRow, self._audit_inserted), (RatingRow, self._rating_inserted)]
        self._engine_events = [
            ("begin", self._reset),
            ("commit", self._commit),
            ("rollback", self._reset),
            ("savepoint", self._savepoint),
            ("rollback_savepoint", self._rollback_savepoint),
            ("release_savepoint", self._release_savepoint),
        ]

    def install(self) -> "CommittedRows":
        for model, listener in self._mapped:
            event.listen(model, "after_insert", listener)
        for name, listener in self._engine_events:
            event.listen(self.engine, name, listener)
        return self

    def remove(self) -> None:
        for model, listener in self._mapped:
            event.remove(model, "after_insert", listener)
        for name, listener in self._engine_events:
            event.remove(self.engine, name, listener)

    # Pending counts live on the connection: (counter, attributes) pairs, and the length of that
    # list at each open savepoint.

    def _pending(self, conn: Connection) -> list[tuple[Any, dict[str, str]]]:
        return conn.info.setdefault(self.PENDING, ([], []))[0]

    def _marks(self, conn: Connection) -> list[int]:
        return conn.info.setdefault(self.PENDING, ([], []))[1]

    def _reset(self, conn: Connection) -> None:
        conn.info.pop(self.PENDING, None)

    def _commit(self, conn: Connection) -> None:
        for counter, attributes in conn.info.pop(self.PENDING, ([], []))[0]:
            counter.add(1, attributes)

    def _savepoint(self, conn: Connection, name: str) -> None:
        self._marks(conn).append(len(self._pending(conn)))

    def _rollback_savepoint(self, conn: Connection, name: str, context: Any) -> None:
        marks = self._marks(conn)
        if marks:
            del self._pending(conn)[marks.pop() :]

    def _release_savepoint(self, conn: Connection, name: str, context: Any) -> None:
        marks = self._marks(conn)
        if marks:
            marks.pop()

    def _note(self, conn: Connection, counter: Any, **attributes: str) -> None:
        self._pending(conn).append((counter, attributes))

    def _audit_inserted(self, mapper: Any, conn: Connection, row: AuditRow) -> None:
        if conn.engine is not self.engine:
            return
        m = self.metrics
        self._note(conn, m.audit_rows, subject_type=row.subject_type, action=row.action)
        if row.subject_type != "case":
            return
        if row.action in ACCEPTED:
            self._note(conn, m.accepted, matter=self._matter(conn, row), deferral=ACCEPTED[row.action])
        elif row.action in CLOSED:
            self._note(conn, m.closed, matter=self._matter(conn, row), outcome=row.action)
        elif row.action == OVERDUE:
            self._note(conn, m.overdue, matter=self._matter(conn, row))
        elif row.action == NEAR_DEADLINE:
            self._note(conn, m.near_deadline, matter=self._matter(conn, row))

    def _rating_inserted(self, mapper: Any, conn: Connection, row: RatingRow) -> None:
        if conn.engine is not self.engine:
            return
        self._note(conn, self.metrics.ratings, department=row.department, score=str(row.score))
        if row.bad:
            self._note(conn, self.metrics.bad_reviews, department=row.department)

    @staticmethod
    def _matter(conn: Connection, row: AuditRow) -> str:
        """The case's matter: from the case row written in the same transaction (a case's audit
        row goes with its case row), else from the table."""
        session = object_session(row)
        if session is not None:
            case = session.identity_map.get(identity_key(CaseRow, row.subject_id))
            case = case or next(
                (o for o in session.new if isinstance(o, CaseRow) and o.case_no == row.subject_id), None
            )
            if case is not None:
                return case.matter_code
        found = conn.execute(select(CaseRow.matter_code).where(CaseRow.case_no == row.subject_id)).scalar()
        return found or "unknown"


def count_commits(client: Client, engine: Engine) -> CommittedRows | None:
    """Count what `engine` commits, when the client's runtime serves metrics."""
    metrics = for_client(client)
    return None if metrics is None else CommittedRows(metrics, engine).install()


# --- gauges: current state --------------------------------------------------------------------


def read_state(engine: Engine) -> dict[str, dict[str, int]]:
    """Open cases by stage, open overdue cases by matter, unresolved risks by level."""
    overdue = exists().where(
        AuditRow.subject_type == "case", AuditRow.subject_id == CaseRow.case_no, AuditRow.action == OVERDUE
    )
    still_open = col(CaseRow.stage).not_in(CLOSED_STAGES)
    with Session(engine) as session:
        stages = session.exec(select(CaseRow.stage, func.count()).where(still_open).group_by(CaseRow.stage)).all()
        matters = session.exec(
            select(CaseRow.matter_code, func.count()).where(still_open, overdue).group_by(CaseRow.matter_code)
        ).all()
        levels = session.exec(
            select(RiskRow.level, func.count()).where(RiskRow.state != RiskState.RESOLVED.value).group_by(RiskRow.level)
        ).all()
    return {"stages": dict(stages), "overdue": dict(matters), "risks": dict(levels)}


def calendar_last_year(directory: Path) -> int:
    """The last year with a <year>.toml in the calendar directory; 0 when there is none."""
    return max((int(p.stem) for p in directory.glob("*.toml") if p.stem.isdigit()), default=0)


class StateGauges:
    """The gauges of current state, read every REFRESH_SECONDS while the worker runs."""

    def __init__(
        self,
        metrics: Metrics,
        engine: Engine,
        client: Client,
        task_queue: str,
        calendar_dir: Path,
        matters: list[str],
    ) -> None:
        self.metrics = metrics
        self.engine = engine
        self.client = client
        self.task_queue = task_queue
        self.calendar_dir = calendar_dir
        # A label set once reported is set again (to 0 when gone): a series that just stopped
        # would show its last value for minutes.
        self.reported: dict[str, set[str]] = {
            "stages": set(OPEN_STAGES),
            "overdue": set(matters),
            "risks": {level.value for level in Level},
        }
        self._said: set[str] = set()  # problems already logged, so a lasting one is said once

    async def refresh(self) -> None:
        m = self.metrics
        try:
            state = await asyncio.to_thread(read_state, self.engine)
        except SQLAlchemyError as err:
            self._say("database", reason=failure_reason(err)[0])
        else:
            for name, gauge, label in (
                ("stages", m.open_cases, "stage"),
                ("overdue", m.overdue_cases, "matter"),
                ("risks", m.open_risks, "level"),
            ):
                self.reported[name] |= set(state[name])
                for value in self.reported[name]:
                    gauge.set(state[name].get(value, 0), {label: value})
            m.refreshed_at.set(int(datetime.now(timezone.utc).timestamp()))
            self._said.discard("database")
        m.calendar_last_year.set(calendar_last_year(self.calendar_dir))
        await self._backlog()

    async def _backlog(self) -> None:
        for kind, queue_type in (
            ("workflow", TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW),
            ("activity", TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY),
        ):
            request = DescribeTaskQueueRequest(
                namespace=self.client.namespace,
                task_queue=TaskQueue(name=self.task_queue),
                task_queue_type=queue_type,
                report_stats=True,
            )
            try:
                stats = (await self.client.workflow_service.describe_task_queue(request, retry=False)).stats
            except Exception as err:  # noqa: BLE001 - the server away, or the call not allowed: the gauge waits
                self._say("backlog", reason=getattr(err, "message", None) or type(err).__name__)
                return
            attributes = {"task_queue": self.task_queue, "type": kind}
            self.metrics.backlog.set(stats.approximate_backlog_count, attributes)
            self.metrics.backlog_age.set(stats.approximate_backlog_age.seconds, attributes)
        self._said.discard("backlog")

    def _say(self, source: str, reason: str) -> None:
        if source not in self._said:
            self._said.add(source)
            log.warning("metrics_refresh_failed", source=source, reason=reason)

    async def run(self, stop: asyncio.Event, every: float = REFRESH_SECONDS) -> None:
        """Refresh until `stop` is set."""
        while not stop.is_set():
            await self.refresh()
            try:
                await asyncio.wait_for(stop.wait(), every)
            except asyncio.TimeoutError:
                pass


async def refresh_state(client: Client, settings: Any, stop: asyncio.Event) -> None:
    """The worker's StateGauges (on an engine of their own), refreshed until `stop`; returns at
    once when the client's runtime serves no metrics."""
    metrics = for_client(client)
    if metrics is None:
        return
    from activities.catalog import load_catalog

    engine = make_engine(settings.database_url)
    matters = list(load_catalog(settings.catalog_file))
    try:
        await StateGauges(metrics, engine, client, settings.task_queue, settings.calendar_dir, matters).run(stop)
    finally:
        engine.dispose()


# --- activity failures ----------------------------------------------------------------------------


def error_type(err: BaseException) -> str:
    """What the Web UI shows as the failure's type: an ApplicationError's `type`, else the class."""
    if isinstance(err, ApplicationError) and err.type:
        return err.type
    return type(err).__name__


class ActivityFailures(Interceptor):
    """Counts each failed activity attempt (local ones too) by activity type and error type.
    A cancelled attempt (the workflow no longer wants it, the worker stopping) is no failure."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _CountFailures(next, self.metrics)


class _CountFailures(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, metrics: Metrics) -> None:
        super().__init__(next)
        self.metrics = metrics

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        try:
            return await super().execute_activity(input)
        except (asyncio.CancelledError, CancelledError):
            raise
        except Exception as err:
            attributes = {"activity_type": activity.info().activity_type, "error_type": error_type(err)}
            self.metrics.activity_failures.add(1, attributes)
            raise


def interceptors(client: Client) -> list[Interceptor]:
    """The worker interceptors metrics need: [] when the client's runtime serves none."""
    metrics = for_client(client)
    return [] if metrics is None else [ActivityFailures(metrics)]
