"""starter.py's answers as a person reads them, without a server: nothing is cut off on a narrow
terminal or in a pipe, and every command takes `-o`."""

import io
import json
import re
from datetime import datetime, timedelta, timezone

import pytest
import typer
from rich.console import Console

import demo
from cli import render
from cli.app import app, main
from contract.approval import Decision
from contract.case import CaseStage, CaseStatus, Event
from contract.risk import Level, RiskEntry, RiskState
from contract.suggestion import Publication
from settings import get_settings

NOW = datetime(2026, 12, 1, 9, 30, tzinfo=timezone.utc)
WIDTHS = (24, 40, 60, 80, 120, 200)


def shown(renderables, width: int) -> str:
    out = io.StringIO()
    console = Console(file=out, width=width, color_system=None)
    for r in renderables if isinstance(renderables, list) else [renderables]:
        console.print(r)
    return "".join(line.rstrip() + "\n" for line in out.getvalue().splitlines())  # as render.show writes it


def assert_nothing_cut(text: str, values: list[str], width: int, label_width: int) -> None:
    """No ellipsis; a word is split only when longer than the room a value has on the line."""
    assert "…" not in text
    room = width - label_width - 2
    for value in values:
        for word in value.split():
            if len(word) <= room:
                assert word in text, (word, width, text)
    assert sum(not c.isspace() for c in text) >= sum(not c.isspace() for v in values for c in v)


INBOX = [
    {
        "due_at": (NOW + timedelta(hours=n)).isoformat(), "workflow_id": wf, "type": kind, "stage": stage,
        "waiting_on": waiting, "overdue": n == 0, "link": f"http://127.0.0.1:8233/namespaces/default/workflows/{wf}",
    }
    for n, (wf, kind, stage, waiting) in enumerate(
        [
            ("rectification-DEMO-20261130110232-02", "RectificationWorkflow", "verifying", ["market-regulation"]),
            ("case-DEMO-20261130110232-12", "CaseWorkflow", "awaiting_review",
             ["applicant:app-demo-20261130110232-12", "officer-li"]),
            ("risk-R-0001", "RiskWorkflow", "awaiting_acknowledgement", ["officer-li", "market-regulation"]),
        ]
    )
]
RISKS = [
    RiskEntry(risk_no="R-0001", source="manual", type="social", title="crowd at the hall entrance after the holiday",
              responsible_department="market-regulation", owner="officer-li", level=Level.RED,
              state=RiskState.HANDLING, reported_at=NOW, escalations=2),
    RiskEntry(risk_no="R-DEMO-20261130110232", source="manual", type="execution",
              title="queue system down at windows 3-5", responsible_department="natural-resources",
              owner="officer-zhou", level=Level.YELLOW, state=RiskState.AWAITING_ACKNOWLEDGEMENT, reported_at=NOW),
]
PUBLISHED = [
    Publication(suggestion_no="SUG-0001", topic="more seats in the waiting area", department="market-regulation",
                complexity="general", adopted=False, reason="no room until the hall moves to its new building",
                submitted_at=NOW, answered_at=NOW, on_time=True),
    Publication(suggestion_no="SUG-DEMO-20261130110232", topic="evening hours on Thursdays",
                department="natural-resources", complexity="general", adopted=True,
                measures="windows 1-4 open until 20:00 from January", submitted_at=NOW, answered_at=NOW, on_time=False),
]
UI = "http://127.0.0.1:8233/namespaces/default/workflows"


def lists() -> dict[str, tuple[list, list[str], list[str], list[str]]]:
    """Each list as shown, its headers, its ids (broken after - _ : / or , when narrow) and its prose."""
    return {
        "operator inbox": (
            render.inbox(INBOX, "officer-li", UI), ["due", "workflow", "stage", "waiting on"],
            [w for r in INBOX for w in (r["workflow_id"], r["stage"], *r["waiting_on"])], [],
        ),
        "feedback open": (
            render.open_feedback(INBOX, "market-regulation"), ["due", "workflow", "type", "stage"],
            [w for r in INBOX for w in (r["workflow_id"], r["stage"])], ["rectification", "case", "risk"],
        ),
        "risk list": (
            render.risks(RISKS),
            ["risk", "level", "state", "title", "department", "owner", "reported", "escalations"],
            [w for e in RISKS for w in (e.risk_no, e.state.value, e.responsible_department, e.owner)],
            [w for e in RISKS for w in (e.title, e.level.value)],
        ),
        "feedback published": (
            render.published(PUBLISHED),
            ["suggestion", "topic", "department", "adopted", "measures or reason", "answered", "on time"],
            [w for p in PUBLISHED for w in (p.suggestion_no, p.department)],
            [w for p in PUBLISHED for w in (p.topic, p.measures or p.reason)],
        ),
    }


