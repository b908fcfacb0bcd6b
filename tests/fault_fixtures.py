"""Fault-run harness for tests/test_faults.py: processes a test can kill, a link it can cut, a load
driven as an integrator drives it, and the checks that nothing was lost, doubled or failed.

- DevServer: `temporal server start-dev` as a process on a fixed 127.0.0.1 port and a SQLite file,
  so it can be stopped and started again on the same file and port.
- Workers: worker.py processes, SIGKILLed (a crash) or SIGTERMed (the end of the run).
- TcpProxy: a loopback TCP proxy in front of PostgreSQL that can drop every connection and refuse
  new ones until restored.
- Load: ~24 cases started and driven through Updates (review, votes, supplement, rating), each
  Update retried with a stable update id until answered; a refusal after a retry (AlreadyVoted,
  WrongStage...) means an earlier attempt was applied.
- verify(): every case at its stage, each audit action and notice exactly as often as expected,
  every key unique, every notice sent, one rating per case, each satisfaction watch counting each
  rating once, no WORKFLOW_TASK_FAILED in any history, and every history replays under today's code.

Every loop here is bounded in count or time; every process started is stopped in a finally.
"""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError

from activities.catalog import load_catalog
from contract import search
from contract.approval import Review, Vote
from contract.case import CaseStage, SupplementMaterials, case_workflow_id
from tests.org_fixtures import data_converter
from contract.rating import Rate
from settings import ROOT
from tests.builders import application
from tests.e2e_fixtures import shipped_calendar_or_placeholder
from tests.temporal_fixtures import BIN, signer
from tests.temporal_fixtures import failed_tasks as failed_task_events
from workflows.case import CaseWorkflow
from workflows.satisfaction import SatisfactionWatchWorkflow

