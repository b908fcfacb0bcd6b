"""Who sent it, as an integrator meets it through the `temporal` CLI: an Update without a signed
`hallflow-actor` header, or with one signed for another message, workflow or input, is refused
`Unauthenticated`; a properly signed one from someone who may not take the step is refused
`Forbidden` or `UnknownActor`; the case does not change, and each refusal is in the audit trail."""

import base64
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from contract.assertion import payload_digest
from contract.common import SHANGHAI
from security.keys import load_public_keys
from security.signing import from_header_json, verify
from settings import ROOT, get_settings
from tests.e2e_fixtures import stage_of, wait_for
from tests.temporal_fixtures import BIN

OPINION = '{"department": "taxation", "officer": "%s", "agree": true, "opinion": "tax paid"}'


def _header(ran: subprocess.CompletedProcess) -> str:
    assert ran.returncode == 0, ran.stderr
    return ran.stdout.strip()


def _consulting_case(hall, prefix: str, applicant_id: str) -> str:
    """A real-estate registration started through starter.py, waiting on taxation's opinion."""
    case_no = f"{prefix}-{time.time_ns()}"
    started = hall(
        "case", "start", "--case-no", case_no, "--matter", "real-estate-registration", "--hall", "hall-central",
        "--clerk", "clerk-01", "--applicant-id", applicant_id,
        "--materials", "registration-application,applicant-identity,ownership-source-proof,tax-payment-proof,"
        "cadastral-survey-report,marital-status-proof",
    )
    assert started.returncode == 0, started.stderr
    assert wait_for(lambda: stage_of(hall, case_no) == "consulting")
    return case_no


