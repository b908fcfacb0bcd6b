"""The benchmark's own Temporal: a dev server, worker.py and the bare worker, each a process, all
on 127.0.0.1 and a temporary folder, with throwaway keys; stopped when the block ends.

As production runs hallflow: worker.py reads only HALLFLOW_* settings (no TEMPORAL_* variable or
profile of the machine reaches it), checks every message's signature against the public keys
written here, and encrypts every payload with the data key written here.
"""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from activities.calendar import with_placeholders
from bench.bare import TASK_QUEUE as BARE_QUEUE
from contract import search
from security import data_keys
from security.keys import add_public_key, new_key, save_private
from settings import ROOT, Settings

BIN = Path(sys.executable).parent
PG_URL = os.environ.get("HALLFLOW_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
HALLFLOW_QUEUE = "hallflow"


@dataclass
class Rig:
    tmp: Path
    address: str
    settings: Settings  # what the benchmark's own client uses: the same files as worker.py
    server: subprocess.Popen
    worker: subprocess.Popen
    bare: subprocess.Popen
    placeholder_years: list[int]

    @property
    def pids(self) -> dict[str, int]:
        return {"server": self.server.pid, "worker": self.worker.pid, "bare": self.bare.pid}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def throwaway_keys(folder: Path) -> dict[str, str]:
    """A signing key pair for the calling system (hallflow-cli, which data/org.toml lets speak for
    anyone) and one for the worker (hallflow), their public keys, and a data key: as
    tests/org_fixtures.py and `make keys` make them."""
    public = folder / "public.toml"
    paths = {"signing_key": folder / "hallflow-cli.key", "worker_key": folder / "hallflow.key"}
    for principal, path in (("hallflow-cli", paths["signing_key"]), ("hallflow", paths["worker_key"])):
        private, key = new_key(principal)
        save_private(private, path)
        add_public_key(public, key)
    data_keys.add_key(folder / "data.toml", "aes-256-gcm")
    return {**{k: str(v) for k, v in paths.items()}, "keys_file": str(public), "data_keys_file": str(folder / "data.toml")}


def calendar(folder: Path) -> tuple[Path, list[int]]:
    """data/calendar when it has this year and the next; else a copy with a weekends-only
    placeholder for the missing year (development only: the deadlines are then guesses)."""
    shipped = ROOT / "data" / "calendar"
    this_year = date.today().year
    if all((shipped / f"{year}.toml").exists() for year in (this_year, this_year + 1)):
        return shipped, []
    placeholders = with_placeholders(shipped, folder, date.today() + timedelta(days=366))
    for year in placeholders:
        print(f"bench: WARNING: data/calendar has no {year}.toml: a weekends-only placeholder stands in for it "
              "(add the State Council's table)", file=sys.stderr)  # fmt: skip
    return folder, placeholders


@contextmanager
def database(kind: str, tmp: Path) -> Iterator[str]:
    """A fresh application database: a SQLite file in tmp, or a PostgreSQL schema dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'hallflow.db'}"
        return
    schema = f"hallflow_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:  # the worker builds its engine from a URL, so the schema travels in libpq's options
        yield make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def clean_environment(tmp: Path) -> dict[str, str]:
    """This process's environment without any HALLFLOW_* or TEMPORAL_* setting, and an empty
    Temporal profile: the machine's own settings (a TLS profile, a data key) must not leak in."""
    empty = tmp / "temporal.toml"
    empty.touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HALLFLOW_", "TEMPORAL_"))}
    return {**env, "TEMPORAL_CONFIG_FILE": str(empty)}


def server_command(tmp: Path, port: int) -> list[str]:
    attributes = [arg for key in search.ALL for arg in ("--search-attribute", f"{key.name}={key._metadata_type}")]
    return [
        str(BIN / "temporal"), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port), "--headless",
        "--http-port", "0", "--metrics-port", "0", "--db-filename", str(tmp / "temporal.db"),
        "--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal",
        "--log-level", "error", *attributes,
    ]  # fmt: skip


