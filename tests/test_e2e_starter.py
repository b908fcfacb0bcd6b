"""starter.py as the README shows it: its example commands, run in order against the dev server
and worker, answer people in labelled lines and tables and scripts in JSON (`-o json`); a
refusal is one line naming the workflow's error type; a mistyped command exits 2."""

import json
import re
import shlex
import subprocess
import sys
import time

import pytest

from settings import ROOT
from tests.e2e_fixtures import stage_of, wait_for

pytestmark = pytest.mark.e2e

WHEN = r"\d{4}-\d\d-\d\d \d\d:\d\d"  # a local time as shown: 2026-12-01 17:30


def readme_commands() -> list[list[str]]:
    """The README's block after "Then, with the case number it printed", one argv per command."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("Then, with the case number it printed:")[1].split("```sh\n")[1].split("```")[0]
    commands = []
    for line in block.replace("\\\n", "").splitlines():  # bash joins a continued line as it is
        words = shlex.split(line, comments=True)
        if words:
            assert words[:2] == [".venv/bin/python", "starter.py"], line
            commands.append(words[2:])
    return commands


# What a person reads in each answer (lines of the output, as regular expressions); <case> is the
# DEMO case, <other>, <suggestion> and <risk> the README's HALL-0002, SUG-0001 and R-0001.
HUMAN = {
    "case status": [
        r"^case +<case>$", r"^stage +awaiting_review$", r"^matter +enterprise-opening \(企业开办\)$",
        r"^department +market-regulation$", rf"^accepted +{WHEN} \(times in Asia/Shanghai\)$",
        rf"^promised due +{WHEN}$", rf"^statutory due +{WHEN}$", r"^working days +\d+ used, \d+ left$",
        rf"^missing +residence-proof \(deferred, due {WHEN}\)$", r"^waiting on +.*officer-li",
        r"^last events +\d\d-\d\d \d\d:\d\d  received by clerk-01$",
    ],
    "operator inbox --actor": [
        r"^due +workflow +stage +waiting on$",
        rf"^{WHEN} +case-<case> +awaiting_review +.*officer-li",
        r"^\d+ waiting on officer-li, soonest due first; times in Asia/Shanghai; open one: "
        r"http://\S+/workflows/<workflow>$",
    ],
    "case review": [r"^case <case>: officer-li decided approve$", r"^stage +\w+$"],
    "case vote": [r"^case <case>: officer-\w+ voted approve$", r"^stage +\w+$"],
    "case supplement": [r"^case <case>: materials received$", r"^complete +yes$"],
    "case rate": [r"^case <case>: rated 2$", r"^stage +approved$", r"^rating +2 of 5 \(dissatisfied\)$"],
    "operator inbox --department": [rf"^{WHEN} +rectification-<case> +verifying +market-regulation$"],
    "feedback open": [
        r"^due +workflow +type +stage$",
        rf"^{WHEN} +rectification-<case> +rectification +verifying$",
        r"^times in Asia/Shanghai$",
    ],
    "feedback verify": [r"^rectification of case <case>: verified by officer-li$", r"^stage +rectifying$"],
    "feedback rectify": [r"^rectification of case <case>: rectified by officer-li$", r"^stage +rectified$"],
    "case start": [r"^case <other> started: workflow id case-<other>$", r"^http://\S+/workflows/case-<other>$"],
    "case withdraw": [r"^case <other>: withdrawn$", r"^reason +moved away$"],
    "feedback suggest": [r"^suggestion <suggestion> submitted: workflow id suggestion-<suggestion>$"],
    "feedback respond": [
        r"^suggestion <suggestion>: answered by officer-li: not adopted$", r"^stage +answered$",
        r"^answer +not adopted: no room until the hall moves$",
    ],
    "feedback published": [
        r"^suggestion +topic +department +adopted +measures or reason +answered +on time$",
        rf"^<suggestion> +more seats +market-regulation +no +no room until the hall moves +{WHEN} +yes$",
    ],
    "risk report": [r"^risk <risk> reported: workflow id risk-<risk>$", r"^http://\S+/workflows/risk-<risk>$"],
    "risk list": [
        r"^risk +level +state +title +department +owner +reported +escalations$",
        rf"^<risk> +red +\w+ +crowd at the hall entrance after the holiday +market-regulation +officer-li +{WHEN} +\d+$",
        r"^times in Asia/Shanghai$",
    ],
    "--help": [r"\bcase\b", r"\bfeedback\b", r"\brisk\b", r"\boperator\b", r"\badmin\b"],
}

LISTS = ("operator inbox --actor", "operator inbox --department", "feedback open", "feedback published", "risk list")

CASE_STATUS = {"case_no", "stage", "matter_code", "department", "promised_due_at", "statutory_due_at",
               "working_days_used", "working_days_left", "missing_materials", "waiting_on", "last_events"}
RECTIFICATION = {"case_no", "department", "stage", "due_at", "overdue"}
SUGGESTION = {"suggestion_no", "department", "stage", "due_at", "answer"}


def _rows(keys: set[str], must=lambda rows: True):
    return lambda rows: isinstance(rows, list) and all(set(r) == keys for r in rows) and must(rows)


# What a script reads: the JSON's documented keys (README, "-o json").
JSON = {
    "case status": lambda a, n: CASE_STATUS <= set(a) and a["stage"] == "awaiting_review"
    and a["missing_materials"] == ["residence-proof"],
    "operator inbox --actor": lambda a, n: _rows(
        {"due_at", "workflow_id", "type", "stage", "waiting_on", "overdue", "link"},
        lambda rows: any(r["workflow_id"] == f"case-{n['case']}" and "officer-li" in r["waiting_on"] for r in rows),
    )(a),
    "case review": lambda a, n: CASE_STATUS <= set(a),
    "case vote": lambda a, n: CASE_STATUS <= set(a) and any(v["choice"] == "approve" for v in a["votes"]),
    "case supplement": lambda a, n: set(a) == {"still_missing", "complete", "not_used"} and a["complete"],
    "case rate": lambda a, n: CASE_STATUS <= set(a) and a["rating"] == 2,
    "operator inbox --department": lambda a, n: any(r["workflow_id"] == f"rectification-{n['case']}" for r in a),
    "feedback open": lambda a, n: _rows(
        {"workflow_id", "type", "stage", "due_at", "overdue"},
        lambda rows: {"workflow_id": f"rectification-{n['case']}", "stage": "verifying"}.items()
        <= next(r for r in rows if r["workflow_id"].endswith(n["case"])).items(),
    )(a),
    "feedback verify": lambda a, n: RECTIFICATION <= set(a) and a["stage"] == "rectifying",
    "feedback rectify": lambda a, n: RECTIFICATION <= set(a) and a["stage"] == "rectified",
    "case start": lambda a, n: set(a) == {"case_no", "workflow_id", "link"}
    and a["workflow_id"] == f"case-{n['other']}",
    "case withdraw": lambda a, n: {"case_no", "stage", "reason"} <= set(a) and a["stage"] == "withdrawn",
    "feedback suggest": lambda a, n: set(a) == {"suggestion_no", "workflow_id", "link"},
    "feedback respond": lambda a, n: SUGGESTION <= set(a) and a["answer"]["adopted"] is False,
    "feedback published": lambda a, n: any(
        {"suggestion_no", "topic", "department", "adopted", "reason", "measures", "answered_at", "on_time"} <= set(r)
        and r["suggestion_no"] == n["suggestion"] and "citizen-1" not in json.dumps(r)
        for r in a
    ),
    "risk report": lambda a, n: set(a) == {"risk_no", "workflow_id", "link"} and a["workflow_id"] == f"risk-{n['risk']}",
    "risk list": lambda a, n: any(
        {"risk_no", "level", "state", "title", "responsible_department", "owner", "reported_at", "escalations"}
        <= set(r) and r["risk_no"] == n["risk"] and r["level"] == "red"
        for r in a
    ),
}


def _key(argv: list[str]) -> str:
    if argv[0] == "--help":
        return "--help"
    key = " ".join(argv[:2])
    return f"{key} {argv[2]}" if key == "operator inbox" else key


def _start_demo_case(hall, case_no: str) -> None:
    """What `make run` does: the example application under a new number."""
    started = hall("case", "start", "--file", "docs/examples/case-enterprise-opening.json", "--case-no", case_no)
    assert started.returncode == 0, started.stderr
    assert wait_for(lambda: stage_of(hall, case_no) == "awaiting_review")


def _run_readme(hall, numbers: dict[str, str], output: list[str]) -> dict[str, str]:
    """Each README command in order, polled as a person rereads until the answer is there."""
    answers = {}
    for argv in readme_commands():
        argv = [numbers["case"] if a == "DEMO-..." else numbers["other"] if a == "HALL-0002"
                else numbers["suggestion"] if a == "SUG-0001" else numbers["risk"] if a == "R-0001" else a
                for a in argv]
        key = _key(argv)
        argv = argv + ([] if key == "--help" else output)
        for _ in range(100):
            ran = hall(*argv)
            if ran.returncode == 0 and _reads(key, ran.stdout, numbers, bool(output)):
                break
            time.sleep(0.2)
        assert ran.returncode == 0 and _reads(key, ran.stdout, numbers, bool(output)), (argv, ran.stdout, ran.stderr)
        assert ran.stderr == "", (argv, ran.stderr)  # no log line under the answer
        answers[key] = ran.stdout
        if key in LISTS and not output:
            _assert_a_table_at_80_columns(hall, key, argv)
    assert set(answers) == set(HUMAN)  # every README command was checked
    return answers


def _reads(key: str, stdout: str, numbers: dict[str, str], as_json: bool) -> bool:
    if as_json and key != "--help":
        try:
            return bool(JSON[key](json.loads(stdout), numbers))
        except (ValueError, KeyError, StopIteration):  # not (yet) what the script expects
            return False
    patterns = []
    for pattern in HUMAN[key]:
        for name, value in numbers.items():
            pattern = pattern.replace(f"<{name}>", re.escape(value))
        patterns.append(pattern)
    return all(re.search(p, stdout, re.M) for p in patterns)


def _numbers() -> dict[str, str]:
    run = time.time_ns()
    return {"case": f"DEMO-{run}", "other": f"HALL-{run}", "suggestion": f"SUG-{run}", "risk": f"R-{run}"}


def test_the_readme_commands_answer_people_in_lines_and_tables(hall):
    numbers = _numbers()
    _start_demo_case(hall, numbers["case"])
    answers = _run_readme(hall, numbers, [])
    assert "{" not in answers["case status"] and "…" not in "".join(answers.values())

    _assert_a_table_at_80_columns(hall, "operator report", ["operator", "report"])


def _assert_a_table_at_80_columns(hall, key: str, argv: list[str]) -> None:
    """On an 80-column terminal a list is still a table (a header, a rule), nothing cut, no log."""
    ran = subprocess.run([sys.executable, "starter.py", *argv], cwd=ROOT, env={**hall.env, "COLUMNS": "80"},
                         capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0 and ran.stderr == "", (key, ran.stderr)
    lines = ran.stdout.splitlines()
    assert "…" not in ran.stdout and max(map(len, lines)) <= 80, (key, ran.stdout)
    assert any(set(line) == {"─"} for line in lines), (key, ran.stdout)


def test_the_readme_commands_answer_scripts_in_json(hall):
    numbers = _numbers()
    _start_demo_case(hall, numbers["case"])
    _run_readme(hall, numbers, ["-o", "json"])


def test_a_refusal_is_one_line_naming_the_error_and_exits_1(hall):
    case_no = f"DEMO-{time.time_ns()}"
    _start_demo_case(hall, case_no)
    for output in ([], ["-o", "json"]):
        refused = hall("case", "review", case_no, "--reviewer", "officer-wang", "--decision", "approve", *output)
        assert refused.returncode == 1 and refused.stdout == ""
        assert refused.stderr.splitlines() == [refused.stderr.strip()]
        assert refused.stderr.startswith(f"refused (NotReviewer): case {case_no} is assigned to officer-li")

    refused = hall("case", "supplement", case_no, "--materials", "passport", "--by", "clerk-01")
    assert refused.returncode == 1 and len(refused.stderr.splitlines()) == 1 and "passport" in refused.stderr


def test_a_mistyped_command_or_flag_exits_2_and_says_what_is_wrong(hall):
    def said(ran) -> str:  # Typer's error panel, as one line of words
        return " ".join(re.sub("[│╭╮╰╯─]", " ", ran.stderr).split())

    old = hall("vote", "DEMO-0001", "--member", "officer-zhao", "--choice", "approve")  # before the groups
    assert old.returncode == 2 and "No such command 'vote'" in said(old)
    choice = hall("case", "vote", "DEMO-0001", "--member", "officer-zhao", "--choice", "maybe")
    assert choice.returncode == 2 and "Invalid value for '--choice'" in said(choice) and "maybe" in said(choice)
    assert "Try 'starter.py case vote --help' for help." in said(choice)
    both = hall("operator", "inbox", "--actor", "officer-li", "--department", "market-regulation")
    assert both.returncode == 2 and "give one of --actor or --department" in said(both)
