"""`starter.py admin …` as an operator runs it: setup may run again on any server, and the
development calendar never overwrites the official one."""

import os
import shutil
import subprocess
import sys

from settings import ROOT


def starter(*args: str, cwd=ROOT, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "starter.py"), *args], cwd=cwd, env={**os.environ, **env},
        capture_output=True, text=True, timeout=60,
    )


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
