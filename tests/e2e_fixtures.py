"""End-to-end fixtures: the real `temporal` dev server, worker.py as a process that a test may
stop and start again (a redeploy), and starter.py run as a hall runs it."""

import json
import os
import subprocess
import sys
import time

import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from activities.calendar import with_placeholders
from activities.db import make_engine
from activities.store import Store
from contract import search
from tests.org_fixtures import data_converter
from settings import ROOT
from tests.temporal_fixtures import BIN, signer


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def dev_server():
    env = await WorkflowEnvironment.start_local(
        ip="127.0.0.1",
        data_converter=data_converter,
        interceptors=[signer()],  # signs what tests send, as starter.py and integrators do
        dev_server_existing_path=str(BIN / "temporal"),
        search_attributes=search.ALL,
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="module")
def hall(dev_server, tmp_path_factory):
    """worker.py running against the dev server; yields a function that runs starter.py."""
    folder = tmp_path_factory.mktemp("e2e")
    db = folder / "hallflow.db"
    env = {
        **os.environ,
        "HALLFLOW_TEMPORAL_ADDRESS": dev_server.client.service_client.config.target_host,
        "HALLFLOW_DATABASE_URL": f"sqlite:///{db}",
        "HALLFLOW_TASK_QUEUE": "hallflow",
        "HALLFLOW_CALENDAR_DIR": str(shipped_calendar_or_placeholder(folder / "calendar")),
    }
    # The worker's log goes to a file: a pipe nobody reads fills up and blocks the worker.
    log = open(folder / "worker.log", "a")
    workers: list[subprocess.Popen] = []

    def start_worker() -> None:
        workers.append(subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=env, stderr=log, text=True))

    def stop_worker() -> None:
        worker = workers.pop()
        worker.terminate()  # SIGTERM: worker.py shuts down gracefully, as in a redeploy
        worker.wait(timeout=30)

    start_worker()

    def starter(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "starter.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )

    starter.store = Store(make_engine(f"sqlite:///{db}"))
    starter.log_file = folder / "worker.log"
    starter.env = env
    starter.start_worker, starter.stop_worker = start_worker, stop_worker
    try:
        yield starter
    finally:
        while workers:
            stop_worker()
        log.close()


def shipped_calendar_or_placeholder(folder):
    """The shipped calendar, plus a weekends-only placeholder for a year it lacks within the next
    year (limits reach that far: complex suggestions, construction permits, rating windows).

    Today's cases use today's date, so each autumn the next year is needed before the State
    Council's table is in data/calendar: the test then warns instead of hanging on
    CalendarYearMissing, and the warning says which file to add."""
    import warnings
    from datetime import date, timedelta

    for year in with_placeholders(ROOT / "data" / "calendar", folder, date.today() + timedelta(days=366)):
        warnings.warn(f"data/calendar has no {year}.toml: end-to-end tests use a weekends-only placeholder; add the official file")
    return folder


def wait_for(check, timeout: float = 20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    return check()


def stage_of(hall, case_no: str) -> str | None:
    result = hall("case", "status", case_no, "-o", "json")
    if result.returncode != 0:
        return None
    return json.loads(result.stdout)["stage"]