PG_URL = os.environ.get("HALLFLOW_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
CATALOG = load_catalog(ROOT / "data" / "matters.toml")
QUEUE = "hallflow"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(message: str) -> None:
    """Progress on stderr (pytest shows it for a failed test, or with -s)."""
    print(f"[faults {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---- processes ----------------------------------------------------------------------------------


def _stop(process: subprocess.Popen, timeout: float) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


class DevServer:
    """`temporal server start-dev` on 127.0.0.1:<port> with its state in <folder>/temporal.db."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.db = folder / "temporal.db"
        self.log_path = folder / "temporal.log"
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None
        with open(self.log_path, "a") as out:
            self.process = subprocess.Popen(
                [str(BIN / "temporal"), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(self.port),
                 "--headless", "--http-port", "0", "--metrics-port", "0", "--db-filename", str(self.db),
                 "--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal",
                 "--log-level", "warn"],
                stdout=out, stderr=subprocess.STDOUT,
            )
        self.starts += 1

    async def ready(self, timeout: float = 30.0) -> Client:
        """A client once the frontend answers (bounded)."""
        end = time.monotonic() + timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"dev server exited ({self.process.returncode}); see {self.log_path}")
            try:
                # Signed as an integrator's system signs (docs/security.md): the worker trusts nothing else.
                client = await Client.connect(self.address, data_converter=data_converter, interceptors=[signer()])
                await client.service_client.check_health()
                return client
            except Exception:  # not listening yet
                if time.monotonic() > end:
                    raise
                await asyncio.sleep(0.3)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, as an operator stops it; SIGKILL only if it does not go within `timeout`."""
        if self.process is not None:
            _stop(self.process, timeout)


class Workers:
    """worker.py processes sharing one log file; `kill()` is a crash (SIGKILL)."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.current: subprocess.Popen | None = None
        self.started = 0
        self.killed = 0

    def start(self) -> None:
        assert self.current is None or self.current.poll() is not None
        with open(self.log_path, "a") as out:  # a file: a pipe nobody reads fills up and blocks the worker
            self.current = subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=self.env, stdout=out, stderr=out)
        self.started += 1

    def kill(self) -> None:
        assert self.current is not None and self.current.poll() is None, "the worker died by itself"
        os.kill(self.current.pid, signal.SIGKILL)
        self.current.wait(timeout=10)
        self.killed += 1

    def stop(self) -> None:
        if self.current is not None:
            _stop(self.current, 20)

    def sends_per_key(self) -> Counter:
        """How often the log channel sent each notice key (every worker's log lines)."""
        sent: Counter = Counter()
        for line in self.log_path.read_text(errors="replace").splitlines():
            if '"notice_sent"' in line:
                try:
                    sent[json.loads(line)["key"]] += 1
                except (ValueError, KeyError):
                    pass
        return sent


class TcpProxy:
    """127.0.0.1:<port> → target. `cut()` drops every connection and refuses new ones (the
    listening socket is closed) until `restore()`."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.port = free_port()
        self.target = (target_host, target_port)
        self.server: asyncio.AbstractServer | None = None
        self.transports: set[asyncio.BaseTransport] = set()
        self.connections = 0
        self.dropped = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        pair = {writer.transport, up_writer.transport}
        self.transports |= pair

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()

        try:
            await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        finally:
            self.transports -= pair

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()  # new connections are refused from here on
        self.dropped += len(self.transports) // 2
        for transport in list(self.transports):
            transport.abort()  # RST both ways: the worker's sessions die mid-query
        await self.server.wait_closed()
        self.server = None

    async def restore(self) -> None:
        await self.start()

    async def close(self) -> None:
        if self.server is not None:
            await self.cut()


# ---- application database -----------------------------------------------------------------------


@asynccontextmanager
async def app_database(kind: str, folder: Path):
    """(URL for a reader, URL for the worker before any proxy): a SQLite file in `folder`, or a
    fresh PostgreSQL schema (dropped afterwards) that travels in libpq's options."""
    if kind == "sqlite":
        url = f"sqlite:///{folder / 'hallflow.db'}"
        yield url
        return
    schema = f"hallflow_faults_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def via_proxy(url: str, proxy: TcpProxy) -> str:
    return make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(False)


def reader_engine(url: str):
    """A plain engine for the test's reads: for SQLite, without hallflow's BEGIN IMMEDIATE (a
    reader must not take the write lock from the worker)."""
    return create_engine(url) if url.startswith("sqlite") else create_engine(url, pool_pre_ping=True)


# ---- the load -----------------------------------------------------------------------------------

# What each kind of case must leave behind once driven to its end and rated 5.
AUDIT = {
    "fund": {"received": 1, "accepted": 1, "approved": 1, "rated": 1},
    "opening": {"received": 1, "accepted": 1, "review_requested": 1, "reviewed": 1, "vote_opened": 1, "voted": 2,
                "vote_closed": 1, "approved": 1, "rated": 1},
    "deferred": {"received": 1, "accepted_with_deferral": 1, "review_requested": 1, "reviewed": 1, "vote_opened": 1,
                 "voted": 2, "vote_closed": 1, "approved_pending_materials": 1, "materials_supplemented": 1,
                 "materials_complete": 1, "approved": 1, "rated": 1},
}
# Entries and notices that depend on the wall clock (a yellow warning at 19:12 Shanghai time, the
# deferral reminder at midnight): at most once each.
OPTIONAL_AUDIT = {"deferral_reminded", "risk_raised"}
OPTIONAL_NOTICES = {"deadline_yellow", "deadline_red", "deferral_reminder"}
PANEL = ("officer-zhao", "officer-chen", "officer-sun")


def expected_notices(kind: str, applicant: str) -> Counter:
    first = {"fund": "accepted", "opening": "accepted", "deferred": "deferral_accepted"}[kind]
    wanted = Counter({(first, applicant): 1, ("result_issued", applicant): 1, ("rating_invited", applicant): 1})
    if kind != "fund":
        wanted[("review_requested", "officer-li")] = 1
        for member in PANEL:
            wanted[("vote_requested", member)] = 1
    return wanted


# Refusals that, after a retry, mean an earlier attempt of the same Update was applied.
APPLIED_ALREADY = {"AlreadyDecided", "WrongStage", "AlreadyVoted", "MaterialNotAwaited", "AlreadyRated"}


@dataclass
class Case:
    kind: str
    app: object
    steps: list[str] = field(default_factory=list)

    @property
    def no(self) -> str:
        return self.app.case_no

    @property
    def department(self) -> str:
        return CATALOG["housing-fund-withdrawal" if self.kind == "fund" else "enterprise-opening"].lead_department


class Load:
    """Starts and drives cases as an integrator does; counts every retry it needed."""

    def __init__(self, client: Client, engine, per_kind: int = 8, spacing: float = 0.4, deadline: float = 150.0) -> None:
        self.client = client
        self.engine = engine
        self.spacing = spacing
        self.deadline = time.monotonic() + deadline
        apps = []
        for i in range(per_kind):
            apps.append(Case("fund", application(CATALOG["housing-fund-withdrawal"])))
            apps.append(Case("opening", application(CATALOG["enterprise-opening"])))
            apps.append(Case("deferred", application(CATALOG["enterprise-opening"], without=("residence-proof",), signed=True)))
        self.cases = apps
        self.retries: Counter = Counter()  # (what, error type) → count
        self.applied_on_retry: Counter = Counter()  # refusal type after a retry → count
        self.finished = 0
        # What the application database shows, refreshed by `watch()`.
        self.stage: dict[str, str] = {}
        self.invited: set[str] = set()
        self.rated: set[str] = set()
        self.audit_rows = 0
        self.read_errors: Counter = Counter()

    @property
    def expected_audit_rows(self) -> int:
        return sum(sum(AUDIT[c.kind].values()) for c in self.cases)

    # -- reading the hall's database, as the hall's own screens do

    def _read(self) -> None:
        with self.engine.connect() as conn:
            self.stage = dict(conn.execute(text("SELECT case_no, stage FROM cases")).all())
            self.invited = {r[0] for r in conn.execute(text("SELECT subject_id FROM outbox WHERE kind = 'rating_invited'"))}
            self.rated = {r[0] for r in conn.execute(text("SELECT subject_id FROM audit WHERE action = 'rated'"))}
            self.audit_rows = conn.execute(text("SELECT count(*) FROM audit")).scalar_one()

    async def watch(self) -> None:
        while time.monotonic() < self.deadline:
            try:
                await asyncio.to_thread(self._read)
            except SQLAlchemyError as err:  # tables not created yet
                self.read_errors[type(err).__name__] += 1
            await asyncio.sleep(0.4)

    async def _until(self, case: Case, check, what: str) -> None:
        while not check():
            if time.monotonic() > self.deadline:
                raise AssertionError(f"case {case.no} ({case.kind}) never reached {what}; stage {self.stage.get(case.no)}")
            await asyncio.sleep(0.2)

    # -- Temporal calls, retried as an integrator retries them

    async def _start(self, case: Case) -> None:
        while True:
            try:
                await asyncio.wait_for(
                    self.client.start_workflow(CaseWorkflow.run, case.app, id=case_workflow_id(case.no), task_queue=QUEUE),
                    timeout=20,
                )
                return
            except WorkflowAlreadyStartedError:
                return  # an earlier attempt started it
            except (TimeoutError, RPCError) as err:
                self._retry("start", err)

    async def _update(self, case: Case, update, arg, update_id: str):
        handle = self.client.get_workflow_handle(case_workflow_id(case.no))
        attempt = 0
        while True:
            attempt += 1
            try:
                return await asyncio.wait_for(handle.execute_update(update, arg, id=update_id), timeout=20)
            except WorkflowUpdateFailedError as err:
                kind = err.cause.type if isinstance(err.cause, ApplicationError) else None
                if attempt > 1 and kind in APPLIED_ALREADY:
                    self.applied_on_retry[kind] += 1
                    return None
                raise AssertionError(f"{update_id} refused on attempt {attempt}: {kind}: {err.cause}") from err
            except (TimeoutError, RPCError, WorkflowUpdateRPCTimeoutOrCancelledError) as err:
                self._retry(update_id.split("-")[0], err)

    def _retry(self, what: str, err: Exception) -> None:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError  # the SDK turns a cancelled call into an error: the test is ending
        self.retries[(what, type(err).__name__)] += 1
        if time.monotonic() > self.deadline:
            raise AssertionError(f"{what}: still failing at the deadline: {err!r}") from err

    # -- one case, from the window to its rating

    async def drive(self, case: Case) -> None:
        await self._start(case)
        no = case.no
        if case.kind != "fund":
            await self._until(case, lambda: self.stage.get(no) == CaseStage.AWAITING_REVIEW, "awaiting_review")
            await self._update(case, CaseWorkflow.review, Review(reviewer="officer-li", decision="approve", opinion="lawful"),
                               f"review-{no}")
            await self._until(case, lambda: self.stage.get(no) == CaseStage.IN_PANEL, "in_panel")
            for member in PANEL[:2]:
                await self._update(case, CaseWorkflow.vote, Vote(member=member, choice="approve"), f"vote-{no}-{member}")
            if case.kind == "deferred":
                await self._until(case, lambda: self.stage.get(no) == CaseStage.APPROVED_PENDING_MATERIALS,
                                  "approved_pending_materials")
                await self._update(case, CaseWorkflow.supplement_materials,
                                   SupplementMaterials(materials=["residence-proof"], submitted_by="clerk-02"), f"supplement-{no}")
        await self._until(case, lambda: no in self.invited, "the rating invitation")
        await self._update(case, CaseWorkflow.rate, Rate(score=5, channel="app"), f"rate-{no}")
        await self._until(case, lambda: no in self.rated, "its rating in the audit trail")
        self.finished += 1

    async def run(self) -> list[BaseException]:
        """Start the cases `spacing` seconds apart and drive each to its end; the failures, if any."""
        watcher = asyncio.create_task(self.watch())

        async def later(i: int, case: Case) -> None:
            await asyncio.sleep(i * self.spacing)
            await self.drive(case)

        try:
            results = await asyncio.gather(*(later(i, c) for i, c in enumerate(self.cases)), return_exceptions=True)
        finally:
            watcher.cancel()
        return [r for r in results if isinstance(r, BaseException)]

    def progress(self) -> float:
        return self.audit_rows / self.expected_audit_rows


# ---- the checks -----------------------------------------------------------------------------------


async def settle(load: Load, timeout: float = 40.0) -> None:
    """Wait (bounded) until every notice was handed to the channel: the last activities of each case
    run after its rating."""
    end = time.monotonic() + timeout

    def unsent() -> int:
        with load.engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM outbox WHERE claimed_at IS NULL")).scalar_one()

    while await asyncio.to_thread(unsent) and time.monotonic() < end:
        await asyncio.sleep(0.5)


async def verify(load: Load, workers: Workers | None = None) -> dict:
    """Assert nothing was lost, doubled or failed; the numbers checked, for the report."""
    client, engine = load.client, load.engine
    await settle(load)
    with engine.connect() as conn:
        stages = dict(conn.execute(text("SELECT case_no, stage FROM cases")).all())
        audit = conn.execute(text("SELECT subject_type, subject_id, action, key FROM audit")).all()
        outbox = conn.execute(text("SELECT subject_id, kind, recipient, key, claimed_at, sent_at FROM outbox")).all()
        ratings = conn.execute(text("SELECT case_no, score FROM ratings")).all()

    numbers: dict = {"cases": len(load.cases), "audit_rows": len(audit), "notices": len(outbox), "ratings": len(ratings)}
    # No case lost: each at its stage in the database and in Temporal, rated once.
    wrong = {c.no: stages.get(c.no) for c in load.cases if stages.get(c.no) != CaseStage.APPROVED}
    assert not wrong, f"cases not approved in the database: {wrong}"
    for case in load.cases:
        status = await client.get_workflow_handle(case_workflow_id(case.no)).query(CaseWorkflow.status)
        assert (status.stage, status.rating) == (CaseStage.APPROVED, 5), f"{case.no}: {status.stage}, rating {status.rating}"
    assert sorted(ratings) == sorted((c.no, 5) for c in load.cases), "one rating row per case"

    # Every key once; each case's audit actions and notices exactly as expected.
    keys = Counter(row.key for row in audit)
    assert [k for k, n in keys.items() if n > 1] == [] and len(keys) == len(audit)
    notice_keys = Counter(row.key for row in outbox)
    assert [k for k, n in notice_keys.items() if n > 1] == [] and len(notice_keys) == len(outbox)
    unsent = [(r.subject_id, r.kind) for r in outbox if r.claimed_at is None]
    assert unsent == [], f"notices never handed to the channel: {unsent}"
    # Handed over, but the record of the send was cut off: at most once, never resent (store.notify).
    numbers["notices_in_doubt"] = sum(1 for r in outbox if r.sent_at is None)
    optional = Counter()
    for case in load.cases:
        actions = Counter(r.action for r in audit if r.subject_type == "case" and r.subject_id == case.no)
        extra = {a: n for a, n in actions.items() if a in OPTIONAL_AUDIT}
        assert all(n == 1 for n in extra.values()), f"{case.no}: {extra}"
        optional.update(extra)
        assert Counter({a: n for a, n in actions.items() if a not in OPTIONAL_AUDIT}) == Counter(AUDIT[case.kind]), (
            f"{case.no} ({case.kind}) audit actions {dict(actions)}"
        )
        notices = Counter((r.kind, r.recipient) for r in outbox if r.subject_id == case.no)
        extra = {k: n for k, n in notices.items() if k[0] in OPTIONAL_NOTICES}
        assert all(n == 1 for n in extra.values()), f"{case.no}: {extra}"
        optional.update(k for k, _ in extra)
        applicant = f"applicant:{case.app.applicant.applicant_id}"
        assert Counter({k: n for k, n in notices.items() if k[0] not in OPTIONAL_NOTICES}) == expected_notices(case.kind, applicant), (
            f"{case.no} ({case.kind}) notices {dict(notices)}"
        )
    numbers["clock_dependent_entries"] = dict(optional)

    # Each department's satisfaction watch took each rating once (a case hands its rating over
    # just after recording it: wait, bounded, for the last deliveries).
    for department, count in Counter(c.department for c in load.cases).items():
        watch = client.get_workflow_handle(f"satisfaction-{department}")
        end = time.monotonic() + 20
        while (taken := (await watch.query(SatisfactionWatchWorkflow.status)).ratings) < count and time.monotonic() < end:
            await asyncio.sleep(0.5)
        assert taken == count, f"watch of {department}: {taken} ratings for {count} cases"

    # No workflow task failed, no workflow failed, every history replays under today's code.
    from temporalio.worker import Replayer

    from worker import INTERCEPTORS, WORKFLOWS

    histories, failed_tasks, timed_out, events = [], {}, Counter(), 0
    async for wf in client.list_workflows():
        assert wf.status in (WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.COMPLETED), f"{wf.id}: {wf.status}"
        history = await client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history()
        histories.append(history)
        events += len(history.events)
        wrong = {id(e) for e in failed_task_events(history)}
        for event in history.events:
            if id(event) in wrong:
                failed_tasks.setdefault(wf.id, []).append(
                    (event.event_id, event.workflow_task_failed_event_attributes.cause,
                     event.workflow_task_failed_event_attributes.failure.message)
                )
            elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
                timed_out["workflow_task_timed_out"] += 1
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED and event.activity_task_started_event_attributes.attempt > 1:
                timed_out["activities_retried"] += 1
    assert failed_tasks == {}, f"WORKFLOW_TASK_FAILED events: {failed_tasks}"
    workflow_ids = {h.workflow_id for h in histories}
    assert {case_workflow_id(c.no) for c in load.cases} <= workflow_ids
    replayer = Replayer(workflows=WORKFLOWS, data_converter=data_converter, interceptors=INTERCEPTORS)
    replayed = [(h.workflow_id, await replayer.replay_workflow(h, raise_on_replay_failure=False)) for h in histories]
    failures = {wid: repr(r.replay_failure) for wid, r in replayed if r.replay_failure is not None}
    assert failures == {}, f"replay failures: {failures}"
    numbers.update(workflows=len(histories), history_events=events, **dict(timed_out))
    numbers.update(retries={f"{w}:{e}": n for (w, e), n in load.retries.items()}, applied_on_retry=dict(load.applied_on_retry))
    if workers is not None:
        assert workers.current is not None and workers.current.poll() is None, "the worker exited by itself"
        # The log channel's sends: each notice at most once, whatever was cut or killed (store.notify).
        sends = workers.sends_per_key()
        numbers["notices_resent"] = sum(n - 1 for n in sends.values() if n > 1)
        assert numbers["notices_resent"] == 0, "a notice went out twice"
    return numbers


# ---- one fault run --------------------------------------------------------------------------------


@dataclass
class Run:
    server: DevServer
    workers: Workers
    client: Client
    load: Load
    proxy: TcpProxy | None
    began: float

    def elapsed(self) -> float:
        return time.monotonic() - self.began


@asynccontextmanager
async def fault_run(folder: Path, database: str, proxied: bool = False, per_kind: int = 8):
    """A dev server of its own, the application database, optionally a proxy in front of it, and
    worker.py; stops all of it however the test ends."""
    async with AsyncExitStack() as stack:
        url = await stack.enter_async_context(app_database(database, folder))
        proxy = None
        worker_url = url
        if proxied:
            proxy = TcpProxy(make_url(url).port or 5432)
            await proxy.start()
            stack.push_async_callback(proxy.close)  # runs after the worker stopped (callbacks unwind in reverse)
            worker_url = via_proxy(url, proxy)
        server = DevServer(folder)
        server.start()
        # Stopped off the event loop: the proxy, served by this loop, carries the worker's last writes.
        stack.push_async_callback(asyncio.to_thread, server.stop)
        client = await server.ready()
        await search.ensure_search_attributes(client)
        env = {
            **os.environ,
            "HALLFLOW_TEMPORAL_ADDRESS": server.address,
            "HALLFLOW_DATABASE_URL": worker_url,
            "HALLFLOW_TASK_QUEUE": QUEUE,
            "HALLFLOW_CALENDAR_DIR": str(shipped_calendar_or_placeholder(folder / "calendar")),
            "HALLFLOW_LOG_LEVEL": "INFO",
        }
        workers = Workers(env, folder / "worker.log")
        workers.start()
        stack.push_async_callback(asyncio.to_thread, workers.stop)
        engine = reader_engine(url)
        stack.callback(engine.dispose)
        load = Load(client, engine, per_kind=per_kind)
        via = f" via proxy :{proxy.port}" if proxy else ""
        log(f"dev server {server.address}, database {database}{via}, {len(load.cases)} cases; logs in {folder}")
        yield Run(server, workers, client, load, proxy, time.monotonic())


async def at_progress(run: Run, share: float, not_before: float, limit: float = 90.0) -> None:
    """Wait until `share` of the expected audit rows are written and `not_before` seconds have
    passed since the run began (bounded by `limit`): a fault then hits a hall under load."""
    while (run.load.progress() < share or run.elapsed() < not_before) and run.elapsed() < limit:
        await asyncio.sleep(0.2)