def test_sign_puts_both_assertions_of_an_update_with_start_in_one_header():
    update, start = '{"materials": ["residence-proof"], "submitted_by": "applicant"}', '{"case_no": "X-1"}'
    ran = subprocess.run(
        [str(BIN / "python"), "starter.py", "sign", "--actor", "applicant", "--workflow-id", "case-X-1",
         "--message", "supplement_materials", "--input", update,
         "--also-message", "CaseWorkflow", "--also-input", start, "--also-actor", "clerk-01"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    name, _, value = _header(ran).partition("=")
    assert name == "hallflow-actor"
    first, second = (from_header_json(json.dumps(item)) for item in json.loads(value))
    keys = {k.id: k for k in load_public_keys(get_settings().keys_file)}
    assert verify(first, keys[first.key_id]) and verify(second, keys[second.key_id])
    assert (first.actor, first.message, first.payload_sha256) == (
        "applicant", "supplement_materials", payload_digest(update.encode()))
    assert (second.actor, second.message, second.payload_sha256) == (
        "clerk-01", "CaseWorkflow", payload_digest(start.encode()))
    assert first.workflow_id == second.workflow_id == "case-X-1"

    alone = subprocess.run([str(BIN / "python"), "starter.py", "sign", "--actor", "a", "--workflow-id", "w",
                            "--message", "m", "--also-actor", "b"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert alone.returncode == 2 and "need --also-message" in alone.stderr and not alone.stdout


@pytest.mark.e2e
def test_an_update_not_signed_for_itself_or_by_someone_not_allowed_is_refused_and_audited(hall, dev_server, codec_server):
    case_no = _consulting_case(hall, "SIG", "app-sig-1")
    workflow_id = f"case-{case_no}"
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "TEMPORAL_ADDRESS": dev_server.client.service_client.config.target_host,
           # As docs/integration.md sends: through the codec server (the CLI's own variables).
           "TEMPORAL_CODEC_ENDPOINT": codec_server.url, "TEMPORAL_CODEC_AUTH": codec_server.auth}

    def sign(actor: str, body: str, message: str = "department_opinion", workflow: str = workflow_id) -> str:
        return _header(hall("sign", "--actor", actor, "--workflow-id", workflow, "--message", message, "--input", body))

    def opinion(body: str, header: str | None) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["temporal", "workflow", "update", "execute", "--workflow-id", workflow_id, "--name", "department_opinion",
             "--input", body, *(["--headers", header] if header else [])],
            env=env, capture_output=True, text=True, timeout=60,
        )

    def forged(header: str) -> str:
        """The same assertion with its signature's last byte changed: right key id, wrong signature."""
        name, _, value = header.partition("=")
        assertion = json.loads(value)
        raw = bytearray(base64.b64decode(assertion["signature"]))
        raw[-1] ^= 0x01
        return f"{name}={json.dumps({**assertion, 'signature': base64.b64encode(bytes(raw)).decode()})}"

    tax = OPINION % "tax-01"
    refusals = [
        # A forged signature once aborted the worker process (cryptography inside the sandbox):
        # refused like the rest, and the worker goes on answering.
        (tax, forged(sign("tax-01", tax)), "Unauthenticated", "signature"),
        # (body, header, error, what the refusal says)
        (tax, None, "Unauthenticated", "carries no hallflow-actor header"),
        (tax, sign("tax-01", tax, message="review"), "Unauthenticated", "not for department_opinion"),
        (tax, sign("tax-01", tax, workflow="case-SOMETHING-ELSE"), "Unauthenticated", "is for workflow case-SOMETHING-ELSE"),
        (tax, sign("tax-01", tax.replace("tax paid", "all paid")), "Unauthenticated", "payload_sha256"),
        (OPINION % "officer-li", sign("officer-li", OPINION % "officer-li"), "Forbidden",
         "officer-li may not give taxation's opinion; who may: tax-01, tax-head"),
        (OPINION % "tax-99", sign("tax-99", OPINION % "tax-99"), "UnknownActor", "tax-99 is not in the organisation directory"),
    ]
    for body, header, error, says in refusals:
        ran = opinion(body, header)
        assert ran.returncode != 0, f"{error}: {ran.stdout}"
        assert f"type: {error}" in ran.stderr and says in ran.stderr, ran.stderr
        assert "retryable: false" in ran.stderr

    # Nothing changed, and each refusal is in the audit trail, in order, with its error.
    status = json.loads(hall("case", "status", case_no, "-o", "json").stdout)
    assert status["stage"] == "consulting" and [c["state"] for c in status["consultations"]] == ["pending"]

    def refused():
        return [e for e in hall.store.audit_trail("case", case_no) if e.action == "refused"]

    assert wait_for(lambda: len(refused()) == len(refusals))
    rows = refused()
    assert [(e.details["message"], e.details["error"]) for e in rows] == [
        ("department_opinion", error) for _, _, error, _ in refusals
    ]
    assert all(says in e.reason for e, (_, _, _, says) in zip(rows, refusals))
    assert [e.actor for e in rows][-2:] == ["officer-li", "tax-99"]

    # Signed for itself, by an officer of the consulted department: taken.
    answered = opinion(tax, sign("tax-01", tax))
    assert answered.returncode == 0, answered.stderr
    assert wait_for(lambda: stage_of(hall, case_no) == "awaiting_review")


@pytest.mark.e2e
def test_the_temporal_cli_sends_no_header_with_a_signal_so_its_twins_are_refused(hall, dev_server, codec_server):
    """integration.md says so, and sends twins from a signed SDK client instead: this fails, and
    the doc should change, the day the CLI starts sending `--headers` with a signal."""
    case_no = f"SIG-{time.time_ns()}"
    started = hall(
        "case", "start", "--case-no", case_no, "--matter", "enterprise-opening", "--hall", "hall-central",
        "--clerk", "clerk-01", "--applicant-id", "app-sig-2",
        "--materials", "business-licence-application,articles-of-association,shareholder-qualification,"
        "legal-representative-appointment,residence-proof,seal-engraving-form",
    )
    assert started.returncode == 0, started.stderr
    assert wait_for(lambda: stage_of(hall, case_no) == "awaiting_review")
    body = '{"by": "hall-central", "note": "from the queue"}'
    header = _header(hall("sign", "--actor", "hall-central", "--workflow-id", f"case-{case_no}",
                          "--message", "urge_signal", "--input", body))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "TEMPORAL_ADDRESS": dev_server.client.service_client.config.target_host,
           # As docs/integration.md sends: through the codec server (the CLI's own variables).
           "TEMPORAL_CODEC_ENDPOINT": codec_server.url, "TEMPORAL_CODEC_AUTH": codec_server.auth}
    sent = subprocess.run(
        ["temporal", "workflow", "signal", "--workflow-id", f"case-{case_no}", "--name", "urge_signal",
         "--input", body, "--headers", header],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert sent.returncode == 0, sent.stderr

    def refused():
        status = json.loads(hall("case", "status", case_no, "-o", "json").stdout)
        return status["refused_signals"]

    refusal = wait_for(refused)
    assert [(r["signal"], r["error"]) for r in refusal] == [("urge_signal", "Unauthenticated")]
    assert "carries no hallflow-actor header" in refusal[0]["reason"]
    audited = [e for e in hall.store.audit_trail("case", case_no) if e.action == "signal_refused"]
    assert [(e.actor, e.details["error"]) for e in audited] == [("signal", "Unauthenticated")]


@pytest.mark.e2e
def test_a_directory_change_published_with_starter_reaches_a_running_case(hall, tmp_path):
    """docs/security.md, "A change reaches running cases": tax-01 leaves; `starter.py admin directory
    publish` hands the new directory to the running case, which then refuses tax-01's opinion
    (UnknownActor) and takes the taxation head's. The worker was not restarted: the case holds the
    directory it was sent."""
    case_no = _consulting_case(hall, "DIR", "app-dir-1")

    last_day = datetime.now(SHANGHAI).date() - timedelta(days=1)  # tax-01's last day was yesterday
    text = (ROOT / "data" / "org.toml").read_text(encoding="utf-8")
    officer = 'id = "tax-01"\ndepartment = "taxation"\nroles = ["department_officer"]'
    version = f"e2e-{time.time_ns()}"
    assert officer in text and 'version = "' in text
    changed = re.sub(r'^version = ".*"$', f'version = "{version}"', text, count=1, flags=re.M)
    changed = changed.replace(officer, f"{officer}\nleft_after = {last_day.isoformat()}")
    org = tmp_path / "org.toml"
    org.write_text(changed, encoding="utf-8")

    def starter(*args: str, org_file: Path = org) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "starter.py", *args], cwd=ROOT, env={**hall.env, "HALLFLOW_ORG_FILE": str(org_file)},
                              capture_output=True, text=True, timeout=60)

    # Only a directory admin may publish: starter.py says so before sending anything.
    refused = starter("admin", "directory", "publish", "--by", "tax-head")
    assert refused.returncode == 2 and "tax-head is not a directory admin; who is: org-admin" in refused.stderr
    published = starter("admin", "directory", "publish", "--by", "org-admin", "-o", "json")
    assert published.returncode == 0, published.stderr
    answer = json.loads(published.stdout)
    assert answer["version"] == version and answer["workflows"] >= 1

    try:
        opinion = ("case", "opinion", case_no, "--department", "taxation", "--agree", "--opinion", "tax paid")
        gone = hall(*opinion, "--officer", "tax-01")
        assert gone.returncode == 1, gone.stdout
        assert "UnknownActor" in gone.stderr and f"tax-01 left after {last_day.isoformat()}" in gone.stderr, gone.stderr
        assert stage_of(hall, case_no) == "consulting"
        assert wait_for(lambda: [(e.actor, e.details["error"]) for e in hall.store.audit_trail("case", case_no)
                                 if e.action == "refused"] == [("tax-01", "UnknownActor")])
        taken = hall(*opinion, "--officer", "tax-head")
        assert taken.returncode == 0, taken.stderr
        assert wait_for(lambda: stage_of(hall, case_no) == "awaiting_review")
    finally:  # the module's other cases get the shipped directory back
        assert starter("admin", "directory", "publish", "--by", "org-admin", org_file=ROOT / "data" / "org.toml").returncode == 0


