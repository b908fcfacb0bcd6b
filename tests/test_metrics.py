"""The worker's Prometheus endpoint: the SDK's metrics and hallflow's on one port.

Counters count what the database committed, once (a retry and a rollback add nothing); the
gauges read current state; a failed activity attempt is counted by its error type; and worker.py
serves all of it on HALLFLOW_METRICS_PORT while a case runs through starter.py."""

import dataclasses
import json
import re
import shutil
import socket
import subprocess
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest
import structlog
import structlog.testing
import yaml
from sqlmodel import Session
from temporalio.common import MetricMeter
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput

from activities import chain
from activities.db import AuditRow, RiskRow
from activities.metrics import (
    ActivityFailures, CommittedRows, Metrics, bind_address, calendar_last_year, read_state,
)
from activities.store import Store
from contract.case import CaseStage
from contract.rating import Rating, RatingRecord
from contract.records import AuditEntry
from logs import core_runtime
from settings import ROOT
from tests.e2e_fixtures import stage_of, wait_for
from tests.test_store import case_event, registration

MONITORING = ROOT / "deploy" / "monitoring"
SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> list[tuple[str, dict[str, str], float]]:
    """The endpoint's samples: (name, labels, value)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    samples = []
    for line in text.splitlines():
        if match := SAMPLE.match(line):
            name, labels, value = match.groups()
            samples.append((name, dict(LABEL.findall(labels or "")), float(value)))
    return samples


def total(samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples carrying these labels (0 when there is none)."""
    return sum(v for n, l, v in samples if n == name and labels.items() <= l.items())


def has(samples, name: str, **labels: str) -> bool:
    return any(n == name and labels.items() <= l.items() for n, l, _ in samples)


@pytest.fixture(scope="module")
def exporter():
    """A runtime serving Prometheus on a free port, as worker.py makes it, and hallflow's instruments."""
    port = free_port()
    runtime = core_runtime(f"127.0.0.1:{port}")
    yield Metrics(runtime.metric_meter), port
    del runtime  # kept until the module's tests are done: the endpoint goes with it


def test_a_taken_metrics_port_leaves_the_worker_running_without_metrics():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with structlog.testing.capture_logs() as logs:
            runtime = core_runtime(f"127.0.0.1:{taken.getsockname()[1]}")
    assert runtime.metric_meter is MetricMeter.noop
    assert [entry["event"] for entry in logs] == ["metrics_unavailable"]
    assert "in use" in logs[0]["reason"]
    assert bind_address("127.0.0.1", 0) is None and bind_address("::1", 9464) == "[::1]:9464"


# --- counters: what the database committed -------------------------------------------------------


def test_committed_audit_rows_and_ratings_are_counted_once(store: Store, exporter):
    metrics, port = exporter
    rows = CommittedRows(metrics, store.engine).install()
    try:
        before = scrape(port)
        store.register_case(registration())
        store.record_case_event(case_event("received", CaseStage.RECEIVED))
        accepted = case_event("accepted_with_deferral", CaseStage.ACCEPTED, minutes=5, department="market-regulation")
        assert store.record_case_event(accepted)
        assert not store.record_case_event(accepted)  # a retry finds its row: counted once
        store.record_case_event(case_event("deadline_red", CaseStage.AWAITING_REVIEW, minutes=6))
        store.record_case_event(case_event("approved", CaseStage.APPROVED, minutes=7))
        rating = Rating(
            case_no="C-2025-0001", matter_code="enterprise-opening", department="market-regulation",
            hall="city-hall", score=2, channel="app", at=datetime.now(timezone.utc),
        )  # fmt: skip
        assert store.record_rating(RatingRecord(key="rating-1", rating=rating))
        assert not store.record_rating(RatingRecord(key="rating-1", rating=rating))
        after = scrape(port)
    finally:
        rows.remove()

    def delta(name, **labels):
        return total(after, name, **labels) - total(before, name, **labels)

    matter = "enterprise-opening"
    assert delta("hallflow_cases_accepted_total", matter=matter, deferral="true") == 1
    assert delta("hallflow_cases_accepted_total", deferral="false") == 0
    assert delta("hallflow_cases_overdue_total", matter=matter) == 1
    assert delta("hallflow_cases_closed_total", matter=matter, outcome="approved") == 1
    assert delta("hallflow_audit_rows_total", subject_type="case") == 4
    assert delta("hallflow_audit_rows_total", subject_type="case", action="accepted_with_deferral") == 1
    assert delta("hallflow_ratings_total", department="market-regulation", score="2") == 1
    assert delta("hallflow_bad_reviews_total", department="market-regulation") == 1
    assert has(after, "hallflow_cases_accepted_total", service_name="temporal-core-sdk")


def _audit(action: str, key: str) -> AuditRow:
    entry = AuditEntry(
        key=key, subject_type="risk", subject_id="R-1", action=action, actor="hallflow",
        at=datetime.now(timezone.utc), workflow_id="risk-R-1", run_id="run-1",
    )  # fmt: skip
    return Store._audit_row(entry, datetime.now(timezone.utc))


