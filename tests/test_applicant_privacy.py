"""The applicant's personal data at rest: sealed in the database file and table, readable across a
data-key rotation, found again by its ID number's HMAC, and shown by `case status` only when asked,
with the asker on the case's audit trail."""

import json
import shutil
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import exc
from sqlalchemy import Engine, inspect, text

from activities.store import Store
from contract.case import Applicant, CaseRegistration, case_workflow_id
from contract.records import BrokenCommitment, Notice
from security.aead import Undecryptable
from security.data_keys import add_key, parse
from settings import ROOT
from tests.db_fixtures import PG_URL
from tests.e2e_fixtures import wait_for
from tests.org_fixtures import TEST_DATA_KEYS

T0 = datetime(2025, 3, 3, 1, 30, tzinfo=timezone.utc)
PERSON = Applicant(applicant_id="app-0001", name="王小明", id_number="11010119900307123X", phone="13912345678")
PERSONAL = [PERSON.name, PERSON.id_number, PERSON.phone]


def registration(applicant: Applicant = PERSON, case_no: str = "C-2025-0001") -> CaseRegistration:
    return CaseRegistration(
        case_no=case_no, matter_code="enterprise-opening", hall="city-hall", clerk="window-07", applicant=applicant,
        workflow_id=case_workflow_id(case_no), received_at=T0, run_id=f"run-{case_no}",
    )


def broken(applicant_id: str, case_no: str) -> BrokenCommitment:
    return BrokenCommitment(key=f"{case_no}/broken", applicant_id=applicant_id, case_no=case_no, at=T0)


def sealed(engine: Engine, applicant_id: str) -> dict:
    with engine.connect() as conn:
        row = conn.execute(text("SELECT * FROM applicants WHERE applicant_id = :a"), {"a": applicant_id}).one()
    return dict(row._mapping)


def leaks(dump: bytes, values: list[str]) -> list[str]:
    return [value for value in values if value.encode("utf-8") in dump]


def test_no_detail_appears_in_the_raw_database(store: Store, db_engine: Engine, request) -> None:
    store.register_case(registration())
    store.notify(Notice(key="C-2025-0001/n", recipient=PERSON.applicant_id, kind="accepted", subject_type="case",
                        subject_id="C-2025-0001", title="受理通知", body="您的申请已受理。", at=T0))
    store.record_broken_commitment(broken(PERSON.applicant_id, "C-2025-0001"))
    assert store.applicant(PERSON.applicant_id) | {"updated_at": None} == {
        "applicant_id": "app-0001", "kind": "person", "name": PERSON.name, "id_number": PERSON.id_number,
        "phone": PERSON.phone, "updated_at": None,
    }

    if db_engine.dialect.name == "sqlite":
        path = Path(db_engine.url.database)
        files = [p for p in path.parent.iterdir() if p.name.startswith(path.name)]  # .db, -wal, -shm
        assert path.with_name(path.name + "-wal") in files  # where the latest writes are
        dump = b"".join(p.read_bytes() for p in files)
    else:
        with db_engine.connect() as conn:
            dump = repr(conn.execute(text("SELECT * FROM applicants")).all()).encode("utf-8")
            for table in inspect(db_engine).get_table_names():
                dump += repr(conn.execute(text(f"SELECT * FROM {table}")).all()).encode("utf-8")
        if shutil.which("pg_dump"):
            schema = request.getfixturevalue("pg_schema")
            ran = subprocess.run(["pg_dump", "--dbname", PG_URL.replace("+psycopg", ""), "--schema", schema,
                                  "--data-only"], capture_output=True, timeout=60)
            assert ran.returncode == 0, ran.stderr
            assert b"COPY " in ran.stdout and b"applicants" in ran.stdout
            dump += ran.stdout
    assert b"app-0001" in dump  # the dump is of the right data
    assert leaks(dump, PERSONAL) == []


def test_each_value_names_its_key_and_opens_only_in_its_own_row_and_column(store: Store, db_engine: Engine) -> None:
    other = Applicant(applicant_id="app-0002", name="李四", id_number="310101198502021234", phone="13700000000")
    store.register_case(registration())
    store.register_case(registration(other, "C-2025-0002"))
    row = sealed(db_engine, "app-0001")
    assert all(row[f"{f}_sealed"].startswith("test-1:") for f in ("name", "id_number", "phone"))
    assert len(row["id_number_hmac"]) == 64

    with db_engine.begin() as conn:  # someone with write access moves a value to another row
        conn.execute(text("UPDATE applicants SET name_sealed = :v WHERE applicant_id = 'app-0002'"),
                     {"v": row["name_sealed"]})
        conn.execute(text("UPDATE applicants SET phone_sealed = id_number_sealed WHERE applicant_id = 'app-0001'"))
    for moved in ("app-0002", "app-0001"):
        with pytest.raises(Undecryptable) as refused:
            store.applicant(moved)
        assert not leaks(str(refused.value).encode(), PERSONAL)


def test_a_retried_registration_seals_nothing_again(store: Store, db_engine: Engine) -> None:
    store.register_case(registration())
    first = sealed(db_engine, "app-0001")
    store.register_case(registration())
    # A later case that leaves the phone out keeps the one on record.
    store.register_case(registration(PERSON.model_copy(update={"phone": None}), "C-2025-0002"))
    assert sealed(db_engine, "app-0001") == first


def test_the_longest_details_the_contract_allows_fit_both_databases(store: Store) -> None:
    # 4 UTF-8 bytes per character: the most a column can be asked to hold.
    longest = Applicant(applicant_id="app-long", name="𠀀" * 200, id_number="𠀀" * 64, phone="𠀀" * 32)
    store.register_case(registration(longest))
    assert store.applicant("app-long") | {"updated_at": None} == longest.model_dump() | {"updated_at": None}


