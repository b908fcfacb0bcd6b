"""How fast and how lean hallflow is, against Temporal's own floor. Speed is measured here, never by timed tests.

    .venv/bin/python -m bench.cases [--cases 100] [--rounds 3] [--concurrency 10] [--database sqlite|postgresql]
    .venv/bin/python -m bench.cases --open-cases 10000

One run starts its own Temporal dev server, worker.py and the bare worker (bench/bare.py) as
processes on 127.0.0.1 (bench/rig.py), then alternates the four arms of bench/arms.py in rounds:
a bare 1-activity workflow, b bare workflow with two Updates, c hallflow's automatic case with
its rating, d hallflow's full path. Per arm: cases/s, history events, workflow tasks and
activities per case, CPU per case of the server and of the arm's worker (/proc), Update round
trips, peak RSS; then hallflow's ratios to the bare arms and the issue's targets.
--open-cases N instead starts N cases that stay open and reports the worker's and the server's RSS.
Prints Markdown and writes bench/results/<UTC timestamp>.json; docs/performance.md explains each number.
"""

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import temporalio
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter

from activities.catalog import load_catalog
from bench.arms import ARMS, Arm, Driver, Outbox
from bench.proc import PeakRss, cpu_s, machine_cpu_s, rss_mb
from bench.rig import Rig, database, rig
from logs import configure_logging
from security.codec import ENCRYPTED
from settings import ROOT, connect

RESULTS = Path(__file__).resolve().parent / "results"
SAMPLES = 3  # histories read per arm
IDLE_S = 3.0
# The targets (issue 15).
TARGET_FULL_EVENTS, TARGET_AUTOMATIC_EVENTS = 60, 25
TARGET_CPU_RATIO, TARGET_UPDATE_RATIO, TARGET_RSS_MB, TARGET_OPEN = 3.0, 2.0, 250, 10_000


# ---- numbers ---------------------------------------------------------------------------------


def spread(seconds: list[float]) -> dict | None:
    if not seconds:
        return None
    s = sorted(seconds)
    p99 = statistics.quantiles(s, n=100, method="inclusive")[98] if len(s) > 1 else s[0]
    return {"n": len(s), "p50_ms": round(statistics.median(s) * 1000, 1), "p99_ms": round(p99 * 1000, 1)}


def cpu(rig: Rig) -> dict[str, float]:
    return {**{name: cpu_s(pid) for name, pid in rig.pids.items()}, "client": cpu_s(os.getpid()), "machine": machine_cpu_s()}


def payloads(message) -> list[Payload]:
    """Every Payload inside a protobuf message (a history event), however deep."""
    found = []
    for desc, value in message.ListFields():
        if desc.message_type is None:
            continue
        if desc.message_type.GetOptions().map_entry:
            items = value.values()
        elif desc.is_repeated:
            items = value
        else:
            items = [value]
        for item in items:
            if isinstance(item, Payload):
                found.append(item)
            elif hasattr(item, "ListFields"):
                found.extend(payloads(item))
    return found


async def history(client: Client, workflow_id: str, close_wait: float) -> dict:
    """The history of one sampled case, read once it has closed (or after `close_wait` seconds, open)."""
    handle = client.get_workflow_handle(workflow_id)
    end = time.monotonic() + close_wait
    while True:
        closed = (await handle.describe()).status != WorkflowExecutionStatus.RUNNING
        if closed or time.monotonic() >= end:
            break
        await asyncio.sleep(1)
    events = (await handle.fetch_history()).events
    kinds = [e.event_type for e in events]
    encrypted = [p for e in events for p in payloads(e) if p.metadata.get("encoding") == ENCRYPTED]
    return {
        "workflow_id": workflow_id,
        "closed": closed,
        "events": len(events),
        "workflow_tasks": kinds.count(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED),
        "activities": kinds.count(EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED),
        "local_activities": sum(
            e.marker_recorded_event_attributes.marker_name == "core_local_activity"
            for e in events
            if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
        ),
        "kinds": dict(Counter(EventType.Name(k).removeprefix("EVENT_TYPE_").lower() for k in kinds).most_common()),
        "encrypted_payloads": encrypted,
    }


def codec_ms(codec, encrypted: list[Payload], repeat: int = 20) -> float:
    """What the codec costs for one case's payloads: each decrypted and encrypted again once (a
    worker decodes what it receives and encodes what it sends), timed on this thread."""
    if not encrypted:
        return 0.0
    began = time.thread_time()
    for _ in range(repeat):
        for payload in encrypted:
            codec.encrypt(codec.decrypt(payload))
    return (time.thread_time() - began) * 1000 / repeat


