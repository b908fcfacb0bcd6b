"""End to end as a service hall meets hallflow: the real `temporal` dev server, worker.py and
starter.py as separate processes, real data files and a SQLite database."""

import json
import os
import re
import subprocess
import sys
import time

import pytest

from settings import ROOT
from tests.e2e_fixtures import stage_of, wait_for
from tests.temporal_fixtures import BIN

pytestmark = pytest.mark.e2e


def test_hall_takes_a_deferred_case_through_review_and_panel_to_its_result(hall):
    case_no = f"E2E-{time.time_ns()}"
    started = hall(
        "case", "start", "--case-no", case_no, "--matter", "enterprise-opening", "--hall", "hall-central",
        "--clerk", "clerk-01", "--applicant-id", "app-e2e-1", "--applicant-name", "李四",
        "--materials", "business-licence-application,articles-of-association,shareholder-qualification,"
        "legal-representative-appointment,seal-engraving-form",
        "--commitment-signed",
    )
    assert started.returncode == 0, started.stderr
    assert f"case-{case_no}" in started.stdout and "http://" in started.stdout
    # Accepted with a deferred material; review starts at once.
    assert wait_for(lambda: stage_of(hall, case_no) == "awaiting_review")

    reviewed = hall("case", "review", case_no, "--reviewer", "officer-li", "--decision", "approve", "--opinion", "lawful")
    assert reviewed.returncode == 0, reviewed.stderr
    assert wait_for(lambda: stage_of(hall, case_no) == "in_panel")
    recused = hall("case", "vote", case_no, "--member", "officer-li", "--choice", "approve")
    assert recused.returncode == 1 and "not on the panel" in recused.stderr
    for member in ("officer-zhao", "officer-chen"):
        voted = hall("case", "vote", case_no, "--member", member, "--choice", "approve")
        assert voted.returncode == 0, voted.stderr
    # Approved, but the result waits for the deferred material.
    assert wait_for(lambda: stage_of(hall, case_no) == "approved_pending_materials")

    supplemented = hall("case", "supplement", case_no, "--materials", "residence-proof", "--by", "clerk-02")
    assert supplemented.returncode == 0, supplemented.stderr
    assert re.search(r"complete\s+yes", supplemented.stdout)
    assert wait_for(lambda: stage_of(hall, case_no) == "approved")

    actions = [e.action for e in hall.store.audit_trail("case", case_no)]
    assert actions[:4] == ["received", "accepted_with_deferral", "review_requested", "reviewed"]
    assert actions[-2:] == ["materials_complete", "approved"] and actions.count("voted") == 2
    kinds = [n.kind for n in hall.store.notices(case_no)]
    assert kinds[0] == "deferral_accepted" and kinds[-2:] == ["result_issued", "rating_invited"]
    assert "李四" not in started.stderr + started.stdout  # personal data stays out of logs


def test_hall_withdraws_a_case_under_review(hall):
    case_no = f"E2E-{time.time_ns()}"
    started = hall(
        "case", "start", "--case-no", case_no, "--matter", "enterprise-opening", "--hall", "hall-central",
        "--clerk", "clerk-01", "--applicant-id", "app-e2e-3",
        "--materials", "business-licence-application,articles-of-association,shareholder-qualification,"
        "legal-representative-appointment,residence-proof,seal-engraving-form",
    )
    assert started.returncode == 0, started.stderr
    assert wait_for(lambda: stage_of(hall, case_no) == "awaiting_review")
    urged = hall("case", "urge", case_no, "--by", "hall-central", "--note", "applicant asked")
    assert urged.returncode == 0 and re.search(r"waiting on\s+officer-li", urged.stdout)
    again = hall("case", "urge", case_no, "--by", "hall-central")
    assert again.returncode == 1 and "one urge per working day" in again.stderr

    withdrawn = hall("case", "withdraw", case_no, "--reason", "moved away", "--by", "applicant")
    assert withdrawn.returncode == 0, withdrawn.stderr
    assert f"case {case_no}: withdrawn" in withdrawn.stdout
    actions = [e.action for e in hall.store.audit_trail("case", case_no)]
    assert actions == ["received", "accepted", "review_requested", "urged", "withdrawn"]


