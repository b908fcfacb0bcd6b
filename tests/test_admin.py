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


def snapshot(directory) -> dict[str, bytes]:
    return {str(path.relative_to(directory)): path.read_bytes() for path in directory.rglob("*.toml")}


def test_dev_calendar_refuses_to_overwrite_the_directory_it_reads(tmp_path):
    # The repository's layout: data/ holds the catalog, the directory, the risk rules and calendar/.
    data = tmp_path / "data"
    shutil.copytree(ROOT / "data", data)
    official = data / "calendar"
    before = snapshot(data)
    assert {"matters.toml", "org.toml", "risk.toml", "calendar/2026.toml"} <= set(before)
    (tmp_path / "link").symlink_to(official)
    (tmp_path / "data-link").symlink_to(data)
    elsewhere_config = tmp_path / "conf"
    elsewhere_config.mkdir()
    (elsewhere_config / "settings.toml").write_text("keep = true\n", encoding="utf-8")

    def dev_calendar(out: str) -> subprocess.CompletedProcess:
        return starter("admin", "dev-calendar", out, cwd=tmp_path, HALLFLOW_CALENDAR_DIR=str(official))

    # OUT is the source, contains it (data/, the parent) or lies inside it.
    for out in (str(official), "data/calendar/", "./link", str(tmp_path / "x" / ".." / "data" / "calendar"),
                "data", "data/", str(data), "./data-link", ".", "data/calendar/dev", "link/dev"):
        ran = dev_calendar(out)
        assert ran.returncode == 2, (out, ran.stdout, ran.stderr)
        assert len(ran.stderr.strip().splitlines()) == 1 and "reads from" in ran.stderr, (out, ran.stderr)
    assert snapshot(data) == before
    assert not (official / "dev").exists()

    # OUT holds .toml files that are no calendar's: not a calendar directory.
    ran = dev_calendar("conf")
    assert ran.returncode == 2, ran.stderr
    assert len(ran.stderr.strip().splitlines()) == 1 and "settings.toml" in ran.stderr, ran.stderr
    assert (elsewhere_config / "settings.toml").read_text(encoding="utf-8") == "keep = true\n"

    elsewhere = dev_calendar("var/calendar")
    assert elsewhere.returncode == 0, elsewhere.stderr
    written = {path.name for path in (tmp_path / "var" / "calendar").glob("*.toml")}
    assert {"2025.toml", "2026.toml"} <= written
    assert dev_calendar("var/calendar").returncode == 0  # again, over its own output
    assert snapshot(data) == before


def test_with_placeholders_touches_only_year_files(tmp_path):
    from datetime import date

    import pytest

    from activities.calendar import with_placeholders

    source = ROOT / "data" / "calendar"
    target = tmp_path / "calendar"
    target.mkdir()
    (target / "notes.toml").write_text("kept = true\n", encoding="utf-8")
    (target / "2019.toml").write_text("stale\n", encoding="utf-8")
    with_placeholders(source, target, date.today())
    assert (target / "notes.toml").read_text(encoding="utf-8") == "kept = true\n"
    assert not (target / "2019.toml").exists()
    assert (target / "2026.toml").read_bytes() == (source / "2026.toml").read_bytes()

    for overlapping in (source, source.parent, source / "dev"):
        with pytest.raises(ValueError, match="overlaps"):
            with_placeholders(source, overlapping, date.today())
    assert not (source / "dev").exists()