@pytest.mark.e2e
async def test_an_sdks_signal_with_start_carries_the_signed_header_to_its_signal(hall, dev_server):
    """docs/integration.md: through an SDK, signal-with-start hands the request's header to the
    start and to the signal alike, so one header with both assertions proves both (the worker
    takes the one whose message matches). The satisfaction watch counts only a rating hallflow
    signed: a rating sent this way counts. (The temporal CLI's signal-with-start sends no header.)"""
    import asyncio
    import uuid
    from datetime import timezone

    from contract.rating import Rating
    from contract.risk import WatchState, WatchStatus

    department = f"dept-{uuid.uuid4().hex[:12]}"
    rating = Rating(case_no=f"SWS-{time.time_ns()}", matter_code="enterprise-opening", department=department,
                    hall="hall-central", score=5, channel="window", at=datetime.now(timezone.utc))
    # The fixture's client signs as hallflow what a case or the watch would send (tests/temporal_fixtures.py).
    handle = await dev_server.client.start_workflow(
        "SatisfactionWatchWorkflow", WatchState(department=department), id=f"satisfaction-{department}",
        task_queue="hallflow", start_signal="rating", start_signal_args=[rating])
    try:
        for _ in range(100):
            status = await handle.query("status", result_type=WatchStatus)
            if status.ratings:
                break
            await asyncio.sleep(0.1)
        assert status.ratings == 1
        assert [e for e in hall.store.audit_trail("SatisfactionWatchWorkflow", handle.id) if e.action == "refused"] == []
    finally:
        await handle.terminate()