async def until_up(address: str, server: subprocess.Popen, timeout: float = 60) -> Client:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"the dev server stopped at once (exit {server.returncode})")
        try:
            return await Client.connect(address)
        except RuntimeError:
            if loop.time() > end:
                raise TimeoutError(f"the dev server did not answer on {address} within {timeout:.0f} s") from None
            await asyncio.sleep(0.25)


async def until_polled(client: Client, queue: str, process: subprocess.Popen, timeout: float = 60) -> None:
    """Until a worker polls `queue` for workflow and activity tasks."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    kinds = (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY)
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the worker for {queue} stopped (exit {process.returncode})")
        answers = [
            await client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(namespace="default", task_queue=TaskQueue(name=queue), task_queue_type=kind)
            )
            for kind in kinds
        ]
        if all(a.pollers for a in answers):
            return
        if loop.time() > end:
            raise TimeoutError(f"no worker polled {queue} within {timeout:.0f} s")
        await asyncio.sleep(0.25)


def stop(process: subprocess.Popen, timeout: float = 30) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # worker.py drains in-flight tasks, then stops
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@asynccontextmanager
async def rig(
    tmp: Path, database_url: str, max_cached_workflows: int = Settings.model_fields["max_cached_workflows"].default
) -> AsyncIterator[Rig]:
    keys = throwaway_keys(tmp / "keys")
    calendar_dir, placeholders = calendar(tmp / "calendar")
    env = clean_environment(tmp)
    port = free_port()
    address = f"127.0.0.1:{port}"
    hallflow_env = {
        "HALLFLOW_TEMPORAL_ADDRESS": address,
        "HALLFLOW_TASK_QUEUE": HALLFLOW_QUEUE,
        "HALLFLOW_DATABASE_URL": database_url,
        "HALLFLOW_CALENDAR_DIR": str(calendar_dir),
        "HALLFLOW_MAX_CACHED_WORKFLOWS": str(max_cached_workflows),
        **{f"HALLFLOW_{name.upper()}": value for name, value in keys.items()},
    }
    # The benchmark's own client reads the same settings; the profile and TEMPORAL_* are cleared here too.
    for name in [k for k in os.environ if k.startswith("TEMPORAL_")]:
        del os.environ[name]
    os.environ["TEMPORAL_CONFIG_FILE"] = env["TEMPORAL_CONFIG_FILE"]
    settings = Settings(
        temporal_address=address, task_queue=HALLFLOW_QUEUE, database_url=database_url,
        calendar_dir=calendar_dir, **keys,
    )  # fmt: skip
    logs = {name: (tmp / f"{name}.log").open("w") for name in ("temporal", "worker", "bare")}
    started: list[subprocess.Popen] = []

    def spawn(name: str, command: list[str], extra: dict[str, str] | None = None) -> subprocess.Popen:
        # Logs go to files: a pipe nobody reads fills up and blocks the process.
        process = subprocess.Popen(
            command, cwd=ROOT, env={**env, **(extra or {})}, stdout=logs[name], stderr=subprocess.STDOUT
        )
        started.append(process)
        return process

    try:
        server = spawn("temporal", server_command(tmp, port))
        client = await until_up(address, server)
        worker = spawn("worker", [sys.executable, "worker.py"], hallflow_env)
        bare = spawn("bare", [sys.executable, "-m", "bench.bare", "--address", address,
                              "--max-cached-workflows", str(max_cached_workflows)])  # fmt: skip
        await until_polled(client, HALLFLOW_QUEUE, worker)
        await until_polled(client, BARE_QUEUE, bare)
        yield Rig(tmp, address, settings, server, worker, bare, placeholders)
    except BaseException:
        for name in logs:
            if said := tail(tmp / f"{name}.log"):
                print(f"--- the last lines of {name}.log ---\n{said}", file=sys.stderr)
        raise
    finally:
        for process in reversed(started):  # the workers before the server they talk to
            stop(process)
        for log in logs.values():
            log.close()
