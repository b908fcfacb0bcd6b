"""The audit trail is tamper-evident: rows written through the Store verify, and an edit made
behind hallflow's back with plain SQL is named by `starter.py audit verify` (SQLite and PostgreSQL)."""

import json
import os
import subprocess
import sys
import threading
from datetime import datetime, timedelta
from urllib.parse import quote

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from activities import chain
from activities.db import AuditRow, create_tables, make_engine
from activities.store import Store
from contract.case import CaseStage
from contract.common import SHANGHAI
from contract.records import AuditEntry, CaseEvent, CaseSnapshot
from settings import ROOT, Settings
from tests.db_fixtures import PG_URL

T0 = datetime(2025, 3, 3, 9, 30, tzinfo=SHANGHAI)
ACTIONS = ["received", "accepted", "review_requested", "approved"]


def entry(action: str, n: int = 0, subject_id: str = "C-1", subject_type: str = "case", **more) -> AuditEntry:
    return AuditEntry(
        key=f"{subject_id}/{action}/{n}", subject_type=subject_type, subject_id=subject_id, action=action,
        actor="officer-li", reason=f"{action} as the rules say", at=T0 + timedelta(minutes=n),
        workflow_id=f"{subject_type}-{subject_id}", run_id="run-1", details={"n": n, "材料": ["营业执照"]}, **more,
    )


def write_case(store: Store, case_no: str = "C-1") -> list[bool]:
    """A case's four steps as the case workflow records them (the last one signed by a department
    key); whether each was written."""
    snapshot = CaseSnapshot(case_no=case_no, matter_code="enterprise-opening", hall="city-hall", stage=CaseStage.RECEIVED)
    signed = {"approved": {"signed_with": "market-regulation/2026-01"}}
    return [
        store.record_case_event(CaseEvent(audit=entry(action, n, case_no, **signed.get(action, {})), case=snapshot))
        for n, action in enumerate(ACTIONS)
    ]


@pytest.fixture
def database_url(db_engine: Engine, request: pytest.FixtureRequest) -> str:
    """HALLFLOW_DATABASE_URL for the fixture's database, as an operator would set it."""
    if db_engine.dialect.name == "sqlite":
        return db_engine.url.render_as_string(hide_password=False)
    return f"{PG_URL}?options={quote('-csearch_path=' + request.getfixturevalue('pg_schema'))}"


def audit(database_url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "starter.py"), "audit", *args], check=False, cwd=ROOT, capture_output=True,
        text=True, timeout=60, env={**os.environ, "HALLFLOW_DATABASE_URL": database_url},
    )


def sql(engine: Engine, statement: str, **params) -> None:
    """An edit behind hallflow's back."""
    with engine.begin() as conn:
        conn.execute(text(statement), params)


def rehash(engine: Engine, key: str) -> None:
    """What a forger who knows the algorithm does after editing a row: gives it a matching hash."""
    with Session(engine) as session:
        row = session.exec(select(AuditRow).where(AuditRow.key == key)).one().model_dump()
    sql(engine, "UPDATE audit SET hash = :h WHERE key = :key", h=chain.compute_hash(row), key=key)


def broken_rows(ran: subprocess.CompletedProcess) -> list[dict]:
    assert ran.returncode == 1, ran.stdout + ran.stderr
    return json.loads(ran.stdout)["broken"]


def test_a_trail_written_through_the_store_verifies(store: Store, database_url: str) -> None:
    assert write_case(store) == [True] * 4
    assert write_case(store) == [False] * 4  # every activity retried: nothing added, the chain as it was
    for n in range(2):
        assert store.record_audit(entry("raised", n, "R-1", "risk"))
    assert not store.record_audit(entry("raised", 1, "R-1", "risk"))

    ran = audit(database_url, "verify")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.stdout.startswith("intact: 6 rows in 2 subjects, every chain recomputed (sha256)")

    answer = json.loads(audit(database_url, "verify", "-o", "json").stdout)
    assert answer["intact"] and answer["broken"] == []
    assert [(h["subject_type"], h["subject_id"], h["seq"]) for h in answer["heads"]] == [("case", "C-1", 4),
                                                                                         ("risk", "R-1", 2)]
    heads = json.loads(audit(database_url, "heads", "-o", "json").stdout)
    assert heads == answer["heads"]
    # What the workflows wrote comes back, the key that signed the last step included.
    trail = store.audit_trail("case", "C-1")
    assert [e.action for e in trail] == ACTIONS
    assert [e.signed_with for e in trail] == [None, None, None, "market-regulation/2026-01"]


