"""The store's activities on a SQLite file and on PostgreSQL (fixtures in tests/db_fixtures.py)."""

import threading
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import structlog
from sqlalchemy import inspect, text
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.db import create_tables, make_engine
from activities.notify import LogChannel
from activities.store import Store
from contract.case import Applicant, CaseRegistration, CaseStage, case_workflow_id
from contract.common import SHANGHAI
from contract.records import AuditEntry, BrokenCommitment, CaseEvent, CaseSnapshot, Notice
from tests.db_fixtures import RecordingChannel

T0 = datetime(2025, 3, 3, 9, 30, tzinfo=SHANGHAI)
PERSON = Applicant(applicant_id="app-0001", name="张三", id_number="110101199003071234", phone="13800138000")
PERSONAL = [PERSON.name, PERSON.id_number, PERSON.phone]


def registration(case_no: str = "C-2025-0001", run_id: str = "run-1", clerk: str = "window-07") -> CaseRegistration:
    return CaseRegistration(
        case_no=case_no,
        matter_code="enterprise-opening",
        hall="city-hall",
        clerk=clerk,
        applicant=PERSON,
        workflow_id=case_workflow_id(case_no),
        received_at=T0,
        run_id=run_id,
    )


def case_event(action: str, stage: CaseStage, minutes: int = 0, case_no: str = "C-2025-0001", **state) -> CaseEvent:
    at = T0 + timedelta(minutes=minutes)
    return CaseEvent(
        audit=AuditEntry(
            key=f"{case_no}/{action}",
            subject_type="case",
            subject_id=case_no,
            action=action,
            actor="window-07",
            at=at,
            workflow_id=case_workflow_id(case_no),
            run_id="run-1",
            details={"missing": ["business-licence"], "due": at.date()},
        ),
        case=CaseSnapshot(case_no=case_no, matter_code="enterprise-opening", hall="city-hall", stage=stage, **state),
    )


def notice(key: str = "C-2025-0001/deferral_accepted") -> Notice:
    return Notice(
        key=key,
        recipient=PERSON.applicant_id,
        kind="deferral_accepted",
        subject_type="case",
        subject_id="C-2025-0001",
        title="容缺受理通知",
        body="请于 2025-03-05 前补交营业执照。",
        at=T0,
    )


def count(store: Store, table: str) -> int:
    with store.engine.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()


def test_registered_case_shows_stage_of_latest_event(store: Store) -> None:
    store.register_case(registration())
    assert store.case_row("C-2025-0001")["stage"] == "received"

    store.record_case_event(case_event("accepted", CaseStage.ACCEPTED, 1, accepted_at=T0))
    store.record_case_event(case_event("materials_supplemented", CaseStage.AWAITING_REVIEW, 2))

    row = store.case_row("C-2025-0001")
    assert row["stage"] == "awaiting_review"
    assert (row["clerk"], row["applicant_id"], row["workflow_id"]) == ("window-07", "app-0001", "case-C-2025-0001")
    assert [e.action for e in store.audit_trail("case", "C-2025-0001")] == ["accepted", "materials_supplemented"]


def test_event_arriving_before_registration_creates_the_case_and_keeps_its_stage(store: Store) -> None:
    assert store.record_case_event(case_event("accepted", CaseStage.AWAITING_REVIEW))
    store.register_case(registration())

    row = store.case_row("C-2025-0001")
    assert row["stage"] == "awaiting_review"
    assert row["clerk"] == "window-07"


def test_retried_case_event_leaves_one_audit_row_and_returns_false(store: Store) -> None:
    store.register_case(registration())
    event = case_event("accepted", CaseStage.AWAITING_REVIEW)

    assert store.record_case_event(event) is True
    assert store.record_case_event(event) is False
    assert count(store, "audit") == 1
    assert store.audit_trail("case", "C-2025-0001")[0] == event.audit.model_copy(
        update={"details": {"missing": ["business-licence"], "due": "2025-03-03"}}
    )


def test_retried_registration_changes_nothing(store: Store) -> None:
    store.register_case(registration())
    first = store.case_row("C-2025-0001"), store.applicant("app-0001")
    store.register_case(registration())

    assert (store.case_row("C-2025-0001"), store.applicant("app-0001")) == first
    assert count(store, "cases") == count(store, "applicants") == 1