def test_rows_rolled_back_are_not_counted(db_engine, exporter):
    metrics, port = exporter
    rows = CommittedRows(metrics, db_engine).install()
    try:
        before = total(scrape(port), "hallflow_audit_rows_total", subject_type="risk")
        with Session(db_engine) as session:  # written, then the transaction rolls back
            chain.append(session, _audit("reported", "k-rolled-back"), "sha256")
            session.flush()
            session.rollback()
        with Session(db_engine) as session:  # a savepoint rolled back inside a committed transaction
            try:
                with session.begin_nested():
                    chain.append(session, _audit("reported", "k-savepoint"), "sha256")
                    session.flush()
                    raise RuntimeError("undo the savepoint")
            except RuntimeError:
                pass
            chain.append(session, _audit("acknowledged", "k-kept"), "sha256")
            session.commit()
        after = scrape(port)
    finally:
        rows.remove()
    assert total(after, "hallflow_audit_rows_total", subject_type="risk") - before == 1  # "acknowledged" only


# --- gauges: current state ----------------------------------------------------------------------


def test_state_counts_open_cases_overdue_ones_and_unresolved_risks(store: Store):
    store.register_case(registration("C-1"))
    store.record_case_event(case_event("accepted", CaseStage.ACCEPTED, case_no="C-1"))
    store.record_case_event(case_event("deadline_red", CaseStage.AWAITING_REVIEW, 1, case_no="C-1"))
    store.register_case(registration("C-2", run_id="run-2"))
    store.record_case_event(case_event("accepted", CaseStage.AWAITING_REVIEW, case_no="C-2"))
    store.register_case(registration("C-3", run_id="run-3"))  # overdue, then ended: no longer counted
    store.record_case_event(case_event("deadline_red", CaseStage.AWAITING_REVIEW, 1, case_no="C-3"))
    store.record_case_event(case_event("approved", CaseStage.APPROVED, 2, case_no="C-3"))
    now = datetime.now(timezone.utc)
    with Session(store.engine) as session:
        risks = [("R-1", "red", "handling"), ("R-2", "red", "resolved"), ("R-3", "blue", "awaiting_plan")]
        for no, level, state in risks:
            session.add(RiskRow(
                risk_no=no, source="report", type="social", title="t", responsible_department="market-regulation",
                owner="officer-li", level=level, state=state, reported_at=now,
            ))  # fmt: skip
        session.commit()
    state = read_state(store.engine)
    assert state["stages"] == {"awaiting_review": 2}
    assert state["overdue"] == {"enterprise-opening": 1}
    assert state["risks"] == {"red": 1, "blue": 1}


def test_calendar_last_year_is_the_newest_file(tmp_path):
    assert calendar_last_year(tmp_path) == 0
    for name in ("2025.toml", "2026.toml", "README.md", "notes.toml"):
        (tmp_path / name).write_text("")
    assert calendar_last_year(tmp_path) == 2026


# --- activity failures ----------------------------------------------------------------------------


class _Raises(ActivityInboundInterceptor):
    def __init__(self, error: BaseException) -> None:
        self.error = error

    async def execute_activity(self, input: ExecuteActivityInput):
        raise self.error


async def test_activity_failures_are_counted_by_activity_and_error_type(exporter):
    metrics, port = exporter
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, activity_type="working_days_after")
    missing = ApplicationError("no working-day calendar for 2100", type="CalendarYearMissing")

    async def attempt(error):
        chain_ = ActivityFailures(metrics).intercept_activity(_Raises(error))
        await chain_.execute_activity(ExecuteActivityInput(fn=attempt, args=[], executor=None, headers={}))

    before = scrape(port)
    for error in (missing, missing, KeyError("x")):
        with pytest.raises(type(error)):
            await env.run(attempt, error)
    after = scrape(port)

    def failures(samples, error_type):
        labels = {"activity_type": "working_days_after", "error_type": error_type}
        return total(samples, "hallflow_activity_failures_total", **labels)

    assert failures(after, "CalendarYearMissing") - failures(before, "CalendarYearMissing") == 2
    assert failures(after, "KeyError") - failures(before, "KeyError") == 1


# --- the monitoring files use what is exported ----------------------------------------------------


