"""The benchmark still runs: bench/cases.py on a handful of cases, its own dev server and worker
processes, with every arm and every number in its table and its JSON. Timing is not checked here
(house rule: speed is measured by the benchmark, never by timed tests)."""

import json
import os
import signal
import subprocess
import sys

import pytest

from settings import ROOT

pytestmark = pytest.mark.e2e

ARMS = ["a bare 1-activity", "b bare 2 Updates", "c automatic + rating", "d full path"]
COLUMNS = [
    "arm", "cases", "cases/s", "events/case", "WFTs/case", "activities/case", "server CPU ms/case",
    "worker CPU ms/case", "client CPU ms/case", "codec ms/case", "Update p50 ms", "Update p99 ms",
    "worker RSS MB", "server RSS MB",
]  # fmt: skip


def bench(tmp_path, *args: str, timeout: float = 120) -> tuple[str, dict]:
    """Run the benchmark; its stdout and the JSON it wrote. Its processes (dev server, workers)
    share its process group, which is killed should it hang."""
    out = tmp_path / "results"
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.cases", *args, "--out", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    assert process.returncode == 0, stderr[-3000:]
    [written] = list(out.glob("*.json"))
    return stdout, json.loads(written.read_text(encoding="utf-8"))


def table_rows(stdout: str, first_column: str) -> list[dict[str, str]]:
    """The Markdown table whose header starts with `first_column`, as dicts."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_column} |"))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True)))
    return rows


def test_benchmark_reports_every_arm_with_every_number(tmp_path):
    stdout, result = bench(tmp_path, "--cases", "2", "--rounds", "1", "--concurrency", "2", "--close-wait", "0")

    rows = table_rows(stdout, "arm")
    assert [r["arm"] for r in rows] == ARMS
    assert list(rows[0]) == COLUMNS
    for row in rows:
        assert all(row[c] for c in COLUMNS), row
        assert float(row["server CPU ms/case"]) >= 0 and float(row["cases/s"]) > 0
    assert rows[1]["Update p50 ms"] != "–" and rows[3]["Update p50 ms"] != "–"  # the arms with Updates
    assert "hallflow / bare: CPU (server + worker) per case c/a" in stdout
    targets = {r["target"] for r in table_rows(stdout, "target")}
    assert {"full path ≤ 60 events", "automatic + rating ≤ 25 events"} <= targets

    assert result["code"] and result["cpus"] and result["database"] == "sqlite"
    assert set(result["arms"]) == {"a", "b", "c", "d"}
    for key, arm in result["arms"].items():
        assert arm["cases"] == 2 and arm["cases_per_s"] > 0
        assert set(arm["cpu_ms_per_case"]) == {"server", "worker", "client", "idle_worker"}
        assert set(arm["rss_mb_peak"]) == {"worker", "server"} and arm["rss_mb_peak"]["server"] > 0
        history = arm["history"]
        assert len(history["events"]) == 2 and min(history["events"]) > 0 and min(history["workflow_tasks"]) > 0
        assert (arm["updates"] is None) == (key == "a")
    # hallflow's payloads are encrypted in the history; the bare arms' are plain JSON.
    assert min(result["arms"]["d"]["history"]["encrypted_payloads"]) > 0
    assert result["arms"]["a"]["history"]["encrypted_payloads"] == [0, 0]
    assert {"review", "vote", "supplement_materials", "rate"} == set(result["arms"]["d"]["updates_by_name"])
    assert {"cpu_c_vs_a", "cpu_d_vs_a", "update_p50_d_vs_b"} <= set(result["ratios"])
    assert len(result["targets"]) == 5


def test_benchmark_reports_memory_with_open_cases(tmp_path):
    stdout, result = bench(tmp_path, "--open-cases", "5")

    [row] = table_rows(stdout, "open cases")
    assert row["open cases"].endswith("of 5")
    opened = result["open_cases"]
    assert opened["cases"] == 5 and opened["open"] == 5  # deferred cases wait for their review
    for moment in ("rss_mb_before", "rss_mb_after", "rss_mb_peak"):
        assert opened[moment]["worker"] > 0 and opened[moment]["server"] > 0
    assert "arms" not in result
    assert [t["target"] for t in result["targets"]] == ["worker RSS < 250 MB with 10,000 open cases"]
