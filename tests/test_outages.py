"""Outages as an operator meets them: the application database and the Temporal server go away.

What must show: a short failure on the pending activity that says the database is unavailable
(the Web UI shows "Failure exceeds size limit" for a long one), personal data in no failure and
no log line, and a worker that says in its log that it cannot reach Temporal, at which address.
"""

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest
import structlog
from sqlmodel import SQLModel
from sqlalchemy import Engine, create_engine, event, text
from temporalio.api.failure.v1 import Failure
from temporalio.converter import DataConverter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities.db import create_tables, make_engine
from activities.publication import PublicationActivities
from activities.risk import RiskActivities, load_risk_policy
from activities.store import Store
from contract import search
from contract.case import Applicant, CaseRegistration, case_workflow_id
from tests.org_fixtures import data_converter
from contract.records import BrokenCommitment, Notice, Step
from contract.risk import Level, RiskEntry, RiskState
from contract.suggestion import Publication, PublicationRecord
from settings import ROOT
from tests.db_fixtures import PG_URL
from tests.temporal_fixtures import BIN

T0 = datetime(2025, 3, 3, 1, 30, tzinfo=timezone.utc)
PERSON = Applicant(applicant_id="app-0001", name="张三", id_number="110101199003071234", phone="13800138000")
PERSONAL = [PERSON.name, PERSON.id_number, PERSON.phone]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def registration(case_no: str = "C-2025-0001") -> CaseRegistration:
    return CaseRegistration(
        case_no=case_no, matter_code="enterprise-opening", hall="city-hall", clerk="window-07", applicant=PERSON,
        workflow_id=case_workflow_id(case_no), received_at=T0,
    )


def database_calls(engine: Engine) -> dict:
    """One call of each activity that touches the application database, with personal data where
    the activity carries any."""
    store = Store(engine)
    publications = PublicationActivities(engine)
    risks = RiskActivities(engine, load_risk_policy(ROOT / "data" / "risk.toml"))
    notice = Notice(
        key="C-2025-0001/n", recipient=PERSON.applicant_id, kind="deferral_accepted", subject_type="case",
        subject_id="C-2025-0001", title="容缺受理通知", body=f"{PERSON.name}，请补交材料。", at=T0,
    )
    entry = Publication(
        suggestion_no="S-1", topic="seats", department="market-regulation", complexity="general", adopted=False,
        submitted_at=T0, answered_at=T0, on_time=True,
    )
    risk = RiskEntry(
        risk_no="R-1", source="manual", type="service", title="queue", responsible_department="market-regulation",
        owner="officer-li", level=Level.BLUE, state=RiskState.AWAITING_ACKNOWLEDGEMENT, reported_at=T0,
    )
    return {
        "register_case": lambda: store.register_case(registration()),
        "notify": lambda: store.notify(notice),
        "has_broken_commitment": lambda: store.has_broken_commitment(PERSON.applicant_id),
        "record_broken_commitment": lambda: store.record_broken_commitment(
            BrokenCommitment(key="b", applicant_id=PERSON.applicant_id, case_no="C-2025-0001", at=T0)
        ),
        "publish_answer": lambda: publications.publish_answer(PublicationRecord(key="S-1/a", entry=entry)),
        "record_risk": lambda: risks.record_risk(risk),
        # What a workflow writes before it next waits: here one notice naming the applicant.
        "record_step": lambda: store.record_step(Step(notices=[notice])),
    }


def as_the_ui_shows_it(err: BaseException) -> Failure:
    """The failure Temporal stores on the pending activity (what the Web UI shows)."""
    failure = Failure()
    DataConverter.default.failure_converter.to_failure(err, DataConverter.default.payload_converter, failure)
    return failure


def assert_short_and_impersonal(err: BaseException, reason: str) -> None:
    assert isinstance(err, ApplicationError), f"{type(err).__name__}: {str(err)[:300]}"
    assert err.type == "DatabaseUnavailable" and not err.non_retryable  # retried until the database is back
    assert err.message == f"application database unavailable: {reason}"
    assert len(err.message) < 300
    failure = as_the_ui_shows_it(err)
    assert not failure.HasField("cause")  # no driver traceback chained in
    assert failure.ByteSize() < 2048, failure.ByteSize()
    assert not [value for value in PERSONAL if value in str(failure)]


@pytest.mark.parametrize(
    "call",
    ["register_case", "notify", "has_broken_commitment", "record_broken_commitment", "publish_answer", "record_risk",
     "record_step"],
)
def test_database_refusing_connections_fails_each_activity_with_a_short_message(call, caplog) -> None:
    engine = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test")
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as logs, pytest.raises(Exception) as failed:
        database_calls(engine)[call]()

    assert_short_and_impersonal(failed.value, "connection refused")
    assert {"event": "database_unavailable", "reason": "connection refused", "log_level": "warning"}.items() <= logs[-1].items()
    logged = repr(logs) + caplog.text
    assert not [value for value in PERSONAL if value in logged]


