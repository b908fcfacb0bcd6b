"""How fast and how lean hallflow is. The house rule: speed is measured here, never by timed tests.

    .venv/bin/python -m bench.cases [--cases 200] [--concurrency 50] [--database sqlite|postgresql]

Starts its own Temporal dev server (127.0.0.1; SQLite file with WAL, as `make run`) and, in this
process, the worker as worker.py builds it, with the real catalog and calendar and a fresh database.
A acceptance: N complete enterprise-opening cases, C in flight, each withdrawn right after its start
  (`withdraw` answers once the case was accepted and the withdrawal is in the audit trail).
B update: N open deferred cases (residence-proof owed): `supplement_materials` round trips, C in flight.
Prints a table and writes bench/results/<UTC timestamp>.json; bench/README.md explains each number.
"""

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import temporalio
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlmodel import Session, select
from temporalio.client import WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from activities.calendar import Calendar, CalendarYearMissing
from activities.catalog import load_catalog
from activities.db import AuditRow, make_engine
from contract import search
from contract.case import Applicant, CaseApplication, CaseStage, SupplementMaterials, Withdraw, case_workflow_id
from contract.converter import data_converter
from logs import configure_logging
from settings import ROOT, Settings
from cli.calls import start
from worker import build_worker
from workflows.case import CaseWorkflow