def test_a_changed_reason_is_named_with_its_subject_and_seq(store: Store, db_engine, database_url: str) -> None:
    write_case(store)
    write_case(store, "C-2")
    sql(db_engine, "UPDATE audit SET reason = 'approved without review' WHERE key = 'C-1/accepted/1'")

    ran = audit(database_url, "verify")
    assert ran.returncode == 1
    assert "BROKEN: 1 of 2 subjects" in ran.stdout
    line = next(line for line in ran.stdout.splitlines() if "case C-1" in line)
    assert " 2 " in line and "C-1/accepted/1" in line and "changed" in line
    assert broken_rows(audit(database_url, "verify", "-o", "json")) == [
        {"subject_type": "case", "subject_id": "C-1", "seq": 2, "key": "C-1/accepted/1", "problem": "changed",
         "detail": "its contents (accepted, C-1/accepted/1) no longer match its hash: changed after it was "
                   "written, or forged"}
    ]
    # The other case is untouched, and verifies on its own.
    assert audit(database_url, "verify", "--case", "C-2").returncode == 0
    assert audit(database_url, "verify", "--subject-type", "case", "--subject-id", "C-1").returncode == 1


def test_a_deleted_middle_row_is_reported_missing(store: Store, db_engine, database_url: str) -> None:
    write_case(store)
    sql(db_engine, "DELETE FROM audit WHERE key = 'C-1/accepted/1'")

    [found] = broken_rows(audit(database_url, "verify", "--case", "C-1", "-o", "json"))
    assert (found["seq"], found["key"], found["problem"]) == (2, None, "deleted")
    assert found["detail"] == "seq 2 missing: deleted (next is seq 3, C-1/review_requested/2)"


def test_a_row_inserted_by_hand_is_reported_outside_the_chain(store: Store, db_engine, database_url: str) -> None:
    write_case(store)
    sql(db_engine, "INSERT INTO audit (key, subject_type, subject_id, action, actor, reason, at, workflow_id, run_id, "
                   "details, recorded_at) SELECT 'C-1/forged', subject_type, subject_id, 'approved', 'intruder', "
                   "'forged', at, workflow_id, run_id, details, recorded_at FROM audit WHERE key = 'C-1/received/0'")

    ran = audit(database_url, "verify")
    assert ran.returncode == 1 and "C-1/forged" in ran.stdout and "unchained" in ran.stdout
    [found] = broken_rows(audit(database_url, "verify", "-o", "json"))
    assert (found["key"], found["seq"], found["problem"]) == ("C-1/forged", None, "unchained")


def test_a_forged_row_hashed_like_hallflow_and_slipped_in_is_found(store: Store, db_engine, database_url: str) -> None:
    """The forger knows the algorithm: makes room at seq 3, hashes the forged row onto seq 2."""
    write_case(store)
    sql(db_engine, "UPDATE audit SET seq = seq + 100 WHERE seq >= 3")  # two steps: the unique index
    sql(db_engine, "UPDATE audit SET seq = seq - 99 WHERE seq >= 100")
    sql(db_engine, "INSERT INTO audit (key, subject_type, subject_id, action, actor, reason, at, workflow_id, run_id, "
                   "details, recorded_at, seq, prev_hash, hash_alg, hash) SELECT 'C-1/forged', subject_type, "
                   "subject_id, 'approved', 'intruder', 'forged', at, workflow_id, run_id, details, recorded_at, 3, "
                   "hash, hash_alg, '' FROM audit WHERE seq = 2")
    rehash(db_engine, "C-1/forged")

    [found] = broken_rows(audit(database_url, "verify", "-o", "json"))
    assert (found["seq"], found["key"], found["problem"]) == (4, "C-1/review_requested/2", "renumbered")
    assert found["detail"] == "this row was seq 3 and was renumbered: 1 row(s) inserted before it, at seq 3"


def test_a_changed_last_row_is_reported(store: Store, db_engine, database_url: str) -> None:
    write_case(store)
    sql(db_engine, "UPDATE audit SET actor = 'officer-wang' WHERE key = 'C-1/approved/3'")

    [found] = broken_rows(audit(database_url, "verify", "-o", "json"))
    assert (found["seq"], found["key"], found["problem"]) == (4, "C-1/approved/3", "changed")


def test_changing_who_signed_a_row_is_reported(store: Store, db_engine) -> None:
    write_case(store)
    sql(db_engine, "UPDATE audit SET signed_with = 'someone-else/key' WHERE key = 'C-1/approved/3'")

    [found] = chain.verify(db_engine).broken
    assert (found.seq, found.problem) == (4, "changed")


def test_anchored_heads_show_a_chain_cut_short_or_rewritten(store: Store, db_engine, database_url, tmp_path) -> None:
    write_case(store)
    write_case(store, "C-2")
    anchored = tmp_path / "heads.json"
    anchored.write_text(audit(database_url, "heads", "-o", "json").stdout)
    assert audit(database_url, "verify", "--anchor", str(anchored)).returncode == 0

    # Deleting a chain's last row, or rewriting a row and every hash after it, leaves each chain
    # consistent in itself: only the heads written down earlier show it.
    sql(db_engine, "DELETE FROM audit WHERE key = 'C-1/approved/3'")
    sql(db_engine, "UPDATE audit SET actor = 'officer-wang' WHERE key = 'C-2/approved/3'")
    rehash(db_engine, "C-2/approved/3")
    assert audit(database_url, "verify").returncode == 0

    found = broken_rows(audit(database_url, "verify", "--anchor", str(anchored), "-o", "json"))
    assert [(b["subject_id"], b["seq"], b["problem"]) for b in found] == [("C-1", 4, "truncated"), ("C-2", 4, "changed")]
    assert found[0]["detail"] == "anchored up to seq 4, the chain ends at seq 3: its last rows were deleted"