def test_a_second_run_cannot_take_a_registered_case_number(store: Store) -> None:
    store.register_case(registration(run_id="run-1"))
    first = store.case_row("C-2025-0001")

    with pytest.raises(ApplicationError) as refused:
        store.register_case(registration(run_id="run-2", clerk="window-09"))

    assert refused.value.type == "CaseNumberTaken" and refused.value.non_retryable
    assert "C-2025-0001" in refused.value.message
    assert store.case_row("C-2025-0001") == first  # still the first run's case, as it registered it
    assert first["run_id"] == "run-1"
    store.register_case(registration(run_id="run-1"))  # the first run's retry is fine
    assert store.case_row("C-2025-0001") == first


def test_runs_registering_one_case_number_at_once_get_it_once(store: Store) -> None:
    runs = [f"run-{n}" for n in range(4)]
    barrier = threading.Barrier(len(runs))
    outcomes: dict[str, str] = {}

    def register(run_id: str) -> None:
        barrier.wait()
        try:
            store.register_case(registration(run_id=run_id))
            outcomes[run_id] = "registered"
        except ApplicationError as err:
            outcomes[run_id] = err.type or ""

    threads = [threading.Thread(target=register, args=(run,)) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes.values()) == ["CaseNumberTaken"] * 3 + ["registered"]
    assert store.case_row("C-2025-0001")["run_id"] == next(r for r, o in outcomes.items() if o == "registered")
    assert count(store, "cases") == 1


def test_a_database_from_before_run_ids_gets_the_column_and_keeps_its_cases(db_engine) -> None:
    with db_engine.begin() as conn:
        conn.execute(text("ALTER TABLE cases DROP COLUMN run_id"))
        conn.execute(
            text(
                "INSERT INTO cases (case_no, matter_code, hall, stage, updated_at) "
                "VALUES ('OLD-1', 'enterprise-opening', 'city-hall', 'approved', :at)"
            ),
            {"at": T0},
        )
    create_tables(db_engine)  # what the worker does at start
    create_tables(db_engine)

    assert "run_id" in {column["name"] for column in inspect(db_engine).get_columns("cases")}
    store = Store(db_engine)
    assert store.case_row("OLD-1")["run_id"] is None and store.case_row("OLD-1")["stage"] == "approved"
    store.register_case(registration("NEW-1", run_id="run-1"))
    assert store.case_row("NEW-1")["run_id"] == "run-1"


def test_generic_audit_entry_is_appended_once(store: Store) -> None:
    entry = case_event("risk_raised", CaseStage.RECEIVED).audit.model_copy(
        update={"key": "risk-1/raised", "subject_type": "risk", "subject_id": "risk-1"}
    )

    assert store.record_audit(entry) is True
    assert store.record_audit(entry) is False
    assert [e.key for e in store.audit_trail("risk", "risk-1")] == ["risk-1/raised"]


def test_notify_twice_sends_once_and_keeps_one_outbox_row(store: Store, channel: RecordingChannel) -> None:
    assert store.notify(notice()) is True
    assert store.notify(notice()) is False

    assert channel.sent == [notice()]
    assert count(store, "outbox") == 1
    assert store.notices(subject_id="C-2025-0001") == [notice()]
    assert store.notices(recipient="dept-market") == []


def test_notice_whose_first_send_fails_is_sent_once_on_retry(store: Store, channel: RecordingChannel) -> None:
    channel.fail_next = 1
    with pytest.raises(ConnectionError):
        store.notify(notice())
    assert store.notices(recipient=PERSON.applicant_id) == [notice()]  # pending in the outbox

    assert store.notify(notice()) is True
    assert store.notify(notice()) is False
    assert channel.sent == [notice()]
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT sent_at IS NOT NULL, channel FROM outbox")).one() == (True, "recording")


def test_concurrent_attempts_write_one_row_and_send_once(store: Store, channel: RecordingChannel) -> None:
    event = case_event("accepted", CaseStage.AWAITING_REVIEW)
    barrier = threading.Barrier(4)
    results: list[tuple[str, bool]] = []

    def attempt() -> None:
        barrier.wait()
        results.append(("event", store.record_case_event(event)))
        results.append(("notice", store.notify(notice())))

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results) == [("event", False)] * 3 + [("event", True)] + [("notice", False)] * 3 + [("notice", True)]
    assert count(store, "audit") == count(store, "outbox") == len(channel.sent) == 1


def test_broken_commitment_is_found_and_recorded_once(store: Store) -> None:
    record = BrokenCommitment(key="C-2025-0001/broken", applicant_id="app-0001", case_no="C-2025-0001", at=T0)
    assert store.has_broken_commitment("app-0001") is False

    assert store.record_broken_commitment(record) is True
    assert store.record_broken_commitment(record) is False
    assert store.has_broken_commitment("app-0001") is True
    assert store.has_broken_commitment("app-0002") is False
    assert count(store, "broken_commitments") == 1