def summarize(key: str, arms: list[Arm], deltas: list[dict], peaks: list[dict], samples: list[dict], codec) -> dict:
    worker = "bare" if key in ("a", "b") else "worker"
    cases = sum(len(a.workflow_ids) for a in arms)
    wall = sum(a.wall_s for a in arms)
    used = {name: sum(d[name] for d in deltas) for name in deltas[0]}
    own = used["server"] + used["worker"] + used["bare"] + used["client"]
    by_name: dict[str, list[float]] = {}
    for a in arms:
        for name, trips in a.updates_by_name.items():
            by_name.setdefault(name, []).extend(trips)
    per_case = lambda seconds: round(seconds * 1000 / cases, 1)  # noqa: E731
    return {
        "arm": key,
        "name": ARMS[key],
        "cases": cases,
        "wall_s": round(wall, 2),
        "cases_per_s": round(cases / wall, 1),
        "history": {
            "events": [s["events"] for s in samples],
            "workflow_tasks": [s["workflow_tasks"] for s in samples],
            "activities": [s["activities"] for s in samples],
            "local_activities": [s["local_activities"] for s in samples],
            "encrypted_payloads": [len(s["encrypted_payloads"]) for s in samples],
            "closed": all(s["closed"] for s in samples),
            "event_kinds_first": samples[0]["kinds"] if samples else {},  # where the events go
            "sampled": [s["workflow_id"] for s in samples],
        },
        "cpu_ms_per_case": {
            "server": per_case(used["server"]),
            "worker": per_case(used[worker]),
            "client": per_case(used["client"]),
            "idle_worker": per_case(used["bare" if worker == "worker" else "worker"]),  # the other arm's, polling
        },
        "codec_ms_per_case": round(statistics.median(codec_ms(codec, s["encrypted_payloads"]) for s in samples), 2)
        if samples and codec else 0.0,
        "updates": spread([t for a in arms for t in a.updates]),
        "updates_by_name": {name: spread(trips) for name, trips in by_name.items()},
        "rss_mb_peak": {
            "worker": round(max(p[worker] for p in peaks), 1),
            "server": round(max(p["server"] for p in peaks), 1),
        },
        # Everything else the machine ran meanwhile, as a share of its CPUs over the arm.
        "other_cpu_share": round(max(0.0, used["machine"] - own) / (wall * os.cpu_count()), 3),
    }


def ratios(arms: dict[str, dict]) -> dict:
    def system(key: str) -> float:
        c = arms[key]["cpu_ms_per_case"]
        return c["server"] + c["worker"]

    def one(key: str, process: str) -> float:
        return round(arms[key]["cpu_ms_per_case"][process] / arms["a"]["cpu_ms_per_case"][process], 2)

    b, d = arms["b"]["updates"], arms["d"]["updates"]
    return {
        "cpu_c_vs_a": round(system("c") / system("a"), 2),
        "cpu_d_vs_a": round(system("d") / system("a"), 2),
        "cpu_server_d_vs_a": one("d", "server"),
        "cpu_worker_d_vs_a": one("d", "worker"),
        "update_p50_d_vs_b": round(d["p50_ms"] / b["p50_ms"], 2) if b and d else None,
    }


# ---- the runs ----------------------------------------------------------------------------------


def running(prefix: str) -> str:
    return f'WorkflowType = "CaseWorkflow" AND ExecutionStatus = "Running" AND WorkflowId STARTS_WITH "{prefix}"'


async def drain(client: Client, run: str, timeout: float = 180) -> float:
    """Wait until every measured hallflow case has ended (a minute after its rating), so that its
    last workflow task falls in no other arm's window. Returns the seconds waited."""
    query = running(f"case-BENCH-{run}-")
    began = time.monotonic()
    while (await client.count_workflows(query)).count:
        if time.monotonic() - began > timeout:
            print(f"bench: WARNING: cases still open after {timeout:.0f} s; the next round goes on", file=sys.stderr)
            break
        await asyncio.sleep(2)
    return time.monotonic() - began