def test_a_rotated_key_keeps_old_rows_readable_and_the_broken_commitment_found(db_engine: Engine, tmp_path) -> None:
    keys_file = tmp_path / "data.toml"
    shutil.copy(TEST_DATA_KEYS, keys_file)
    before = Store(db_engine, keys=parse(keys_file.read_text(encoding="utf-8"), str(keys_file)))
    before.register_case(registration())
    before.record_broken_commitment(broken(PERSON.applicant_id, "C-2025-0001"))

    new_id, rotated = add_key(keys_file, "sm4-gcm")  # a 国密 key becomes current
    after = Store(db_engine, keys=rotated)
    assert after.applicant("app-0001")["id_number"] == PERSON.id_number
    # The same person at another hall, under another applicant id, the number typed differently.
    again = Applicant(applicant_id="app-hall-2", name=PERSON.name, id_number=" 110101 19900307 123x", phone=None)
    after.register_case(registration(again, "C-2025-0002"))
    assert sealed(db_engine, "app-hall-2")["name_sealed"].startswith(f"{new_id}:")
    assert sealed(db_engine, "app-0001")["name_sealed"].startswith("test-1:")
    assert after.has_broken_commitment("app-hall-2") is True
    assert after.has_broken_commitment("app-0001") is True

    stranger = Applicant(applicant_id="app-0003", name="赵六", id_number="440101199912121234")
    after.register_case(registration(stranger, "C-2025-0003"))
    assert after.has_broken_commitment("app-0003") is False
    with pytest.raises(Undecryptable, match=new_id):  # the old key set cannot open what the new key sealed
        before.applicant("app-hall-2")


# --- `starter.py case status --with-applicant`, end to end --------------------------------------


@pytest.mark.e2e
def test_case_status_shows_the_applicant_only_when_asked_and_audits_who_asked(hall, tmp_path):
    run = uuid.uuid4().hex[:8]
    case_no, applicant_id = f"PRIV-{run}", f"app-priv-{run}"
    person = {"applicant_id": applicant_id, "kind": "person", "name": "陈美玲", "id_number": "44030119881111002X",
              "phone": "13612345678"}
    personal = [person["name"], person["id_number"], person["phone"]]
    example = json.loads((ROOT / "docs/examples/case-enterprise-opening.json").read_text(encoding="utf-8"))
    application = tmp_path / "application.json"
    application.write_text(json.dumps({**example, "case_no": case_no, "applicant": person}), encoding="utf-8")
    started = hall("case", "start", "--file", str(application))
    assert started.returncode == 0, started.stderr
    def registered():
        try:
            return hall.store.applicant(applicant_id)
        except exc.OperationalError:  # the worker has not made its tables yet (a loaded machine)
            return None

    assert wait_for(registered)

    def viewed() -> list:
        return [e for e in hall.store.audit_trail("case", case_no) if e.action == "applicant_viewed"]

    for output in ([], ["-o", "json"]):
        plain = hall("case", "status", case_no, *output)
        assert plain.returncode == 0, plain.stderr
        assert leaks(plain.stdout.encode(), personal) == []
    assert viewed() == []

    asked = hall("case", "status", case_no, "--with-applicant", "--by", "officer-li", "--reason", "applicant phoned")
    assert asked.returncode == 0, asked.stderr
    for value in ["陈美玲", "44030119881111002X", "13612345678", "applicant_viewed by officer-li"]:
        assert value in asked.stdout

    # --by defaults to HALLFLOW_ACTOR.
    as_json = subprocess.run(
        [sys.executable, "starter.py", "case", "status", case_no, "--with-applicant", "-o", "json"],
        cwd=ROOT, env={**hall.env, "HALLFLOW_ACTOR": "clerk-01"}, capture_output=True, text=True, timeout=60,
    )
    assert as_json.returncode == 0, as_json.stderr
    answer = json.loads(as_json.stdout)
    assert answer["case_no"] == case_no and answer["applicant"] == person

    rows = viewed()
    assert [(e.actor, e.reason) for e in rows] == [("officer-li", "applicant phoned"), ("clerk-01", "")]
    assert rows[0].details == {"applicant_id": applicant_id, "fields": ["name", "id_number", "phone"]}
    assert all(e.workflow_id == case_workflow_id(case_no) and e.run_id for e in rows)
    assert leaks(json.dumps([e.model_dump(mode="json") for e in rows]).encode(), personal) == []
    verified = hall("audit", "verify", "--case", case_no)
    assert verified.returncode == 0, verified.stdout + verified.stderr

    # Only an active officer of the case's hall or department: the directory says who they are.
    for outsider in ("tax-01", "officer-nobody"):
        refused = hall("case", "status", case_no, "--with-applicant", "--by", outsider)
        assert refused.returncode == 1 and f"{outsider} may not see the applicant" in refused.stderr, refused.stderr
        assert leaks(refused.stdout.encode(), personal) == []
    assert len(viewed()) == 2

    misused = hall("case", "status", case_no, "--by", "officer-li")
    assert misused.returncode == 2 and "--with-applicant" in misused.stderr
    unknown = hall("case", "status", f"NONE-{run}", "--with-applicant", "--by", "officer-li")
    assert unknown.returncode == 1 and hall.store.audit_trail("case", f"NONE-{run}") == []
    time.sleep(0.5)  # the worker's last lines
    assert leaks(hall.log_file.read_bytes(), personal) == []
