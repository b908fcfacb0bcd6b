"""Runs hallflow's workflows and activities on task queue `hallflow`. Thin: wiring only."""

import asyncio
import itertools
import logging
import os
import signal
import traceback
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import structlog
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.worker import Worker, WorkerDeploymentConfig
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities import metrics
from activities.calendar import Calendar, CalendarActivities
from activities.catalog import CatalogActivities, load_catalog
from activities.db import create_tables, make_engine
from activities.feedback import FeedbackActivities
from activities.lent import Lent, lend, take_back
from activities.org import DirectoryActivities, load_directory, warn_wide_systems
from activities.publication import PublicationActivities
from activities.risk import RiskActivities, load_risk_policy
from activities.watch import WatchDelivery
from activities.notify import LogChannel
from activities.store import Store
from activities.terms import TermsActivities
from contract.org import SYSTEM_ACTOR
from contract.rating import FeedbackPolicy
from logs import configure_logging, core_runtime
from security.keys import load_private
from security.connection import temporal_connection
from security.data_keys import load as load_data_keys
from settings import ROOT, Settings, connect, get_settings
from workflows.case import CaseWorkflow
from workflows.guard import INTERCEPTORS
from workflows.rectification import RectificationWorkflow
from workflows.risk import RiskWorkflow
from workflows.satisfaction import SatisfactionWatchWorkflow
from workflows.suggestion import SuggestionWorkflow

WORKFLOWS = [CaseWorkflow, RectificationWorkflow, SuggestionWorkflow, RiskWorkflow, SatisfactionWatchWorkflow]
log = structlog.get_logger()


def hallflow_activities(
    store: Store,
    calendar: CalendarActivities,
    catalog: CatalogActivities,
    feedback: FeedbackActivities | None = None,
    risks: RiskActivities | None = None,
    watch: WatchDelivery | None = None,
    directory: DirectoryActivities | None = None,
) -> list:
    feedback = feedback or FeedbackActivities(FeedbackPolicy(rating_window_days=5, rectify_days=5))
    risks = risks or RiskActivities(store.engine, load_risk_policy(ROOT / "data" / "risk.toml"))
    if directory is None:
        settings = get_settings()
        directory = DirectoryActivities(load_directory(settings.org_file, settings.keys_file))
    return [
        *([watch.send_rating_to_watch] if watch else []),
        risks.risk_policy,
        risks.record_risk,
        PublicationActivities(store.engine).publish_answer,
        feedback.feedback_policy,
        TermsActivities(catalog, calendar, feedback, store).case_terms,
        directory.org_directory,
        calendar.working_days_after,
        calendar.working_days_between,
        store.record_audit,
        store.record_step,
    ]


def build_activities(settings: Settings, client: Client) -> list:
    """Load and validate the data files and the database once, at start: a bad catalog or
    directory stops the worker."""
    engine = make_engine(settings.database_url)
    create_tables(engine)
    metrics.count_commits(client, engine)  # audit rows and ratings as they commit (activities/metrics.py)
    catalog = load_catalog(settings.catalog_file)
    # Also: every escalation rank data/risk.toml names has a holder (activities/org.py).
    directory = load_directory(settings.org_file, settings.keys_file, catalog, settings.risk_file)
    store = Store(engine, LogChannel())
    # What the guard writes for refused Updates, and the key one workflow signs another's signal with.
    lend(settings.task_queue, Lent(store=store, key=load_private(settings.worker_key) if settings.worker_key.exists() else None))
    log.info("directory_loaded", version=directory.version, officers=len(directory.officers), keys=len(directory.keys))
    warn_wide_systems(directory)  # a system whose key speaks for anyone (the development hallflow-cli)
    return hallflow_activities(
        store,
        CalendarActivities(Calendar.load(settings.calendar_dir), settings.calendar_dir),
        CatalogActivities(catalog),
        FeedbackActivities(
            FeedbackPolicy(rating_window_days=settings.rating_window_days, rectify_days=settings.rectify_days)
        ),
        RiskActivities(engine, load_risk_policy(settings.risk_file)),
        WatchDelivery(client, settings.task_queue),
        DirectoryActivities(directory),
    )


def deployment(settings: Settings) -> WorkerDeploymentConfig | None:
    """Worker versioning when a build id is set: each workflow runs to its end on the build it
    started on (pinned), so a change needs no workflow.patched; the old build is kept until its
    workflows drain (deploy/README.md)."""
    if not settings.build_id:
        return None
    return WorkerDeploymentConfig(
        version=WorkerDeploymentVersion(deployment_name=settings.deployment_name, build_id=settings.build_id),
        use_worker_versioning=True,
        default_versioning_behavior=VersioningBehavior.PINNED,
    )