def test_verify_of_a_case_without_rows_fails(store: Store, database_url: str) -> None:
    write_case(store)
    ran = audit(database_url, "verify", "--case", "C-404")
    assert ran.returncode == 1 and "case C-404" in ran.stdout and "no audit rows" in ran.stdout


def test_concurrent_writers_on_two_replicas_keep_one_chain(db_engine: Engine, request) -> None:
    """Two worker replicas (a Store and an engine each) append to one subject at once; each step is
    attempted on both, as a retry racing its first attempt. One chain comes out, without a gap."""
    if db_engine.dialect.name == "sqlite":
        other = make_engine(db_engine.url.render_as_string(hide_password=False))
    else:
        other = make_engine(PG_URL, connect_args={"options": f"-csearch_path={request.getfixturevalue('pg_schema')}"})
    replicas = [Store(db_engine), Store(other)]
    steps, writers = 10, 8
    barrier = threading.Barrier(writers)
    written: list[str] = []

    def write(writer: int) -> None:
        barrier.wait()
        for n in range(steps):
            step = entry("opinion_given", (writer // 2) * steps + n)  # writers 2k and 2k+1: the same steps
            if replicas[writer % 2].record_audit(step):
                written.append(step.key)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    other.dispose()

    assert sorted(written) == sorted({f"C-1/opinion_given/{n}" for n in range(writers // 2 * steps)})
    verdict = chain.verify(db_engine)
    assert verdict.intact and verdict.rows == len(written) and verdict.heads[0].seq == len(written)


def test_the_database_refuses_a_second_row_at_one_place_in_a_chain(store: Store, db_engine: Engine) -> None:
    """Whatever code writes (a lock forgotten, an old build), a chain cannot fork."""
    write_case(store)
    with pytest.raises(IntegrityError):
        sql(db_engine, "INSERT INTO audit (key, subject_type, subject_id, action, actor, reason, at, workflow_id, "
                       "run_id, details, recorded_at, seq, prev_hash, hash_alg, hash) SELECT 'C-1/fork', subject_type, "
                       "subject_id, action, actor, reason, at, workflow_id, run_id, details, recorded_at, seq, "
                       "prev_hash, hash_alg, hash FROM audit WHERE key = 'C-1/approved/3'")


def test_an_sm3_chain_verifies_and_shows_a_change(db_engine: Engine) -> None:
    sha, sm3 = Store(db_engine, audit_hash="sha256"), Store(db_engine, audit_hash="sm3")
    sha.record_audit(entry("received", 0))
    for n, action in enumerate(ACTIONS[1:], start=1):
        sm3.record_audit(entry(action, n))  # HALLFLOW_AUDIT_HASH switched: old rows keep their algorithm

    verdict = chain.verify(db_engine)
    assert verdict.intact and verdict.algorithms == ["sha256", "sm3"]
    assert verdict.heads[0].hash_alg == "sm3" and len(verdict.heads[0].hash) == 64
    sql(db_engine, "UPDATE audit SET reason = 'x' WHERE key = 'C-1/approved/3'")
    assert [(b.seq, b.problem) for b in chain.verify(db_engine).broken] == [(4, "changed")]


def test_the_hash_is_chosen_by_hallflow_audit_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HALLFLOW_AUDIT_HASH", "sm3")
    assert Settings().audit_hash == "sm3"
    monkeypatch.setenv("HALLFLOW_AUDIT_HASH", "md5")
    with pytest.raises(ValueError):
        Settings()


def test_a_database_from_before_the_chain_gets_its_rows_chained(db_engine: Engine) -> None:
    store = Store(db_engine)
    for n, action in enumerate(ACTIONS[:2]):
        store.record_audit(entry(action, n))
    sql(db_engine, "DROP INDEX ux_audit_chain")
    for column in ("seq", "prev_hash", "hash_alg", "hash", "signed_with"):
        sql(db_engine, f"ALTER TABLE audit DROP COLUMN {column}")

    create_tables(db_engine)  # what a worker does at start
    create_tables(db_engine)
    for n, action in enumerate(ACTIONS[2:], start=2):
        store.record_audit(entry(action, n))

    verdict = chain.verify(db_engine)
    assert verdict.intact and verdict.heads[0].seq == 4
    assert [e.action for e in store.audit_trail("case", "C-1")] == ACTIONS


def test_an_unreachable_database_exits_3() -> None:
    ran = audit("postgresql+psycopg://postgres@127.0.0.1:9/test", "verify")
    assert ran.returncode == 3
    assert ran.stderr.strip() == "cannot read the application database: connection refused"


def test_the_chain_and_the_tables_do_not_import_each_other():
    """activities/chain.py needs only the audit row (activities/stored.py); db.py's create_tables
    uses the chain. One direction: importing the chain loads no table module."""
    code = "import sys, activities.chain; print('activities.db' in sys.modules)"
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert ran.stdout.strip() == "False"
