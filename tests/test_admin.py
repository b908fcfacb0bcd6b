"""`starter.py admin …` as an operator runs it: setup may run again on any server, and the
development calendar never overwrites the official one."""

import json
import os
import shutil
import subprocess
import sys

from temporalio.testing import WorkflowEnvironment

from contract import search
from tests.org_fixtures import data_converter
from settings import ROOT
from tests.temporal_fixtures import BIN


def starter(*args: str, cwd=ROOT, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "starter.py"), *args], cwd=cwd, env={**os.environ, **env},
        capture_output=True, text=True, timeout=60,
    )


def setup_twice(address: str) -> list[dict]:
    answers = []
    for _ in range(2):
        ran = starter("admin", "setup", "-o", "json", HALLFLOW_TEMPORAL_ADDRESS=address)
        assert ran.returncode == 0, ran.stderr
        answers.append(json.loads(ran.stdout))
    return answers


async def test_setup_runs_twice_on_the_time_skipping_server():
    # A fresh server: nothing registered yet (the shared `env` fixture registers everything itself).
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=data_converter, test_server_existing_path=str(BIN / "temporal-test-server")
    )
    try:
        first, second = setup_twice(env.client.service_client.config.target_host)
    finally:
        await env.shutdown()

    assert first == {"added": sorted(key.name for key in search.ALL)}
    assert second == {"added": []}


def test_setup_runs_twice_on_the_dev_server(dev_server):
    first, second = setup_twice(dev_server.client.service_client.config.target_host)
    assert first == second == {"added": []}  # the fixture started the server with them


def test_dev_calendar_refuses_to_overwrite_the_directory_it_reads(tmp_path):
    official = tmp_path / "calendar"
    shutil.copytree(ROOT / "data" / "calendar", official)
    before = {path.name: path.read_bytes() for path in official.glob("*.toml")}
    (tmp_path / "link").symlink_to(official)

    for out in (str(official), "calendar/", "./link", str(tmp_path / "x" / ".." / "calendar")):
        ran = starter("admin", "dev-calendar", out, cwd=tmp_path, HALLFLOW_CALENDAR_DIR=str(official))
        assert ran.returncode == 2, (out, ran.stdout, ran.stderr)
        assert len(ran.stderr.strip().splitlines()) == 1 and "reads from" in ran.stderr, ran.stderr
    assert {path.name: path.read_bytes() for path in official.glob("*.toml")} == before

    elsewhere = starter("admin", "dev-calendar", "var/calendar", cwd=tmp_path, HALLFLOW_CALENDAR_DIR=str(official))
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert set(before) <= {path.name for path in (tmp_path / "var" / "calendar").glob("*.toml")}