def test_personal_details_are_stored_only_in_applicants_and_never_logged(store: Store, db_engine) -> None:
    with structlog.testing.capture_logs() as logs:
        store.register_case(registration())
        store.record_case_event(case_event("accepted", CaseStage.ACCEPTED))
        store.notify(notice())
        Store(db_engine, LogChannel()).notify(notice("C-2025-0001/reminder"))
        store.record_broken_commitment(
            BrokenCommitment(key="C-2025-0001/broken", applicant_id="app-0001", case_no="C-2025-0001", at=T0)
        )

    assert store.applicant("app-0001") | {"updated_at": None} == {
        "applicant_id": "app-0001",
        "kind": "person",
        "name": "张三",
        "id_number": "110101199003071234",
        "phone": "13800138000",
        "updated_at": None,
    }
    with db_engine.connect() as conn:
        for table in inspect(db_engine).get_table_names():
            if table == "applicants":
                continue
            dump = repr(conn.execute(text(f"SELECT * FROM {table}")).all())
            assert not [value for value in PERSONAL if value in dump], table
    logged = repr(logs)
    assert not [value for value in [*PERSONAL, notice().body, notice().title] if value in logged]
    assert {"event": "notice_sent", "kind": "deferral_accepted", "recipient": "app-0001",
            "subject_id": "C-2025-0001", "key": "C-2025-0001/reminder", "log_level": "info"} in logs


def test_times_come_back_timezone_aware_utc(store: Store) -> None:
    store.register_case(registration())
    due = datetime(2025, 3, 4, 0, 0, tzinfo=SHANGHAI) + timedelta(days=1)
    store.record_case_event(case_event("accepted", CaseStage.ACCEPTED, accepted_at=T0, deferral_due_at=due))
    store.notify(notice())

    row = store.case_row("C-2025-0001")
    for name in ("received_at", "accepted_at", "deferral_due_at", "updated_at"):
        assert row[name].tzinfo == timezone.utc, name
    assert row["accepted_at"] == T0 and row["deferral_due_at"] == due
    assert row["deferral_due_at"].hour == 16  # 24:00 Shanghai of 2025-03-04 is 16:00 UTC
    assert store.audit_trail("case", "C-2025-0001")[0].at.tzinfo == timezone.utc
    assert store.notices()[0].at == T0 and store.notices()[0].at.tzinfo == timezone.utc
    assert store.applicant("app-0001")["updated_at"].tzinfo == timezone.utc


def test_naive_snapshot_time_is_refused_without_retry(store: Store) -> None:
    event = case_event("accepted", CaseStage.AWAITING_REVIEW, accepted_at=datetime(2025, 3, 3, 9, 30))

    with pytest.raises(ApplicationError) as refused:
        store.record_case_event(event)
    assert refused.value.non_retryable and refused.value.type == "NaiveDatetime"
    assert count(store, "audit") == 0


def test_activities_run_through_activity_environment(store: Store, channel: RecordingChannel) -> None:
    env = ActivityEnvironment()
    record = BrokenCommitment(key="C-2025-0001/broken", applicant_id="app-0001", case_no="C-2025-0001", at=T0)
    entry = case_event("opened", CaseStage.RECEIVED).audit.model_copy(update={"key": "s-1", "subject_id": "s-1"})

    assert env.run(store.register_case, registration()) is None
    assert env.run(store.record_case_event, case_event("accepted", CaseStage.AWAITING_REVIEW)) is True
    assert env.run(store.record_audit, entry) is True
    assert env.run(store.notify, notice()) is True
    assert env.run(store.notify, notice()) is False
    assert env.run(store.record_broken_commitment, record) is True
    assert env.run(store.has_broken_commitment, "app-0001") is True
    assert len(channel.sent) == 1
    assert store.case_row("C-2025-0001")["stage"] == "awaiting_review"


def test_sqlite_engine_creates_its_folder_and_uses_wal(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'a' / 'b' / 'hallflow.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
    assert (tmp_path / "a" / "b" / "hallflow.db").exists()
    engine.dispose()


def test_replicas_starting_together_on_a_new_postgresql_database_both_start():
    """Two workers' create_tables at the same moment on an empty schema: neither fails."""
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy import create_engine, text

    from activities.db import create_tables, make_engine
    from tests.db_fixtures import PG_URL

    schema = f"hallflow_race_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    engines = [make_engine(PG_URL, connect_args={"options": f"-csearch_path={schema}"}) for _ in range(4)]
    try:
        with ThreadPoolExecutor(len(engines)) as pool:
            assert [f.exception() for f in [pool.submit(create_tables, e) for e in engines]] == [None] * len(engines)
    finally:
        for engine in engines:
            engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