def assert_no_word_cut(text: str, ids: list[str], prose: list[str], room: int) -> None:
    """No "…"; a word of prose is never split, an id only after - _ : / or , (or folded when a piece
    is longer than the room it has); no character is lost."""
    assert "…" not in text
    for word in (w for value in prose for w in value.split()):
        if len(word) <= room:
            assert word in text, (word, text)
    for piece in (p for value in ids for w in value.split() for p in render.BREAKS.findall(w)):
        if len(piece) <= room:
            assert piece in text, (piece, text)
    assert sum(not c.isspace() for c in text) >= sum(not c.isspace() for v in ids + prose for c in v)


@pytest.mark.parametrize("width", WIDTHS)
def test_lists_never_cut_a_word(width):
    for name, (renderables, _, ids, prose) in lists().items():
        room = width - len("measures or reason") - 2 if width < 60 else render.FOLD_MIN
        assert_no_word_cut(shown(renderables, width), ids, prose, room)


@pytest.mark.parametrize("width", (80, 100, 120, 200))
def test_lists_are_tables_at_80_columns_and_wider(width):
    """A header line, a rule, then the rows; a column of little use left out when narrow is named."""
    for name, (renderables, headers, _, _) in lists().items():
        text = shown(renderables, width)
        lines = text.splitlines()
        rule = next((n for n, line in enumerate(lines[:3]) if set(line) == {"─"}), None)
        assert rule is not None, (name, text)  # under a header of a line or two
        left_out = re.search(r"^not shown at this width: (.*) \(-o json has every field\)$", text, re.M)
        left_out = left_out.group(1).split(", ") if left_out else []
        kept = [h for h in headers if h not in left_out]
        assert sorted(" ".join(lines[:rule]).split()) == sorted(w for h in kept for w in h.split()), (name, text)
        last = [h.split()[-1] for h in kept]  # each header ends on the line above the rule, in order
        assert [w for w in lines[rule - 1].split() if w in last] == last, (name, text)
        assert max(map(len, text.splitlines())) <= width
        if width >= 200:
            assert not left_out
        assert {"escalations"} <= set(left_out) or name != "risk list" or width > 100, text


def test_a_list_is_a_table_when_it_fits_and_labelled_lines_when_very_narrow():
    wide, narrow = shown(render.risks(RISKS), 200), shown(render.risks(RISKS), 40)
    assert wide.splitlines()[0].split() == ["risk", "level", "state", "title", "department", "owner", "reported",
                                            "escalations"]
    assert re.search(r"^R-0001 +red +handling +crowd at the hall entrance after the holiday +market-regulation", wide,
                     re.M)
    assert narrow.splitlines()[:3] == ["risk         R-0001", "level        red", "state        handling"]
    at_80 = shown(render.risks(RISKS), 80)
    assert at_80.splitlines()[0].split() == ["risk", "level", "state", "title", "department", "owner"]
    assert "not shown at this width: reported, escalations (-o json has every field)" in at_80


def test_a_list_as_json_is_the_rows_as_scripts_read_them(capsys):
    render.reply(render.Output.json, INBOX, lambda r: render.inbox(r, "officer-li", UI))
    assert json.loads(capsys.readouterr().out) == INBOX
    render.reply(render.Output.json, RISKS, render.risks)
    assert [RiskEntry.model_validate(r) for r in json.loads(capsys.readouterr().out)] == RISKS
    render.reply(render.Output.json, PUBLISHED, render.published)
    assert [Publication.model_validate(p) for p in json.loads(capsys.readouterr().out)] == PUBLISHED


@pytest.mark.parametrize("width", (40, 80))
def test_a_case_status_reads_as_labelled_lines_in_local_time(width):
    status = CaseStatus(
        case_no="DEMO-20261130-1904", stage=CaseStage.IN_PANEL, matter_code="enterprise-opening",
        matter_name="企业开办", department="market-regulation", hall="hall-central", accepted_at=NOW,
        promised_due_at=NOW + timedelta(days=1), statutory_due_at=NOW + timedelta(days=7), working_days_used=0,
        working_days_left=1, missing_materials=["residence-proof"], deferral_due_at=NOW + timedelta(days=1),
        waiting_on=["officer-zhao", "officer-chen", "applicant:app-demo-0001"], warning="yellow",
        decision=Decision(result="approve", by="panel", at=NOW, reasons="all members approve"),
        last_events=[Event(at=NOW, action="received", actor="clerk-01"),
                     Event(at=NOW, action="reviewed", actor="officer-li", reason="lawful and complete")],
    )
    text = shown(render.case_status(status), width)
    lines, words = text.splitlines(), " ".join(text.split())
    assert "stage          in_panel" in lines and "department     market-regulation" in lines
    assert "promised due   2026-12-02 17:30" in lines and "statutory due  2026-12-08 17:30" in lines
    assert "accepted 2026-12-01 17:30 (times in Asia/Shanghai)" in words
    assert "warning yellow: 80% of the promised limit used" in words
    assert "decision approved by panel, 2026-12-01 17:30: all members approve" in words
    assert_nothing_cut(text, ["officer-zhao, officer-chen, applicant:app-demo-0001", "lawful and complete",
                              "residence-proof (deferred, due 2026-12-02 17:30)"], width, len("statutory due"))


