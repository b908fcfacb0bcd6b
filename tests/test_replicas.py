"""Replicas (issue 15): two worker.py processes on one task queue and one PostgreSQL database share
a hall's load; when one of them crashes, the other finishes its cases, and nothing is lost,
doubled or failed.

The harness is tests/fault_fixtures.py's (its own dev server, a fresh PostgreSQL schema dropped
afterwards, 30 cases driven through Updates as an integrator drives them, and `verify`); this file
adds the second worker and the checks that both took work and that the survivor took over.
"""

import asyncio
import time
from collections import Counter

import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import EventType

from contract.case import case_workflow_id
from tests.fault_fixtures import Run, Workers, at_progress, fault_run, log, verify

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def _logged(workers: Workers, event: str) -> bool:
    return workers.log_path.exists() and f'"{event}"' in workers.log_path.read_text(errors="replace")


async def _until(check, what: str, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"never happened within {timeout:.0f} s: {what}")
        await asyncio.sleep(0.2)


@pytest_asyncio.fixture
async def replicas(tmp_path):
    """A fault run (tests/fault_fixtures.py) on PostgreSQL with a second worker.py on the same task
    queue and database, each worker logging to its own file; both have started when this yields."""
    async with fault_run(tmp_path, "postgresql", per_kind=10) as run:
        # One after the other: two workers creating the tables of an empty database at once race
        # (activities/db.py create_tables; the loser exits with DuplicateTable).
        await _until(lambda: _logged(run.workers, "worker_started"), "worker.log: worker_started")
        second = Workers(run.workers.env, tmp_path / "worker-2.log")
        second.start()
        try:
            await _until(lambda: _logged(second, "worker_started"), "worker-2.log: worker_started")
            yield run, second
        finally:
            await asyncio.to_thread(second.stop)


async def _task_identities(run: Run) -> tuple[Counter, dict[str, set[str]]]:
    """Who did the work, from the histories: workflow and activity tasks per worker identity, and
    the identities that completed each case's workflow tasks."""
    tasks: Counter = Counter()
    per_case: dict[str, set[str]] = {}
    case_ids = {case_workflow_id(c.no) for c in run.load.cases}
    async for wf in run.client.list_workflows():
        history = await run.client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history()
        for event in history.events:
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                identity = event.workflow_task_completed_event_attributes.identity
                tasks[identity] += 1
                if wf.id in case_ids:
                    per_case.setdefault(wf.id, set()).add(identity)
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                tasks[event.activity_task_started_event_attributes.identity] += 1
    return tasks, per_case


def _of(identity: str, workers: Workers) -> bool:
    # The SDK names a worker `<pid>@<host>` unless told otherwise; worker.py does not.
    return identity.startswith(f"{workers.current.pid}@")


async def test_two_workers_share_the_load_and_one_crashing_loses_and_doubles_nothing(replicas):
    run, second = replicas
    first = run.workers
    driving = asyncio.create_task(run.load.run())
    try:
        # Both replicas have sent notices (an activity each) and a share of the work is done: the
        # crash then hits two busy workers with cases in flight.
        await at_progress(run, 0.3, not_before=4)
        await _until(lambda: _logged(first, "notice_sent") and _logged(second, "notice_sent"), "both workers sent a notice")
        assert not driving.done() and run.load.finished < len(run.load.cases), "the load ended before the kill"
        killed_pid = first.current.pid
        first.kill()
        log(f"worker {killed_pid} SIGKILLed at {run.elapsed():.0f} s, {run.load.progress():.0%} of the audit rows written, "
            f"{run.load.finished} cases done; worker {second.current.pid} carries on alone")

        failures = await asyncio.wait_for(driving, timeout=90)
        assert failures == [], "\n".join(repr(f) for f in failures)
        log(f"load done in {run.elapsed():.0f} s")
        numbers = await verify(run.load)
    finally:
        driving.cancel()
        await asyncio.gather(driving, return_exceptions=True)

    # Each notice went out at most once, whichever worker sent it, before or after the crash.
    sends = first.sends_per_key() + second.sends_per_key()
    assert [key for key, n in sends.items() if n > 1] == [], "a notice went out twice"

    # Both took work, and the survivor finished cases the crashed one had begun.
    tasks, per_case = await _task_identities(run)
    by_first = sum(n for identity, n in tasks.items() if _of(identity, first))
    by_second = sum(n for identity, n in tasks.items() if _of(identity, second))
    assert by_first > 0 and by_second > 0, f"tasks per identity: {dict(tasks)}"
    assert by_first + by_second == sum(tasks.values()), f"a task done by neither worker: {dict(tasks)}"
    handed_over = [wid for wid, ids in per_case.items() if any(_of(i, first) for i in ids) and any(_of(i, second) for i in ids)]
    assert handed_over, "no case begun by the crashed worker was finished by the other"
    log(f"checked in {run.elapsed():.0f} s: {numbers}; tasks {by_first} + {by_second}, {len(handed_over)} cases handed over")

    # The survivor stops as in a redeploy: SIGTERM, drained, exit 0.
    survivor = second.current
    await asyncio.to_thread(second.stop)
    assert survivor.returncode == 0, f"the remaining worker exited with {survivor.returncode}"
    assert _logged(second, "worker_stopped")
    assert first.killed == 1 and numbers["cases"] == 30