def test_connection_cut_while_writing_personal_details_leaks_them_nowhere(pg_schema, caplog) -> None:
    engine = make_engine(PG_URL, connect_args={"options": f"-csearch_path={pg_schema}"})
    create_tables(engine)
    admin = create_engine(PG_URL)
    cut: list[int] = []

    @event.listens_for(engine, "before_cursor_execute")
    def cut_the_connection(conn, cursor, statement, parameters, context, executemany) -> None:
        # The database goes away just as the applicant's details are written: the driver's error
        # then carries the statement, and SQLAlchemy would add its parameters.
        if statement.startswith("INSERT INTO applicants") and not cut:
            cut.append(conn.connection.dbapi_connection.info.backend_pid)
            with admin.begin() as other:
                other.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": cut[0]})

    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")  # SQL echo on, as when debugging
    try:
        with structlog.testing.capture_logs() as logs, pytest.raises(Exception) as failed:
            Store(engine).register_case(registration())
        assert cut
        assert_short_and_impersonal(failed.value, "connection lost")
        logged = repr(logs) + caplog.text
        assert "INSERT INTO applicants" in caplog.text  # the statement was logged, its values were not
        assert not [value for value in PERSONAL if value in logged]

        Store(engine).register_case(registration())  # the retry, once the database is back
        assert Store(engine).applicant(PERSON.applicant_id)["id_number"] == PERSON.id_number
    finally:
        # The session's schema is shared: leave it empty, as tests/db_fixtures.py does.
        tables = ", ".join(table.name for table in SQLModel.metadata.sorted_tables)
        with engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY"))
        engine.dispose()
        admin.dispose()


def worker_log(path) -> list[dict]:
    import json

    # Complete lines only: the worker may be halfway through writing the last one.
    lines = path.read_text(encoding="utf-8").split("\n")[:-1] if path.exists() else []
    return [json.loads(line) for line in lines if line.startswith("{")]


async def eventually(check, timeout: float = 60.0):
    import asyncio

    end = time.monotonic() + timeout
    while not (value := check()) and time.monotonic() < end:
        await asyncio.sleep(0.2)
    return value


async def test_worker_says_in_its_log_while_temporal_is_unreachable(tmp_path):
    from tests.e2e_fixtures import shipped_calendar_or_placeholder

    address = f"127.0.0.1:{free_port()}"
    log_path = tmp_path / "worker.log"
    env = {
        **os.environ,
        "HALLFLOW_TEMPORAL_ADDRESS": address,
        "HALLFLOW_DATABASE_URL": f"sqlite:///{tmp_path / 'hallflow.db'}",
        "HALLFLOW_TASK_QUEUE": "hallflow",
        "HALLFLOW_CALENDAR_DIR": str(shipped_calendar_or_placeholder(tmp_path / "calendar")),
    }

    def unreachable() -> list[dict]:
        return [e for e in worker_log(log_path) if e["event"] == "temporal_unreachable"]

    def started() -> bool:
        return any(e["event"] == "worker_started" for e in worker_log(log_path))

    with open(log_path, "w") as log:
        worker = subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=env, stderr=log, text=True)
    server = None
    try:
        # Started before its server: a line per attempt, naming the address, and no traceback.
        assert await eventually(lambda: len(unreachable()) >= 2), log_path.read_text()
        assert [(e["address"], e["attempt"]) for e in unreachable()[:2]] == [(address, 1), (address, 2)]
        assert unreachable()[0]["reason"] == "connection refused"

        server = await WorkflowEnvironment.start_local(
            ip="127.0.0.1", port=int(address.rsplit(":", 1)[1]), data_converter=data_converter,
            dev_server_existing_path=str(BIN / "temporal"), search_attributes=search.ALL,
        )
        assert await eventually(started), log_path.read_text()
        before = len(unreachable())

        await server.shutdown()  # the server goes away under a running worker
        server = None
        assert await eventually(lambda: len(unreachable()) > before, timeout=30), log_path.read_text()
        assert unreachable()[-1]["address"] == address
    finally:
        worker.send_signal(signal.SIGTERM)  # stops promptly, server or not
        try:
            assert worker.wait(timeout=30) == 0
        finally:
            if worker.poll() is None:
                worker.kill()
            if server is not None:
                await server.shutdown()
    text_logged = log_path.read_text()
    assert "Traceback" not in text_logged
    core = [e for e in worker_log(log_path) if e["event"] == "temporal_core"]
    assert all("target" in e for e in core)  # the SDK core's warnings as JSON events, not its own text
    assert [line for line in text_logged.splitlines() if line and not line.startswith("{")] == []


def test_starter_says_in_one_line_that_temporal_is_unreachable_and_exits_3() -> None:
    address = f"127.0.0.1:{free_port()}"
    ran = subprocess.run(
        [sys.executable, "starter.py", "case", "status", "HALL-0001"], cwd=ROOT,
        env={**os.environ, "HALLFLOW_TEMPORAL_ADDRESS": address}, capture_output=True, text=True, timeout=60,
    )
    assert ran.returncode == 3, ran.stderr
    assert len(ran.stderr.strip().splitlines()) == 1 and f"cannot reach Temporal at {address}" in ran.stderr, ran.stderr
    assert "Traceback" not in ran.stderr and ran.stdout == ""