async def run_arms(args, rig: Rig, driver: Driver, rss: PeakRss) -> dict:
    # One case per arm first, not measured: imports, the sandbox's first modules, connections.
    # hallflow's stay open in their rating window (rated, they would end inside round 1).
    for key in ARMS:
        await driver.arm(key, "warm", 1, 1, **({"rate": False} if key in ("c", "d") else {}))
    # What the processes use doing nothing (pollers, the server's own timers), for scale.
    before = cpu(rig)
    await asyncio.sleep(IDLE_S)
    after = cpu(rig)
    idle = {name: round((after[name] - before[name]) * 1000 / IDLE_S, 1) for name in ("server", "worker", "bare")}
    per_round = [args.cases // args.rounds + (r < args.cases % args.rounds) for r in range(args.rounds)]
    runs: dict[str, list[Arm]] = {key: [] for key in ARMS}
    deltas: dict[str, list[dict]] = {key: [] for key in ARMS}
    peaks: dict[str, list[dict]] = {key: [] for key in ARMS}
    drained = 0.0
    for round_, n in enumerate(per_round):
        for key in ARMS:
            rss.reset()
            before = cpu(rig)
            arm = await driver.arm(key, str(round_ + 1), n, args.concurrency)
            after = cpu(rig)
            rss.sample()
            runs[key].append(arm)
            deltas[key].append({name: after[name] - before[name] for name in after})
            peaks[key].append(dict(rss.peak))
            print(f"round {round_ + 1}/{args.rounds} {key} {ARMS[key]}: {n} cases in {arm.wall_s:.1f} s",
                  file=sys.stderr)  # fmt: skip
        if round_ + 1 < args.rounds:
            drained += await drain(driver.hallflow, driver.run)
    samples = {}
    for key in ARMS:  # from round 1: ended during the drains, unless there was one round only
        sampled = runs[key][0].workflow_ids[:SAMPLES]
        samples[key] = await asyncio.gather(*(history(driver.hallflow, wid, args.close_wait) for wid in sampled))
    codec = driver.hallflow.data_converter.payload_codec
    arms = {key: summarize(key, runs[key], deltas[key], peaks[key], samples[key], codec) for key in ARMS}
    return {"arms": arms, "ratios": ratios(arms), "idle_cpu_ms_per_s": idle, "drain_s": round(drained, 1)}


async def run_open_cases(args, rig: Rig, driver: Driver, rss: PeakRss) -> dict:
    """Open cases in ten steps, the RSS read after each: the worker's should level off once its
    cache (max_cached_workflows) is full, however many cases are open."""
    now = lambda: {name: round(rss_mb(rig.pids[name]), 1) for name in ("worker", "server")}  # noqa: E731
    before, curve, wall, opened = now(), [], 0.0, 0
    rss.reset()
    steps = [args.open_cases // 10 + (i < args.open_cases % 10) for i in range(10)]
    for i, n in enumerate(s for s in steps if s):
        arm = await driver.arm("open", str(i + 1), n, args.concurrency)
        wall, opened = wall + arm.wall_s, opened + n
        curve.append({"open": opened, **now()})
        print(f"open cases: {opened} of {args.open_cases} in {wall:.0f} s, worker RSS {curve[-1]['worker']} MB",
              file=sys.stderr)  # fmt: skip
    await asyncio.sleep(5)  # what is left over from the starts settles
    rss.sample()
    query = running(f"case-OPEN-{driver.run}-")
    return {
        "open_cases": {
            "cases": args.open_cases,
            "open": (await driver.hallflow.count_workflows(query)).count,  # by visibility, which may lag a moment
            "wall_s": round(wall, 1),
            "cases_per_s": round(args.open_cases / wall, 1),
            "rss_mb_before": before,
            "rss_mb_after": now(),
            "rss_mb_peak": {name: round(rss.peak[name], 1) for name in ("worker", "server")},
            "rss_mb_curve": curve,
            "max_cached_workflows": rig.settings.max_cached_workflows,
        }
    }


async def bench(args, tmp: Path, url: str) -> dict:
    async with rig(tmp, url) as r, PeakRss(r.pids) as rss:
        hallflow = await connect(r.settings, key_file=r.settings.signing_key)  # signs for the actor each message names
        bare = await Client.connect(r.address, data_converter=pydantic_data_converter)
        outbox = Outbox(url)
        poller = asyncio.create_task(outbox.run())
        catalog = load_catalog(r.settings.catalog_file)
        driver = Driver(hallflow, bare, r.settings, outbox, catalog, run=uuid.uuid4().hex[:6].upper())
        try:
            async with asyncio.timeout(args.timeout):
                if args.open_cases:
                    measured = await run_open_cases(args, r, driver, rss)
                else:
                    measured = await run_arms(args, r, driver, rss)
        finally:
            poller.cancel()
            outbox.engine.dispose()
        return {**measured, "calendar_placeholders": r.placeholder_years}


# ---- output ----------------------------------------------------------------------------------

COLUMNS = [
    "arm", "cases", "cases/s", "events/case", "WFTs/case", "activities/case", "server CPU ms/case",
    "worker CPU ms/case", "client CPU ms/case", "codec ms/case", "Update p50 ms", "Update p99 ms",
    "worker RSS MB", "server RSS MB",
]  # fmt: skip
OPEN_COLUMNS = [
    "open cases", "started in s", "cases/s", "worker RSS MB before / after / peak", "server RSS MB before / after / peak",
]  # fmt: skip


def _range(values: list[int], closed: bool = True) -> str:
    if not values:
        return "–"
    low, high = min(values), max(values)
    text = str(low) if low == high else f"{low}–{high}"
    return text if closed else f"≥{text}"


def activities(h: dict) -> str:
    """Activities per case, and local activities (a marker event each) when there are any."""
    text = _range(h["activities"])
    if any(h["local_activities"]):
        text += f" + {_range(h['local_activities'])} local"
    return text if h["closed"] else f"≥ {text}"


def _row(cells: list) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def arms_table(arms: dict) -> str:
    lines = [_row(COLUMNS), _row(["---"] * len(COLUMNS))]
    for key, a in arms.items():
        h, c, u = a["history"], a["cpu_ms_per_case"], a["updates"]
        lines.append(_row([
            f"{key} {a['name']}", a["cases"], a["cases_per_s"], _range(h["events"], h["closed"]),
            _range(h["workflow_tasks"], h["closed"]), activities(h), c["server"], c["worker"],
            c["client"], a["codec_ms_per_case"] or "–", u["p50_ms"] if u else "–", u["p99_ms"] if u else "–",
            a["rss_mb_peak"]["worker"], a["rss_mb_peak"]["server"],
        ]))  # fmt: skip
    return "\n".join(lines)


def targets(result: dict) -> list[list]:
    """The issue's targets that this run measured: [target, measured, met]."""
    rows = []
    arms, r = result.get("arms"), result.get("ratios")
    if arms:
        limits = (("d", TARGET_FULL_EVENTS, "full path"), ("c", TARGET_AUTOMATIC_EVENTS, "automatic + rating"))
        for key, limit, what in limits:
            events = arms[key]["history"]["events"]
            closed = arms[key]["history"]["closed"]
            met = max(events) <= limit if closed or max(events) > limit else "–"  # an open case may grow
            rows.append([f"{what} ≤ {limit} events", _range(events, closed), met])
        rows.append([f"CPU per case ≤ {TARGET_CPU_RATIO:g}× bare 1-activity (d vs a)", f"{r['cpu_d_vs_a']}×",
                     r["cpu_d_vs_a"] <= TARGET_CPU_RATIO])  # fmt: skip
        rows.append([f"automatic CPU per case ≤ {TARGET_CPU_RATIO:g}× bare (c vs a)", f"{r['cpu_c_vs_a']}×",
                     r["cpu_c_vs_a"] <= TARGET_CPU_RATIO])  # fmt: skip
        if r["update_p50_d_vs_b"] is not None:
            rows.append([f"Update p50 ≤ {TARGET_UPDATE_RATIO:g}× bare Update (d vs b)", f"{r['update_p50_d_vs_b']}×",
                         r["update_p50_d_vs_b"] <= TARGET_UPDATE_RATIO])  # fmt: skip
    if o := result.get("open_cases"):
        rss, enough = o["rss_mb_after"]["worker"], o["cases"] >= TARGET_OPEN
        note = "" if enough else f" (at {o['cases']:,} open cases, not {TARGET_OPEN:,})"
        # With fewer cases open, only a miss is known: the RSS does not shrink as more open.
        met = rss < TARGET_RSS_MB if enough or rss >= TARGET_RSS_MB else "–"
        rows.append([f"worker RSS < {TARGET_RSS_MB} MB with {TARGET_OPEN:,} open cases", f"{rss} MB{note}", met])
    return rows


def markdown(result: dict) -> str:
    head = (
        f"hallflow bench {result['date']} · code {result['code']} · {result['database']} · "
        f"{result['cpus']} CPUs · temporalio {result['temporalio']} · {result['total_s']} s in all"
    )
    parts = [head, ""]
    if arms := result.get("arms"):
        a = result["args"]
        parts += [f"{a['cases']} cases per arm in {a['rounds']} rounds, {a['concurrency']} in flight", ""]
        parts += [arms_table(arms), ""]
        r = result["ratios"]
        parts.append(
            f"hallflow / bare: CPU (server + worker) per case c/a {r['cpu_c_vs_a']}×, d/a {r['cpu_d_vs_a']}×; "
            f"Update p50 d/b {r['update_p50_d_vs_b']}×"
        )
        i = result["idle_cpu_ms_per_s"]
        parts.append(f"idle, for scale: server {i['server']} ms/s, worker.py {i['worker']} ms/s, bare worker {i['bare']} ms/s")
        if not all(v["history"]["closed"] for v in arms.values()):
            parts.append("≥: the sampled cases were still open (--close-wait): their histories would have grown")
        busy = {k: v["other_cpu_share"] for k, v in arms.items() if v["other_cpu_share"] > 0.1}
        if busy:
            parts.append(f"other processes used over 10 % of the CPUs during {', '.join(busy)}: rerun on a quiet machine")
        parts.append("")
    if o := result.get("open_cases"):
        b, af, pk = o["rss_mb_before"], o["rss_mb_after"], o["rss_mb_peak"]
        parts += [_row(OPEN_COLUMNS), _row(["---"] * len(OPEN_COLUMNS)), _row([
            f"{o['open']} of {o['cases']}", o["wall_s"], o["cases_per_s"],
            f"{b['worker']} / {af['worker']} / {pk['worker']}", f"{b['server']} / {af['server']} / {pk['server']}",
        ]), ""]  # fmt: skip
        parts += ["worker / server RSS MB as the cases opened: "
                  + ", ".join(f"{c['open']}: {c['worker']} / {c['server']}" for c in o["rss_mb_curve"]), ""]  # fmt: skip
    rows = targets(result)
    parts += [_row(["target", "measured", "met"]), _row(["---"] * 3)]
    parts += [_row([t, m, {True: "yes", False: "no"}.get(ok, ok)]) for t, m, ok in rows]
    return "\n".join(parts)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.cases", description=__doc__.split("\n")[0])
    p.add_argument("--cases", type=int, default=100, help="cases per arm, over all rounds (default 100)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of the four arms, alternated (default 3)")
    p.add_argument("--concurrency", type=int, default=10, help="cases in flight in an arm (default 10)")
    p.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    p.add_argument("--open-cases", type=int, default=0, metavar="N",
                   help="instead of the arms: start N cases that stay open, then read the RSS")  # fmt: skip
    p.add_argument("--close-wait", type=float, default=120,
                   help="wait this long for a sampled case to end before reading its history (default 120 s)")  # fmt: skip
    p.add_argument("--timeout", type=float, default=3600, help="give up after this many seconds (default 3600)")
    p.add_argument("--out", type=Path, default=RESULTS, help="where the JSON goes (default bench/results)")
    args = p.parse_args()
    if not args.open_cases and args.cases < args.rounds:
        p.error("--cases must be at least --rounds")
    for name in [k for k in os.environ if k.startswith("HALLFLOW_")]:  # the rig names every setting itself
        del os.environ[name]
    configure_logging("WARNING")  # the client's info line per started case would bury the table
    # Stopped like Ctrl-C: the rig still stops the dev server and the workers it started.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    began = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="hallflow-bench-") as tmp, database(args.database, Path(tmp)) as url:
            measured = asyncio.run(bench(args, Path(tmp), url))
    except WorkflowUpdateFailedError as err:
        sys.exit(f"bench: hallflow refused an Update: {err.cause.message if err.cause else err}")
    except TimeoutError as err:
        sys.exit(f"bench: gave up: {err or f'not done within --timeout {args.timeout:.0f} s'}")
    now = datetime.now(timezone.utc)
    git = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True)
    cli = subprocess.run([str(Path(sys.executable).parent / "temporal"), "--version"], capture_output=True, text=True)
    result = {
        "date": now.isoformat(timespec="seconds"),
        "code": git.stdout.strip() or "unknown",
        "temporalio": temporalio.__version__,
        "temporal_cli": cli.stdout.strip(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "database": args.database,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "total_s": round(time.perf_counter() - began, 1),
        **measured,
    }
    result["targets"] = [{"target": t, "measured": m, "met": ok} for t, m, ok in targets(result)]
    print(markdown(result))
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"{now:%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