PG_URL = os.environ.get("HALLFLOW_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MATTER = "enterprise-opening"  # limits of 1-5 working days: late in a year its cases still fit the calendar
OWED = "residence-proof"  # non-core: deferred in scenario B
RESULTS = Path(__file__).resolve().parent / "results"


@contextmanager
def database(kind: str, tmp: Path):
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


def spread(seconds: list[float]) -> dict[str, int]:
    s = sorted(seconds)
    p95 = statistics.quantiles(s, n=20, method="inclusive")[18] if len(s) > 1 else s[0]
    return {"p50_ms": round(statistics.median(s) * 1000), "p95_ms": round(p95 * 1000), "max_ms": round(s[-1] * 1000)}


async def bounded(concurrency: int, work, items) -> float:
    """Run work(item) for every item, at most `concurrency` at a time; return the wall time in seconds."""
    gate = asyncio.Semaphore(concurrency)

    async def one(item) -> None:
        async with gate:
            await work(item)

    began = time.perf_counter()
    try:
        async with asyncio.TaskGroup() as group:
            for item in items:
                group.create_task(one(item))
    except ExceptionGroup as failed:
        raise failed.exceptions[0]  # the first failure says why; the others were cancelled
    return time.perf_counter() - began


def recorded(engine, action: str, case_nos: list[str]) -> dict[str, datetime]:
    """When each case's audit row for `action` was written."""
    query = select(AuditRow.subject_id, AuditRow.recorded_at).where(
        AuditRow.subject_type == "case", AuditRow.action == action, AuditRow.subject_id.in_(case_nos)
    )
    with Session(engine) as session:
        return dict(session.exec(query).all())


async def wait_for(engine, action: str, case_nos: list[str], timeout: float = 120) -> None:
    """Poll the audit trail (cheap, unlike a `status` query per case) until every case has recorded `action`."""
    end = time.monotonic() + timeout
    while len(recorded(engine, action, case_nos)) < len(case_nos):
        if time.monotonic() > end:
            raise TimeoutError(f"not every case recorded {action!r} within {timeout:.0f} s")
        await asyncio.sleep(0.2)


async def acceptance(client, settings: Settings, engine, apps: list[CaseApplication], concurrency: int) -> dict:
    started: dict[str, datetime] = {}
    closed: list[float] = []

    async def case(app: CaseApplication) -> None:
        began, started[app.case_no] = time.perf_counter(), datetime.now(timezone.utc)  # vs. the audit's recorded_at
        await start(client, settings, app)
        outcome = await client.get_workflow_handle(case_workflow_id(app.case_no)).execute_update(
            CaseWorkflow.withdraw, Withdraw(reason="benchmark", requested_by="bench")
        )
        assert outcome.stage == CaseStage.WITHDRAWN, outcome
        closed.append(time.perf_counter() - began)

    wall = await bounded(concurrency, case, apps)
    accepted = recorded(engine, "accepted", list(started))
    assert len(accepted) == len(apps), f"only {len(accepted)} of {len(apps)} cases recorded 'accepted'"
    return {"cases_per_s": round(len(apps) / wall, 1), "wall_s": round(wall, 1),
            "start_to_accepted": spread([(at - started[no]).total_seconds() for no, at in accepted.items()]),
            "start_to_withdrawn": spread(closed)}


async def update(client, settings: Settings, engine, apps: list[CaseApplication], concurrency: int) -> dict:
    case_nos = [app.case_no for app in apps]
    await bounded(concurrency, partial(start, client, settings), apps)  # set-up, not measured
    await wait_for(engine, "accepted_with_deferral", case_nos)
    trips: list[float] = []

    async def supplement(case_no: str) -> None:
        began = time.perf_counter()
        result = await client.get_workflow_handle(case_workflow_id(case_no)).execute_update(
            CaseWorkflow.supplement_materials, SupplementMaterials(materials=[OWED], submitted_by="clerk-bench")
        )
        assert result.complete, result
        trips.append(time.perf_counter() - began)

    wall = await bounded(concurrency, supplement, case_nos)
    await wait_for(engine, "materials_complete", case_nos)  # the work the Updates set off
    return {"updates_per_s": round(len(apps) / wall, 1), "wall_s": round(wall, 1), "round_trip": spread(trips)}


async def events(client, app: CaseApplication) -> int:
    return len((await client.get_workflow_handle(case_workflow_id(app.case_no)).fetch_history()).events)


def usage(who: int) -> tuple[float, float]:
    """(peak RSS in MB, CPU seconds) of this process, or of its reaped children: the dev server."""
    u = resource.getrusage(who)
    return round(u.ru_maxrss / 1024, 1), round(u.ru_utime + u.ru_stime, 1)


def machine_cpu_s() -> float:
    """CPU seconds every process on this machine has used since boot (/proc/stat: all but idle and iowait)."""
    ticks = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


async def bench(args: argparse.Namespace, tmp: Path, url: str) -> dict:
    settings = Settings(database_url=url, task_queue="hallflow-bench")
    matter = load_catalog(settings.catalog_file)[MATTER]
    try:
        Calendar.load(settings.calendar_dir).working_days_after(datetime.now(timezone.utc), matter.statutory_days)
    except CalendarYearMissing as err:
        sys.exit(f"bench: {err}\nEvery case would retry CalendarYearMissing forever: add that year's file first.")
    run = uuid.uuid4().hex[:6].upper()

    def application(i: int, owed: tuple[str, ...] = ()) -> CaseApplication:
        return CaseApplication(
            case_no=f"BENCH-{run}-{'D' if owed else 'C'}{i:05d}", matter_code=MATTER, hall="hall-bench",
            clerk="clerk-bench", applicant=Applicant(applicant_id=f"app-{run}-{len(owed)}-{i}"),
            materials=[m.code for m in matter.materials if m.code not in owed], commitment_signed=bool(owed),
        )

    complete = [application(i) for i in range(args.cases)]
    deferred = [application(i, (OWED,)) for i in range(args.cases)]
    engine = make_engine(url)
    env = await WorkflowEnvironment.start_local(
        ip="127.0.0.1",
        dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
        dev_server_database_filename=str(tmp / "temporal.db"),
        dev_server_extra_args=["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"],
        dev_server_log_level="error",  # not a "slow gRPC call" warning for every `withdraw` that waits for its case
        search_attributes=search.ALL,
        data_converter=data_converter,
    )
    try:
        rss_before_worker, _ = usage(resource.RUSAGE_SELF)
        with ThreadPoolExecutor(max_workers=settings.activity_threads) as executor:
            async with build_worker(env.client, settings, executor), asyncio.timeout(args.timeout):
                a = await acceptance(env.client, settings, engine, complete, args.concurrency)
                b = await update(env.client, settings, engine, deferred, args.concurrency)
                history = {"withdrawn_case": await events(env.client, complete[0]),
                           "supplemented_case": await events(env.client, deferred[0])}
    finally:
        await env.shutdown()
        engine.dispose()
    (rss, cpu), (server_rss, server_cpu) = usage(resource.RUSAGE_SELF), usage(resource.RUSAGE_CHILDREN)
    return {"acceptance": a, "update": b, "history_events": history,
            "process": {"peak_rss_mb": rss, "rss_before_worker_mb": rss_before_worker, "cpu_s": cpu},
            "dev_server": {"peak_rss_mb": server_rss, "cpu_s": server_cpu}}


def table(r: dict) -> str:
    a, b, p, s, h = r["acceptance"], r["update"], r["process"], r["dev_server"], r["history_events"]
    disturbed = r["other_cpu_s"] > 0.1 * r["total_s"] * r["cpus"]
    lat = lambda d: f"p50 {d['p50_ms']:>5} ms   p95 {d['p95_ms']:>5} ms   max {d['max_ms']:>5} ms"  # noqa: E731
    return "\n".join([
        f"hallflow bench {r['date']}  code {r['code']}  database {r['database']}",
        f"{r['cases']} cases per scenario, {r['concurrency']} in flight, {r['cpus']} CPUs, {r['total_s']} s in all",
        f"A acceptance  {a['cases_per_s']:>6} cases/s    start→accepted   {lat(a['start_to_accepted'])}",
        f"                                  start→withdrawn  {lat(a['start_to_withdrawn'])}",
        f"B update      {b['updates_per_s']:>6} updates/s  supplement trip  {lat(b['round_trip'])}",
        f"memory        peak RSS: bench+worker process {p['peak_rss_mb']} MB ({p['rss_before_worker_mb']} MB"
        f" before the worker), dev server {s['peak_rss_mb']} MB",
        f"cpu           bench+worker process {p['cpu_s']} s, dev server {s['cpu_s']} s,"
        f" other processes {r['other_cpu_s']} s" + ("  (other work shared the CPUs: rerun)" if disturbed else ""),
        f"history       withdrawn case {h['withdrawn_case']} events, supplemented case {h['supplemented_case']} events",
    ])


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.cases", description=__doc__.split("\n")[0])
    p.add_argument("--cases", type=int, default=200, help="cases per scenario (default 200)")
    p.add_argument("--concurrency", type=int, default=50, help="cases or Updates in flight (default 50)")
    p.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    p.add_argument("--timeout", type=float, default=600, help="give up after this many seconds (default 600)")
    args = p.parse_args()
    configure_logging("WARNING")  # the worker's info lines (several per case) would bury the table
    began, machine_before, own_before = time.perf_counter(), machine_cpu_s(), usage(resource.RUSAGE_SELF)[1]
    try:
        with tempfile.TemporaryDirectory(prefix="hallflow-bench-") as tmp, database(args.database, Path(tmp)) as url:
            result = asyncio.run(bench(args, Path(tmp), url))
    except WorkflowUpdateFailedError as err:
        sys.exit(f"bench: hallflow refused an Update: {err.cause.message if err.cause else err}")
    except TimeoutError as err:
        sys.exit(f"bench: gave up: {err or f'not done within --timeout {args.timeout:.0f} s'}")
    own = result["process"]["cpu_s"] - own_before + result["dev_server"]["cpu_s"]
    now = datetime.now(timezone.utc)
    git = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True)
    result = {"date": now.isoformat(timespec="seconds"), "code": git.stdout.strip() or "unknown",
              "temporalio": temporalio.__version__, "database": args.database,
              "cases": args.cases, "concurrency": args.concurrency, "cpus": os.cpu_count(),
              "total_s": round(time.perf_counter() - began, 1),
              "other_cpu_s": round(max(0.0, machine_cpu_s() - machine_before - own), 1), **result}
    print(table(result))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{now:%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"written {out}")


if __name__ == "__main__":
    main()