def _expressions() -> list[str]:
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text(encoding="utf-8"))
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text(encoding="utf-8"))
    exprs += [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    return exprs


HALLFLOW_NAMES = {
    "hallflow_audit_rows_total", "hallflow_cases_accepted_total", "hallflow_cases_closed_total",
    "hallflow_cases_overdue_total", "hallflow_cases_near_deadline_total", "hallflow_ratings_total",
    "hallflow_bad_reviews_total", "hallflow_activity_failures_total", "hallflow_open_cases",
    "hallflow_overdue_cases", "hallflow_open_risks", "hallflow_task_queue_backlog",
    "hallflow_task_queue_backlog_age_seconds", "hallflow_calendar_last_year",
    "hallflow_state_refreshed_timestamp_seconds",
}  # fmt: skip


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool not installed (Debian: apt-get install prometheus)")
def test_alert_rules_pass_their_promtool_unit_tests():
    checked = subprocess.run(
        ["promtool", "test", "rules", "alerts.test.yml", "calendar.test.yml"],
        cwd=MONITORING, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_alerts_and_dashboard_name_only_exported_hallflow_metrics():
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text(encoding="utf-8"))
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert {"alert", "expr", "labels", "annotations"} <= set(rule), rule
            assert rule["labels"]["severity"] in {"critical", "warning"}
            assert rule["annotations"]["runbook_url"].startswith("deploy/monitoring/README.md#")
    used = {name for expr in _expressions() for name in re.findall(r"\bhallflow_\w+", expr)}
    used = {re.sub(r"_(bucket|sum|count)$", "", name) for name in used}
    assert used <= HALLFLOW_NAMES
    readme = (MONITORING / "README.md").read_text(encoding="utf-8")
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert f"### {rule['alert']}" in readme


# --- end to end: worker.py's endpoint while cases run ---------------------------------------------

METRICS_PORT = free_port()


@pytest.fixture(scope="module", autouse=True)
def metrics_env():
    """worker.py (the `hall` fixture builds its environment from os.environ) serves metrics here."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HALLFLOW_METRICS_PORT", str(METRICS_PORT))
        patch.setenv("HALLFLOW_METRICS_HOST", "127.0.0.1")
        yield


@pytest.mark.e2e
def test_worker_serves_sdk_and_hallflow_metrics_on_one_port(hall):
    def ok(*args: str):
        result = hall(*args)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result

    case = "MET-0001"
    ok("case", "start", "--file", "docs/examples/case-enterprise-opening.json", "--case-no", case)
    ok("case", "start", "--file", "docs/examples/case-enterprise-opening.json", "--case-no", "MET-0002")
    ok("risk", "report", "--no", "MET-R1", "--type", "technology", "--title", "readers down", "--probability", "0.9",
       "--impact", "high", "--department", "market-regulation", "--owner", "officer-li")  # fmt: skip
    assert wait_for(lambda: stage_of(hall, case) == "awaiting_review")
    ok("case", "review", case, "--reviewer", "officer-li", "--decision", "approve", "--opinion", "lawful")
    ok("case", "vote", case, "--member", "officer-zhao", "--choice", "approve")
    ok("case", "vote", case, "--member", "officer-chen", "--choice", "approve")
    ok("case", "supplement", case, "--materials", "residence-proof", "--by", "clerk-01")
    assert wait_for(lambda: stage_of(hall, case) == "approved")
    ok("case", "rate", case, "--score", "2", "--channel", "app", "--comment", "slow")

    matter = "enterprise-opening"

    def counted():
        samples = scrape(METRICS_PORT)
        ready = (
            total(samples, "hallflow_bad_reviews_total", department="market-regulation") == 1
            and total(samples, "hallflow_open_risks", level="red") == 1
            and total(samples, "hallflow_open_cases") == 1
        )
        return samples if ready else None

    samples = wait_for(counted, timeout=20) or scrape(METRICS_PORT)  # the gauges refresh every 15 s
    assert total(samples, "hallflow_cases_accepted_total", matter=matter, deferral="true") == 2
    assert total(samples, "hallflow_cases_closed_total", matter=matter, outcome="approved") == 1
    assert total(samples, "hallflow_ratings_total", department="market-regulation", score="2") == 1
    assert total(samples, "hallflow_bad_reviews_total", department="market-regulation") == 1
    assert total(samples, "hallflow_audit_rows_total", subject_type="risk", action="reported") >= 1
    # Current state, from the database and from Temporal.
    assert total(samples, "hallflow_open_risks", level="red") == 1
    assert total(samples, "hallflow_open_cases", stage="awaiting_review") == 1
    assert total(samples, "hallflow_overdue_cases", matter=matter) == 0
    assert has(samples, "hallflow_task_queue_backlog", task_queue="hallflow", type="activity")
    assert total(samples, "hallflow_calendar_last_year") >= datetime.now().year
    a_minute_ago = (datetime.now() - timedelta(minutes=1)).timestamp()
    assert total(samples, "hallflow_state_refreshed_timestamp_seconds") > a_minute_ago
    # The SDK's own, on the same port.
    for name in (
        "temporal_workflow_task_schedule_to_start_latency_bucket",
        "temporal_activity_schedule_to_start_latency_bucket",
        "temporal_workflow_task_execution_latency_bucket",
        "temporal_sticky_cache_hit",
        "temporal_worker_task_slots_available",
    ):
        assert has(samples, name, task_queue="hallflow", service_name="temporal-core-sdk"), name
    # Every temporal_ series the dashboard and alerts use is served (those the SDK serves only
    # once it happened: a cache miss, an eviction).
    sdk = {re.sub(r"_(bucket|sum|count)$", "", n) for n, _, _ in samples if n.startswith("temporal_")}
    sdk |= {"temporal_sticky_cache_miss", "temporal_sticky_cache_total_forced_eviction"}
    used = {re.sub(r"_(bucket|sum|count)$", "", n) for e in _expressions() for n in re.findall(r"\btemporal_\w+", e)}
    assert used <= sdk, used - sdk