# The sandbox runs each new workflow's module again: for CaseWorkflow that re-created the class
# and its handlers on every case (about a fifth of an automatic case's worker CPU). Everything the
# workflow classes import is passed through already (`imports_passed_through`), so the classes'
# own modules go too. The tests' in-process workers keep the full sandbox, which re-imports them
# per run and so still catches a module that keeps state or calls what replay cannot repeat.
RUNNER = SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules("workflows"))


def build_worker(client: Client, settings: Settings, executor: ThreadPoolExecutor) -> Worker:
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=WORKFLOWS,
        workflow_runner=RUNNER,
        activities=build_activities(settings, client),
        activity_executor=executor,  # store activities are sync (sqlmodel): they run in threads
        max_concurrent_activities=settings.activity_threads,
        max_cached_workflows=settings.max_cached_workflows,
        deployment_config=deployment(settings),
        interceptors=[*INTERCEPTORS, *metrics.interceptors(client)],
    )


def unreachable_reason(error: str) -> str:
    """A few words for an operator from the SDK's connection error (TLS problems named, with the
    TEMPORAL_* setting to check): security/connection.py, which starter.py shares."""
    from security.connection import unreachable_reason as reason

    return reason(error)


async def stopped(stop: asyncio.Event, seconds: float) -> bool:
    """Wait `seconds`, or less if the worker is told to stop; whether it was."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except asyncio.TimeoutError:
        return False
    return True


async def connect_when_up(settings: Settings, stop: asyncio.Event) -> Client | None:
    """Connect, trying again while the server cannot be reached, one log line per attempt
    naming the address (a worker may start before its server); None when stopped meanwhile."""
    delay, runtime = 1.0, core_runtime(metrics.bind_address(settings.metrics_host, settings.metrics_port))
    for attempt in itertools.count(1):
        try:
            # The worker's own client (ratings to the watch) signs as hallflow, with the worker's key.
            return await connect(settings, runtime=runtime, key_file=settings.worker_key, actor=SYSTEM_ACTOR)
        except RuntimeError as err:
            log.warning(
                "temporal_unreachable",
                address=temporal_connection(settings).address,
                reason=unreachable_reason(str(err)),
                attempt=attempt,
                retry_in_s=delay,
            )
        if await stopped(stop, delay):
            return None
        delay = min(delay * 2, 30.0)
    raise AssertionError("unreachable")


async def watch_server(client: Client, address: str, stop: asyncio.Event, every: float = 5.0) -> None:
    """Say in the log when the server stops answering (once a minute while it does not) and when
    it answers again. The worker's pollers retry on their own; without this only the core's
    retry warnings would tell."""
    down_since: float | None = None
    said_at = 0.0
    loop = asyncio.get_running_loop()
    while not await stopped(stop, every):
        try:
            await client.workflow_service.get_system_info(
                GetSystemInfoRequest(), retry=False, timeout=timedelta(seconds=every)
            )
        except Exception as err:  # noqa: BLE001 - any failure to answer is "unreachable" here
            now = loop.time()
            if down_since is None or now - said_at >= 60:
                down_since = now if down_since is None else down_since
                said_at = now
                log.warning(
                    "temporal_unreachable",
                    address=address,
                    reason=unreachable_reason(getattr(err, "message", None) or str(err)),
                    down_for_s=round(now - down_since),
                )
            continue
        if down_since is not None:
            log.info("temporal_reachable_again", address=address, down_for_s=round(loop.time() - down_since))
            down_since = None


async def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level)
    # The data files first: a bad catalog or directory stops the worker before it waits for a server.
    load_directory(settings.org_file, settings.keys_file, load_catalog(settings.catalog_file), settings.risk_file)
    load_data_keys(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    client = await connect_when_up(settings, stop)
    if client is None:
        log.info("worker_stopped")
        return
    with ThreadPoolExecutor(max_workers=settings.activity_threads) as executor:
        worker = build_worker(client, settings, executor)
        log.info(
            "worker_started", address=temporal_connection(settings).address, task_queue=settings.task_queue, build_id=settings.build_id
        )
        async with worker:
            watch = asyncio.create_task(watch_server(client, temporal_connection(settings).address, stop))
            gauges = asyncio.create_task(metrics.refresh_state(client, settings, stop))  # open cases, risks, backlog
            await stop.wait()  # leaving the block drains in-flight tasks, then stops
            await asyncio.gather(watch, gauges)
        take_back(settings.task_queue)
        log.info("worker_stopped")


if __name__ == "__main__":
    code = 0
    try:
        asyncio.run(main())
    except Exception:  # noqa: BLE001 - e.g. an invalid catalog: said as before, then exit 1
        traceback.print_exc()
        code = 1
    # The SDK core's threads (its log forwarding above all) can abort or hang the interpreter's
    # teardown (sdk-python issue #300: "PyGILState_Release ... finalizing"); all is written.
    logging.shutdown()
    os._exit(code)