@pytest.mark.parametrize("width", (40, 60, 100, 200))
def test_the_demo_labels_wrap_at_spaces_and_are_never_cut_mid_word(width):
    day = demo.Day(None, get_settings(), demo.Starters(None, None, None))
    for label, _ in day.script():
        out = io.StringIO()
        bar = demo.progress_bar(Console(file=out, width=width, color_system=None))
        task = bar.add_task(label, total=14, completed=5)
        bar.console.print(bar.get_renderable())
        text = out.getvalue()
        if len(label) < width / 2:
            assert len(text.splitlines()) == 1  # beside the bar while it fits
        assert "…" not in text and "5/14" in text
        assert all(word in text for word in label.split()), (label, text)
        bar.remove_task(task)


def test_every_command_takes_dash_o():
    leaves = []

    def walk(command, path):
        children = getattr(command, "commands", None)
        if children:
            for name, child in children.items():
                walk(child, path + [name])
        else:
            leaves.append((" ".join(path), {opt for p in command.params for opt in p.opts}))

    walk(typer.main.get_command(app), [])
    # case, feedback, risk, operator, admin (setup, schema, dev-calendar, keys new, directory
    # check, directory publish, data-key new|use|list), audit (verify, heads), sign and codec-server.
    assert len(leaves) == 11 + 8 + 7 + 3 + 9 + 2 + 1 + 1
    # `sign` prints the hallflow-actor header line for the temporal CLI's --headers: no data to
    # format; `codec-server` serves until stopped.
    NO_OUTPUT = {"sign", "codec-server"}
    assert NO_OUTPUT <= {path for path, _ in leaves}
    assert [path for path, options in leaves if path not in NO_OUTPUT and not {"-o", "--output"} <= options] == []


def test_a_usage_error_exits_2(capsys):
    assert main(["case", "vote", "DEMO-1", "--member", "officer-zhao", "--choice", "maybe"]) == 2
    assert "Invalid value for '--choice'" in capsys.readouterr().err
    assert main(["case", "start", "--case-no", "DEMO-1", "--matter", "enterprise-opening"]) == 2
    assert capsys.readouterr().err.strip() == "start needs --file, or all of: --hall, --clerk, --applicant-id"


def test_a_command_logs_nothing_below_warning_unless_hallflow_log_level_says(monkeypatch):
    """A person reads the answer, not JSON log lines on stderr ('case_started' is a debug line now);
    HALLFLOW_LOG_LEVEL, when set, wins (the worker's default INFO does not apply to a command)."""
    from cli.app import log_level
    from settings import Settings

    monkeypatch.delenv("HALLFLOW_LOG_LEVEL", raising=False)
    assert log_level(Settings()) == "WARNING"
    monkeypatch.setenv("HALLFLOW_LOG_LEVEL", "INFO")
    assert log_level(Settings()) == "INFO"


def _help_paths() -> list[list[str]]:
    paths = []

    def walk(command, path):
        paths.append(path)
        for name, child in (getattr(command, "commands", None) or {}).items():
            walk(child, path + [name])

    walk(typer.main.get_command(app), [])
    return paths


@pytest.mark.parametrize("width", (80, 100, 120))
def test_no_help_is_cut_and_each_command_lists_on_one_line(width):
    """Every group's listing gives each command one line at 80 columns (wider only adds room), so
    Rich never cuts a help line with "…" (it does, at some widths, when a line with CJK wraps)."""
    from typer.testing import CliRunner

    runner = CliRunner()
    for path in _help_paths():
        out = runner.invoke(app, [*path, "--help"], terminal_width=width, env={"COLUMNS": str(width)}).output
        assert "…" not in out, (path, out)
        for panel in ("─ Commands ─", "─ Tools ─"):
            if panel in out:
                listing = out.split(panel)[1].split("╰")[0].splitlines()[1:]
                assert listing and all(line.startswith("│ ") and line[2] != " " for line in listing), (path, out)


def test_the_five_groups_come_first_and_the_tools_apart():
    from typer.testing import CliRunner

    out = CliRunner().invoke(app, ["--help"], terminal_width=80, env={"COLUMNS": "80"}).output
    commands, tools = out.split("─ Commands ─")[1].split("╰")[0], out.split("─ Tools ─")[1].split("╰")[0]
    names = lambda panel: [line.split()[1] for line in panel.splitlines()[1:]]  # noqa: E731
    assert names(commands) == ["case", "feedback", "risk", "operator", "admin"]
    assert names(tools) == ["sign", "codec-server", "audit"]