def test_hall_gets_clear_errors(hall, dev_server):
    case_no = f"E2E-{time.time_ns()}"
    app = (
        "--matter", "enterprise-opening", "--hall", "hall-central", "--clerk", "clerk-01", "--applicant-id", "app-e2e-2",
        "--materials", "business-licence-application,articles-of-association,shareholder-qualification,"
        "legal-representative-appointment", "--commitment-signed",
    )
    assert hall("case", "start", "--case-no", case_no, *app).returncode == 0

    duplicate = hall("case", "start", "--case-no", case_no, *app)
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr

    unknown = hall("case", "start", "--case-no", case_no + "X", "--matter", "no-such-matter", *app[2:])
    assert unknown.returncode == 2 and "unknown matter 'no-such-matter'" in unknown.stderr
    assert "enterprise-opening" in unknown.stderr

    assert wait_for(lambda: stage_of(hall, case_no) == "awaiting_review")
    refused = hall("case", "supplement", case_no, "--materials", "passport", "--by", "clerk-01")
    assert refused.returncode == 1 and "passport" in refused.stderr

    unreachable = subprocess.run(
        [sys.executable, "starter.py", "case", "status", case_no],
        cwd=ROOT, env={**os.environ, "HALLFLOW_TEMPORAL_ADDRESS": "127.0.0.1:1"},
        capture_output=True, text=True, timeout=60,
    )
    assert unreachable.returncode == 3 and "cannot reach Temporal at 127.0.0.1:1" in unreachable.stderr


LISTED = {"CaseStage": "case-CLI-0001", "RiskLevel": "risk-CLI-R1"}


