"""Temporal fixtures: a time-skipping server per test, and a hallflow worker on a fresh task queue.

Each test gets its own time-skipping server (about 0.1 s to start) because the clock only moves
forward: tests travel to fixed instants in 2099 (tests/data/calendar) and so run the same
whatever the real date.
"""

import sys
from concurrent.futures import ThreadPoolExecutor
import uuid
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path

import pytest
import pytest_asyncio
from datetime import timedelta

from temporalio.client import Client, Interceptor as ClientInterceptor, OutboundInterceptor, StartWorkflowInput
from temporalio.client import StartWorkflowUpdateWithStartInput
from tests.org_fixtures import data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.calendar import Calendar, CalendarActivities
from activities.catalog import CatalogActivities, load_catalog
from activities.watch import WatchDelivery
from activities.db import create_tables, make_engine
from activities.store import Store
from contract import search
from activities.lent import Lent, lend, take_back
from security.keys import load_private
from security.sender import Signer
from settings import ROOT, get_settings
from worker import INTERCEPTORS, WORKFLOWS, hallflow_activities

BIN = Path(sys.executable).parent
TEST_CALENDAR = ROOT / "tests" / "data" / "calendar"
# Mon 2099-01-05 10:00 Asia/Shanghai: every test starts here, inside the test calendar's year.
TEST_EPOCH = datetime(2099, 1, 5, 2, 0, tzinfo=timezone.utc)


class SkippedClockTaskTimeout(ClientInterceptor):
    """Workflows started by tests get a 60 s workflow task timeout instead of 10 s. A step's writes
    are local activities inside a workflow task; while they run on a loaded machine, the
    time-skipping server may move its clock past 10 s and time the task out under them (the late
    completion is then refused: "invalid history builder state for action"). On a real server the
    clock is the wall clock and a step's writes take milliseconds."""

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        class Outbound(OutboundInterceptor):
            async def start_workflow(self, input: StartWorkflowInput):
                input.task_timeout = input.task_timeout or timedelta(seconds=60)
                return await super().start_workflow(input)

            async def start_update_with_start_workflow(self, input: StartWorkflowUpdateWithStartInput):
                start = input.start_workflow_input
                start.task_timeout = start.task_timeout or timedelta(seconds=60)
                return await super().start_update_with_start_workflow(input)

        return Outbound(next)


def signer() -> Signer:
    """The test client's signature: the test system key (it may speak for anyone, as data/org.toml's
    hallflow-cli does); a message naming nobody is the applicant's, hallflow's own (a rating handed
    to the watch, a rectification opened), or a risk's owner reporting it."""
    from contract.org import APPLICANT, SYSTEM_ACTOR
    from contract.rating import Rating, RectificationOrder
    from contract.risk import RiskReport, WatchState

    def actor(value) -> str:
        if isinstance(value, (Rating, WatchState, RectificationOrder)):
            return SYSTEM_ACTOR  # what a case or the watch would send in production
        if isinstance(value, RiskReport):
            return value.owner if not value.owner.startswith(("head:", "office:")) else SYSTEM_ACTOR
        return APPLICANT

    return Signer(load_private(get_settings().signing_key), actor)


@pytest_asyncio.fixture
async def env():
    signing = signer()
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=data_converter,
        test_server_existing_path=str(BIN / "temporal-test-server"),
        interceptors=[signing, SkippedClockTaskTimeout()],
    )
    signing.clock = env.get_current_time  # assertions are judged by the server's (skipped) clock
    await search.ensure_search_attributes(env.client)
    await travel_to(env, TEST_EPOCH)
    try:
        yield env
    finally:
        await env.shutdown()


async def travel_to(env: WorkflowEnvironment, instant: datetime) -> None:
    """Move the time-skipping server's clock forward to `instant`."""
    now = await env.get_current_time()
    assert instant >= now, f"cannot travel back to {instant} from {now}"
    await env.sleep(instant - now)


@pytest.fixture
def catalog():
    return load_catalog(ROOT / "data" / "matters.toml")


@pytest.fixture
def hall_worker(sqlite_store: Store, catalog):
    """Start a worker with every hallflow activity (real SQLite store) on a fresh task queue."""

    @asynccontextmanager
    async def start(client: Client, store: Store | None = None, calendar_dir: Path = TEST_CALENDAR, task_queue: str | None = None,
              cache: bool = True):
        """cache=False: no sticky queue, so that another worker can take the task queue's cases over
        at once (the time-skipping server does not move a dead worker's sticky tasks)."""
        task_queue = task_queue or f"hallflow-test-{uuid.uuid4()}"
        activities = hallflow_activities(
            store or sqlite_store,
            CalendarActivities(Calendar.load(calendar_dir), calendar_dir),
            CatalogActivities(catalog),
            watch=WatchDelivery(client, task_queue),
        )
        lend(task_queue, Lent(store=store or sqlite_store, key=load_private(get_settings().worker_key)))
        try:
            with ThreadPoolExecutor(max_workers=8) as executor:
                async with Worker(
                    client, task_queue=task_queue, workflows=WORKFLOWS, interceptors=INTERCEPTORS, activities=activities,
                    activity_executor=executor, **({} if cache else {"max_cached_workflows": 0}),
                ):
                    yield task_queue
        finally:
            take_back(task_queue)

    return start


@pytest.fixture
def sqlite_store(tmp_path) -> Store:
    engine = make_engine(f"sqlite:///{tmp_path / 'hallflow.db'}")
    create_tables(engine)
    return Store(engine)


def failed_tasks(history) -> list:
    """The history's failed workflow tasks that say something is wrong. Not UNHANDLED_COMMAND: the
    server's "a message came in while you were completing, take it first" (docs/reliability.md),
    which the worker answers by running the task again with the message, by design."""
    from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause

    return [
        e for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
        and e.workflow_task_failed_event_attributes.cause != WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND
    ]
