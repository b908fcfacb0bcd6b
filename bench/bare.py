"""Temporal's own floor: the bare workflows the benchmark compares hallflow with, and their worker.

    .venv/bin/python -m bench.bare --address 127.0.0.1:7233 [--task-queue bench-bare]

Run as a process of its own by bench/cases.py, as worker.py is for hallflow, with the SDK's
defaults but the same cache size, and the plain pydantic JSON converter: no codec, no signing,
no database. `BareActivity` runs one activity; `BareUpdates` waits for two Updates.
"""

import argparse
import asyncio
import signal
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

TASK_QUEUE = "bench-bare"
UPDATES = 2


@activity.defn
async def echo(n: int) -> int:
    return n


@workflow.defn
class BareActivity:
    @workflow.run
    async def run(self, n: int) -> int:
        return await workflow.execute_activity(echo, n, start_to_close_timeout=timedelta(seconds=30))


@workflow.defn
class BareUpdates:
    @workflow.init
    def __init__(self, n: int) -> None:
        self.steps = 0

    @workflow.run
    async def run(self, n: int) -> int:
        await workflow.wait_condition(lambda: self.steps >= UPDATES)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.steps

    @workflow.update
    async def step(self, n: int) -> int:
        self.steps += 1
        return self.steps


async def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.bare", description=__doc__.split("\n")[0])
    p.add_argument("--address", required=True)
    p.add_argument("--task-queue", default=TASK_QUEUE)
    p.add_argument("--max-cached-workflows", type=int, default=1000, help="as hallflow's default")
    args = p.parse_args()
    client = await Client.connect(args.address, data_converter=pydantic_data_converter)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with Worker(
        client,
        task_queue=args.task_queue,
        workflows=[BareActivity, BareUpdates],
        activities=[echo],
        max_cached_workflows=args.max_cached_workflows,
    ):
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
