"""Runs hallflow's workflows and activities on task queue `hallflow`. Thin: wiring only."""

import asyncio
import signal
from concurrent.futures import ThreadPoolExecutor

import structlog
from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.worker import Worker, WorkerDeploymentConfig

from activities.calendar import Calendar, CalendarActivities
from activities.catalog import CatalogActivities, load_catalog
from activities.db import create_tables, make_engine
from activities.feedback import FeedbackActivities
from activities.publication import PublicationActivities
from activities.risk import RiskActivities, load_risk_policy
from activities.watch import WatchDelivery
from activities.notify import LogChannel
from activities.store import Store
from contract.rating import FeedbackPolicy
from logs import configure_logging
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
) -> list:
    feedback = feedback or FeedbackActivities(FeedbackPolicy(rating_window_days=5, rectify_days=5))
    risks = risks or RiskActivities(store.engine, load_risk_policy(ROOT / "data" / "risk.toml"))
    return [
        *([watch.send_rating_to_watch] if watch else []),
        risks.risk_policy,
        risks.record_risk,
        PublicationActivities(store.engine).publish_answer,
        feedback.feedback_policy,
        store.record_rating,
        catalog.get_matter,
        calendar.working_days_after,
        calendar.working_days_between,
        store.register_case,
        store.record_case_event,
        store.record_audit,
        store.notify,
        store.has_broken_commitment,
        store.record_broken_commitment,
    ]


def build_activities(settings: Settings, client: Client) -> list:
    """Load and validate the data files and the database once, at start: a bad catalog stops the worker."""
    engine = make_engine(settings.database_url)
    create_tables(engine)
    return hallflow_activities(
        Store(engine, LogChannel()),
        CalendarActivities(Calendar.load(settings.calendar_dir), settings.calendar_dir),
        CatalogActivities(load_catalog(settings.catalog_file)),
        FeedbackActivities(
            FeedbackPolicy(rating_window_days=settings.rating_window_days, rectify_days=settings.rectify_days)
        ),
        RiskActivities(engine, load_risk_policy(settings.risk_file)),
        WatchDelivery(client, settings.task_queue),
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


def build_worker(client: Client, settings: Settings, executor: ThreadPoolExecutor) -> Worker:
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=WORKFLOWS,
        activities=build_activities(settings, client),
        activity_executor=executor,  # store activities are sync (sqlmodel): they run in threads
        max_concurrent_activities=settings.activity_threads,
        max_cached_workflows=settings.max_cached_workflows,
        deployment_config=deployment(settings),
        interceptors=INTERCEPTORS,
    )


async def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level)
    client = await connect(settings)
    with ThreadPoolExecutor(max_workers=settings.activity_threads) as executor:
        worker = build_worker(client, settings, executor)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        log.info(
            "worker_started", address=settings.temporal_address, task_queue=settings.task_queue, build_id=settings.build_id
        )
        async with worker:
            await stop.wait()  # leaving the block drains in-flight tasks, then stops
        log.info("worker_stopped")


if __name__ == "__main__":
    asyncio.run(main())