@pytest.mark.timeout(300)  # about 40 blocks, most signing with a fresh `python starter.py sign`
def test_every_cli_example_in_the_integration_doc_works(hall, dev_server, codec_server, tmp_path):
    """docs/integration.md's CLI blocks, run in order with the `temporal` CLI and hallflow's codec
    server, as an integrator would."""
    import base64
    import re

    codec_flags = '--codec-endpoint "$CODEC_ENDPOINT" --codec-auth "$CODEC_AUTH"'
    encrypted = "binary/encrypted"

    def history(workflow_id: str, *codec: str) -> list[dict]:
        """The workflow's events as `temporal workflow show -o json` prints them (payloads in base64)."""
        shown = subprocess.run(["temporal", "workflow", "show", "--workflow-id", workflow_id, "-o", "json", *codec],
                               cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert shown.returncode == 0, shown.stderr
        return json.loads(shown.stdout)["events"]

    def encoding(payload: dict) -> str:
        return base64.b64decode(payload["metadata"]["encoding"]).decode()

    doc = (ROOT / "docs" / "integration.md").read_text(encoding="utf-8")
    blocks = re.findall(r"<!-- cli-example -->\n```sh\n(.*?)```", doc, re.S)
    assert len(blocks) >= 35
    # The setup block, as written, names make run's codec server: the Makefile's port and token file.
    [setup] = re.findall(r"<!-- cli-setup -->\n```sh\n(.*?)```", doc, re.S)
    (tmp_path / "var" / "keys").mkdir(parents=True)
    (tmp_path / "var" / "keys" / "codec-token").write_text("token-from-make-keys\n", encoding="utf-8")
    shown = subprocess.run(["bash", "-c", setup + 'echo "$CODEC_ENDPOINT|$CODEC_AUTH"'], cwd=tmp_path,
                           capture_output=True, text=True, timeout=30)
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^CODEC_TOKEN := \$\(VAR\)/keys/codec-token$", makefile, re.M) and re.search(r"^VAR := var$", makefile, re.M)
    port = re.search(r"^CODEC_PORT \?= (\d+)$", makefile, re.M).group(1)
    assert shown.stdout == f"http://127.0.0.1:{port}|Bearer token-from-make-keys\n", shown.stderr
    # Every command that sends or shows payloads goes through the codec server; a list shows none.
    for block in blocks:
        assert block.count(codec_flags) == block.count("temporal workflow ") - block.count("temporal workflow list"), block
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "TEMPORAL_ADDRESS": dev_server.client.service_client.config.target_host,
        # What the setup block sets under make run, here for the test's own codec server.
        "CODEC_ENDPOINT": codec_server.url,
        "CODEC_AUTH": codec_server.auth,
        # The signal twins go from hallflow's Python client (the CLI does not send their headers).
        "HALLFLOW_TEMPORAL_ADDRESS": dev_server.client.service_client.config.target_host,
    }
    outputs = {}
    for block in blocks:
        # A human reads the previous answer before the next command; poll instead. Each block
        # signs its messages with `python starter.py sign` (BIN's python, from the repository root)
        # and the session's key (HALLFLOW_SIGNING_KEY, tests/org_fixtures.py), as an integrator would.
        first = None
        for _ in range(50):
            ran = subprocess.run(["bash", "-c", block], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
            # A list is read once visibility shows the workflow it is meant to find.
            expected = next((wf for key, wf in LISTED.items() if "workflow list" in block and key in block), "")
            if ran.returncode == 0 and expected in ran.stdout:
                break
            first = first or ran
            time.sleep(0.2)
        # The first answer matters: a refused message sent again is often refused for another reason.
        assert ran.returncode == 0, f"{block}\nfirst try: {first.stdout}\n{first.stderr}\nlast try: {ran.stdout}\n{ran.stderr}"
        # Keyed "<update name> <workflow id>", or the CLI verb ("query", "list", "start"), or "python".
        verb = re.search(r"^temporal workflow (\S+)", block, re.M)
        name = block.split("--name ")[-1].split()[0] if "--name" in block else verb.group(1) if verb else "python"
        key = f"{name} {block.split('--workflow-id ')[-1].split()[0]}" if "--name" in block else name
        outputs[key if key not in outputs else f"{key} {sum(k.startswith(key) for k in outputs) + 1}"] = ran.stdout
    assert "complete" in outputs["supplement_materials case-CLI-0001"]
    assert "case-CLI-0001" in outputs["list"]
    assert "officer-wang" in outputs["transfer case-CLI-0001"]
    assert "stage:approved" in outputs["rate case-CLI-0001"] and "rating:5" in outputs["rate case-CLI-0001"]
    assert "withdrawn" in outputs["withdraw case-CLI-0002"]
    assert "complete:true" in outputs["execute-update-with-start"].replace(" ", "")
    # The signal twins: the urge applied, the review by someone not assigned refused and recorded.
    twins = [(e.action, e.details.get("error")) for e in hall.store.audit_trail("case", "CLI-0002")]
    assert ("urged", None) in twins and ("signal_refused", "NotReviewer") in twins
    assert "stage:answered" in outputs["respond suggestion-CLI-S1"] and "complexity:complex" in outputs["respond suggestion-CLI-S1"]
    assert "stage:rectified" in outputs["rectify rectification-CLI-0003"]
    assert "risk-CLI-R1" in outputs["list 3"] and "state:resolved" in outputs["resolve risk-CLI-R1"] and "stage:set_aside" in outputs["confirm_set_aside rectification-CLI-0004"]
    # Every answer was shown decrypted (an encrypted one prints its encoding in base64).
    assert not [key for key, out in outputs.items() if base64.b64encode(encrypted.encode()).decode() in out]

    # What the CLI sent is in the history only encrypted, its --headers included (the worker
    # decrypted the assertion and let the message in); through the codec it reads as sent.
    events = history("case-CLI-0001")
    started = events[0]["workflowExecutionStartedEventAttributes"]
    assert encoding(started["input"]["payloads"][0]) == encrypted
    assert encoding(started["header"]["fields"]["hallflow-actor"]) == encrypted
    updates = [e["workflowExecutionUpdateAcceptedEventAttributes"]["acceptedRequest"]["input"]
               for e in events if e["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED"]
    assert len(updates) >= 9  # supplement, urge, transfer, two reviews, resubmit, two votes, the rating
    assert {encoding(p) for u in updates for p in u["args"]["payloads"]} == {encrypted}
    assert {encoding(u["header"]["fields"]["hallflow-actor"]) for u in updates} == {encrypted}
    decoded = history("case-CLI-0001", "--codec-endpoint", codec_server.url, "--codec-auth", codec_server.auth)
    application = decoded[0]["workflowExecutionStartedEventAttributes"]["input"]["payloads"][0]
    assert encoding(application) == "json/plain"
    assert json.loads(base64.b64decode(application["data"]))["commitment_signed"] is True


def test_a_bad_rating_is_rectified_by_the_department_through_starter(hall):
    case_no = f"E2E-{time.time_ns()}"
    started = hall(
        "case", "start", "--case-no", case_no, "--matter", "housing-fund-withdrawal", "--hall", "hall-central",
        "--clerk", "clerk-01", "--applicant-id", "app-e2e-4",
        "--materials", "withdrawal-application,applicant-identity,purchase-proof,bank-card",
    )
    assert started.returncode == 0, started.stderr
    # 秒批: approved at once, then open for a rating.
    assert wait_for(lambda: hall("case", "rate", case_no, "--score", "2", "--channel", "app", "--comment", "slow").returncode == 0)

    def open_work() -> dict:  # a department's open work, as a script reads it
        return {row["workflow_id"]: row["stage"] for row in json.loads(
            hall("feedback", "open", "--department", "housing-fund-center", "-o", "json").stdout)}

    assert wait_for(lambda: open_work().get(f"rectification-{case_no}") == "verifying")

    verified = hall("feedback", "verify", case_no, "--officer", "officer-fund-1", "--finding", "kiosk was down")
    assert verified.returncode == 0, verified.stderr
    assert wait_for(lambda: open_work().get(f"rectification-{case_no}") == "rectifying")
    rectified = hall("feedback", "rectify", case_no, "--officer", "officer-fund-1", "--action", "kiosk replaced", "--reply", "已更换自助机")
    assert rectified.returncode == 0, rectified.stderr
    assert wait_for(lambda: f"rectification-{case_no}" not in open_work())

    actions = [e.action for e in hall.store.audit_trail("rectification", case_no)]
    assert actions == ["opened", "verified", "rectified"]
    answered = [n for n in hall.store.notices(case_no) if n.kind == "rating_answered"]
    assert [n.recipient for n in answered] == ["applicant:app-e2e-4"]
    # The rater is confidential: the worker's log never names them.
    log = hall.log_file.read_text(encoding="utf-8")
    assert case_no in log and "app-e2e-4" not in log


def test_a_suggestion_is_submitted_answered_and_published_through_starter(hall):
    no = f"SUG-{time.time_ns()}"
    submitted = hall(
        "feedback", "suggest", "--no", no, "--submitter-id", "citizen-e2e", "--topic", "More seats",
        "--content", "The waiting area needs more seats.", "--department", "market-regulation",
    )
    assert submitted.returncode == 0, submitted.stderr
    assert wait_for(lambda: f"suggestion-{no}" in hall("feedback", "open", "--department", "market-regulation").stdout)

    unreasoned = hall("feedback", "respond", no, "--department", "market-regulation", "--officer", "officer-li", "--no-adopted")
    assert unreasoned.returncode == 2 and "reason" in unreasoned.stderr
    answered = hall(
        "feedback", "respond", no, "--department", "market-regulation", "--officer", "officer-li", "--adopted",
        "--measures", "20 seats added in December",
    )
    assert answered.returncode == 0, answered.stderr
    assert f"suggestion {no}: answered by officer-li: adopted" in answered.stdout
    assert re.search(r"stage\s+answered", answered.stdout)

    published = hall("feedback", "published", "--department", "market-regulation")
    assert published.returncode == 0 and no in published.stdout and "20 seats added" in published.stdout
    assert "citizen-e2e" not in published.stdout
    told = [n for n in hall.store.notices(no) if n.kind == "suggestion_answered"]
    assert [n.recipient for n in told] == ["submitter:citizen-e2e"]


def test_a_risk_is_reported_handled_and_listed_in_the_register_through_starter(hall):
    no = f"R-{time.time_ns()}"
    reported = hall(
        "risk", "report", "--no", no, "--type", "social", "--title", "crowd at the hall entrance", "--probability", "0.5",
        "--impact", "medium", "--department", "market-regulation", "--owner", "officer-li",
    )
    assert reported.returncode == 0, reported.stderr
    listed = wait_for(lambda: no in (out := hall("risk", "list", "--level", "yellow").stdout) and out)
    assert re.search(rf"^{no}\s+yellow\s+awaiting_acknowledgement\s+crowd at the hall entrance\s", listed, re.M)

    assert hall("risk", "acknowledge", no, "--officer", "officer-li", "--group", "g1").returncode == 0
    planned = wait_for(
        lambda: hall("risk", "plan", no, "--officer", "officer-li", "--plan", "queue marshals", "--due", "2030-01-01T18:00+08:00")
    )
    assert planned.returncode == 0, planned.stderr
    early = hall("risk", "resolve", no, "--officer", "officer-li", "--summary", "done")
    assert early.returncode == 1 and "review" in early.stderr
    reviewed = hall(
        "risk", "review", no, "--by", "officer-li", "--cause", "school holiday", "--what-worked", "marshals",
        "--what-changes", "appointments in holidays",
    )
    assert reviewed.returncode == 0, reviewed.stderr
    resolved = hall("risk", "resolve", no, "--officer", "officer-li", "--summary", "queue cleared")
    assert resolved.returncode == 0 and re.search(r"state\s+resolved", resolved.stdout)
    register = json.loads(hall("risk", "list", "--department", "market-regulation", "-o", "json").stdout)
    assert next(r for r in register if r["risk_no"] == no)["state"] == "resolved"


async def test_every_ui_filter_in_the_readme_runs_and_finds_its_workflows(hall, dev_server):
    """The README's "find it in the UI" filters, run against the dev server on cases made for them."""
    import asyncio
    import re

    run = time.time_ns()
    full = "business-licence-application,articles-of-association,shareholder-qualification,legal-representative-appointment"
    common = ("--hall", "hall-central", "--clerk", "clerk-01")
    deferred, consulting, panel, fund = (f"UI-{run}-{n}" for n in ("D", "C", "P", "F"))
    assert hall("case", "start", "--case-no", deferred, "--matter", "enterprise-opening", *common, "--applicant-id", "app-ui-1",
                "--materials", full + ",seal-engraving-form", "--commitment-signed").returncode == 0
    assert hall("case", "start", "--case-no", consulting, "--matter", "real-estate-registration", *common, "--applicant-id",
                "app-ui-2", "--materials", "registration-application,applicant-identity,ownership-source-proof,"
                "tax-payment-proof,cadastral-survey-report,marital-status-proof").returncode == 0
    assert hall("case", "start", "--case-no", panel, "--matter", "enterprise-opening", *common, "--applicant-id", "app-ui-3",
                "--materials", full + ",residence-proof,seal-engraving-form").returncode == 0
    assert wait_for(lambda: hall("case", "review", panel, "--reviewer", "officer-li", "--decision", "approve").returncode == 0)
    assert hall("case", "start", "--case-no", fund, "--matter", "housing-fund-withdrawal", *common, "--applicant-id", "app-ui-4",
                "--materials", "withdrawal-application,applicant-identity,purchase-proof,bank-card").returncode == 0
    assert wait_for(lambda: hall("case", "rate", fund, "--score", "1", "--channel", "web").returncode == 0)
    # A rating of a market-regulation case starts that department's satisfaction watch.
    rated = f"UI-{run}-G"
    assert hall("case", "start", "--case-no", rated, "--matter", "enterprise-opening", *common, "--applicant-id", "app-ui-5",
                "--materials", full + ",residence-proof,seal-engraving-form").returncode == 0
    assert wait_for(lambda: hall("case", "review", rated, "--reviewer", "officer-li", "--decision", "approve").returncode == 0)
    for member in ("officer-zhao", "officer-chen"):
        assert wait_for(lambda: hall("case", "vote", rated, "--member", member, "--choice", "approve").returncode == 0)
    assert wait_for(lambda: hall("case", "rate", rated, "--score", "4", "--channel", "window").returncode == 0)
    assert hall("feedback", "suggest", "--no", f"UI-{run}-S", "--submitter-id", "c-ui", "--topic", "t", "--content", "c",
                "--department", "market-regulation").returncode == 0
    assert hall("risk", "report", "--no", f"UI-{run}-R", "--type", "technology", "--title", "readers down", "--probability",
                "0.9", "--impact", "high", "--department", "market-regulation", "--owner", "officer-li").returncode == 0

    # What each filter must find (at least); the others must run and may find nothing here.
    expected = {
        "MaterialsPending = true": f"case-{deferred}",
        'CaseStage = "awaiting_review" AND Department': f"case-{deferred}",
        'CaseStage = "consulting"': f"case-{consulting}",
        'CaseStage = "in_panel"': f"case-{panel}",
        '"RectificationWorkflow" AND ExecutionStatus': f"rectification-{fund}",
        '"SuggestionWorkflow" AND FeedbackStage': f"suggestion-UI-{run}-S",
        '"RiskWorkflow" AND RiskLevel = "red"': f"risk-UI-{run}-R",
        'WorkflowId = "satisfaction-market-regulation"': "satisfaction-market-regulation",
        'Hall = "hall-central"': f"case-{deferred}",
    }
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Find it in the Web UI")[1].split("\n## ")[0]
    filters = re.findall(r"^\| [^|]+ \| `([^`]+)`", section, re.M)
    assert len(filters) >= 12

    async def ids(query: str) -> set[str]:
        return {wf.id async for wf in dev_server.client.list_workflows(query)}

    async def check() -> dict[str, str]:
        missing = {}
        for query in filters:
            found = await ids(query)  # an invalid filter raises here
            want = next((wf for key, wf in expected.items() if key in query), None)
            if want and want not in found:
                missing[query] = want
        return missing

    for _ in range(50):  # visibility catches up within a moment
        missing = await check()
        if not missing:
            break
        await asyncio.sleep(0.2)
    assert not missing, missing
    assert all(any(key in q for q in filters) for key in expected)


def test_inbox_lists_what_waits_on_an_officer_or_a_department_oldest_due_first(hall):
    run = time.time_ns()
    case_no, deferred_no = f"IN-{run}-A", f"IN-{run}-B"
    full = "business-licence-application,articles-of-association,shareholder-qualification,legal-representative-appointment"
    common = ("--matter", "enterprise-opening", "--hall", "hall-central", "--clerk", "clerk-01")
    assert hall("case", "start", "--case-no", case_no, *common, "--applicant-id", "app-in-1",
                "--materials", full + ",residence-proof,seal-engraving-form").returncode == 0
    assert hall("case", "start", "--case-no", deferred_no, *common, "--applicant-id", "app-in-2",
                "--materials", full + ",seal-engraving-form", "--commitment-signed").returncode == 0
    assert hall("feedback", "suggest", "--no", f"IN-{run}-S", "--submitter-id", "c-in", "--topic", "t", "--content", "c",
                "--department", "market-regulation").returncode == 0
    assert hall("risk", "report", "--no", f"IN-{run}-R", "--type", "social", "--title", "queue", "--probability", "0.5",
                "--impact", "medium", "--department", "market-regulation", "--owner", "officer-li").returncode == 0

    def inbox(*who):
        answer = hall("operator", "inbox", *who, "-o", "json")
        assert answer.returncode == 0, answer.stderr
        return json.loads(answer.stdout)

    def ids(rows):
        return {r["workflow_id"] for r in rows}

    mine = {f"case-{case_no}", f"case-{deferred_no}", f"risk-IN-{run}-R"}
    rows = wait_for(lambda: (r := inbox("--actor", "officer-li")) and mine <= ids(r) and r)
    assert mine <= ids(rows), rows
    dues = [r["due_at"] for r in rows if r["due_at"]]
    assert dues == sorted(dues)  # oldest due first
    case_row = next(r for r in rows if r["workflow_id"] == f"case-{case_no}")
    assert case_row["stage"] == "awaiting_review" and case_row["waiting_on"] == ["officer-li"]
    assert case_row["link"].endswith(f"/workflows/case-{case_no}")

    # The applicant owes the deferred material; the department owes the suggestion's answer.
    assert ids(inbox("--actor", "applicant:app-in-2")) == {f"case-{deferred_no}"}
    department = wait_for(lambda: (r := inbox("--department", "market-regulation")) and f"suggestion-IN-{run}-S" in ids(r) and r)
    assert mine | {f"suggestion-IN-{run}-S"} <= ids(department)

    # The review moves the case to the panel: off the reviewer's list, onto the members'.
    assert hall("case", "review", case_no, "--reviewer", "officer-li", "--decision", "approve").returncode == 0
    assert wait_for(lambda: f"case-{case_no}" in ids(inbox("--actor", "officer-zhao")))
    assert f"case-{case_no}" not in ids(inbox("--actor", "officer-li"))
    bad = hall("operator", "inbox", "--actor", 'x" OR WorkflowId != "')
    assert bad.returncode == 2 and "invalid actor" in bad.stderr


def test_the_demo_runs_a_day_and_the_report_reads_it_back(hall, tmp_path):
    day = hall("operator", "demo")
    assert day.returncode == 0, day.stderr
    assert "14/14" in day.stderr  # the progress bar reached the end
    assert "KPI report" in day.stdout and "Ratings (好差评)" in day.stdout
    assert "WorkflowId%20STARTS_WITH%20%22case-DEMO-" in day.stdout  # a UI link to the demo's cases

    chart = tmp_path / "report.png"
    answer = hall("operator", "report", "-o", "json", "--chart", str(chart))
    assert answer.returncode == 0, answer.stderr
    figures = json.loads(answer.stdout)
    assert figures["cases"]["received"] >= 12 and figures["cases"]["decided_automatically"] >= 2
    # The demo's two bad reviews: one rectified, one set aside; other tests add their own.
    assert figures["ratings"]["bad_reviews"] >= 2 and figures["ratings"]["rectified"] >= 1
    assert figures["ratings"]["set_aside"] >= 1 and figures["suggestions"]["adopted"] >= 1
    assert chart.stat().st_size > 10_000 and chart.read_bytes()[:4] == b"\x89PNG"
    backwards = hall("operator", "report", "--from", "2026-12-31", "--to", "2026-01-01")
    assert backwards.returncode == 2 and "after it ends" in backwards.stderr
