"""How the commands' answers read: labelled lines and tables for people, JSON for scripts.

Colour only on a terminal (Rich decides). Nothing is ever cut off: cells wrap at spaces and
fold a word longer than their column, never "…"; off a terminal the lines are as wide as their
content unless COLUMNS says otherwise.
"""

import json
import os
import sys
from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated

import typer
from pydantic import BaseModel
from rich import box
from rich.console import Console, ConsoleOptions, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from contract.case import CaseOutcome, CaseStatus, SupplementResult
from contract.common import SHANGHAI
from contract.rating import RectificationStatus
from contract.risk import RiskEntry, RiskStatus
from contract.suggestion import Publication, SuggestionStatus

UNBOUNDED = 10_000  # "as wide as the content" for a pipe or a file
SCORES = {5: "very satisfied", 4: "satisfied", 3: "basically satisfied", 2: "dissatisfied", 1: "very dissatisfied"}
LEVEL_STYLES = {"red": "bold red", "yellow": "yellow", "blue": "blue"}


class Output(StrEnum):
    text = "text"
    json = "json"


# `-o/--output` on every command, as in the `temporal` CLI.
OutputFlag = Annotated[Output, typer.Option("-o", "--output", help="text for people, json for scripts")]


def console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    wide = not stream.isatty() and "COLUMNS" not in os.environ
    return Console(file=stream, width=UNBOUNDED if wide else None, highlight=False)


def show(*renderables: RenderableType | str) -> None:
    out = console()
    # Text as-is: a bracket in an officer's note is not markup.
    items = [Text(r) if isinstance(r, str) else r for r in renderables]
    if out.is_terminal:
        out.print(*items, sep="\n")
        return
    with out.capture() as captured:  # a file or a pipe: no padding after the last word
        out.print(*items, sep="\n")
    sys.stdout.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))


def dump(answer: BaseModel | list | dict) -> None:
    """The machine-readable form, as scripts have always read it."""
    if isinstance(answer, BaseModel):
        text = answer.model_dump_json(indent=2)
    elif isinstance(answer, dict):
        text = json.dumps(answer, indent=2, ensure_ascii=False)
    else:
        rows = [a.model_dump(mode="json") if isinstance(a, BaseModel) else a for a in answer]
        text = json.dumps(rows, indent=2, ensure_ascii=False)
    sys.stdout.write(text + "\n")


def reply(output: Output, answer, human) -> None:
    """`-o json`: the answer as JSON; otherwise what `human(answer)` says (one renderable or a list)."""
    if output is Output.json:
        dump(answer)
        return
    said = human(answer)
    show(*(said if isinstance(said, list) else [said]))


def refusal(message: str) -> None:
    """Why hallflow said no: one line on stderr, never wrapped."""
    console(stderr=True).print(Text(message, style="red"), soft_wrap=True)


def warn(message: str) -> None:
    console(stderr=True).print(Text(message, style="yellow"), soft_wrap=True)


def local(at: datetime | None) -> str:
    """Asia/Shanghai time; a working-day limit ends at 24:00, shown on its own day as people read it."""
    if not at:
        return "—"
    t = at.astimezone(SHANGHAI)
    if (t.hour, t.minute, t.second, t.microsecond) == (0, 0, 0, 0):
        return f"{t - timedelta(days=1):%Y-%m-%d} 24:00"
    return f"{t:%Y-%m-%d %H:%M}"


def _short(at: datetime) -> str:
    return at.astimezone(SHANGHAI).strftime("%m-%d %H:%M")


def lines(rows: Iterable[tuple[str, str | Text | None]]) -> Table:
    """Labelled lines: a label column and a value column that wraps; lines without a value are left out."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for label, value in rows:
        if value:
            grid.add_row(label, value if isinstance(value, Text) else Text(value))
    return grid


class Listing:
    """Rows under headers, in the `temporal` CLI's manner: a header, no borders. A table while
    each column's longest word fits side by side, else one block of labelled lines per row; a
    word is cut (folded) only when it is longer than the line itself."""

    GAP = 2  # between two columns: padding and divider

    def __init__(self, *headers: str) -> None:
        self.headers = headers
        self.rows: list[list[Text]] = []

    def add_row(self, *cells: str | Text) -> None:
        self.rows.append([c if isinstance(c, Text) else Text(c) for c in cells])

    def __rich_console__(self, console: Console, options: ConsoleOptions):
        columns = list(zip([Text(h) for h in self.headers], *self.rows))
        least = [max(Measurement.get(console, options, c).minimum for c in column) for column in columns]
        most = [max(Measurement.get(console, options, c).maximum for c in column) for column in columns]
        room = options.max_width - self.GAP * (len(columns) - 1)
        if sum(least) > room:
            for n, row in enumerate(self.rows):
                yield lines(zip(self.headers, row))
                if n < len(self.rows) - 1:
                    yield Text()
            return
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0), header_style="bold")
        for header, width in zip(self.headers, _fit(least, most, room)):
            table.add_column(header, width=width, overflow="fold")
        for row in self.rows:
            table.add_row(*row)
        yield table


def _fit(least: list[int], most: list[int], room: int) -> list[int]:
    """Column widths within `room`: the widest column that can still give gives one character at a time."""
    widths = list(most)
    while sum(widths) > room:
        i = max((i for i in range(len(widths)) if widths[i] > least[i]), key=lambda i: widths[i])
        widths[i] -= 1
    return widths


def level(value: str | None) -> Text:
    return Text(value or "", style=LEVEL_STYLES.get(value or "", ""))


# --- a case ---------------------------------------------------------------------------------------


def case_status(s: CaseStatus) -> Table:
    matter = f"{s.matter_code} ({s.matter_name})" if s.matter_name else s.matter_code
    days = None
    if s.working_days_used is not None or s.working_days_left is not None:
        days = f"{_n(s.working_days_used)} used, {_n(s.working_days_left)} left"
    missing = ", ".join(s.missing_materials)
    if missing and s.deferral_due_at:
        missing += f" (deferred, due {local(s.deferral_due_at)})"
    opinions = "; ".join(
        f"{c.department} {c.state.value}" + (f" by {c.officer}" if c.officer else f", due {local(c.due_at)}")
        for c in s.consultations
    )
    votes = ", ".join(f"{v.member} {v.choice}" for v in s.votes)
    if votes and s.vote_closes_at:
        votes += f" (closes {local(s.vote_closes_at)})"
    return lines(
        [
            ("case", s.case_no),
            ("stage", Text(s.stage.value, style="bold")),
            ("matter", matter),
            ("department", s.department),
            ("hall", s.hall),
            ("accepted", s.accepted_at and f"{local(s.accepted_at)} (times in Asia/Shanghai)"),
            ("promised due", s.promised_due_at and local(s.promised_due_at)),
            ("statutory due", s.statutory_due_at and local(s.statutory_due_at)),
            ("working days", days),
            ("missing", missing),
            ("waiting on", ", ".join(s.waiting_on)),
            ("opinions", opinions),
            ("votes", votes),
            ("warning", s.warning and warning(s.warning)),
            ("decision", s.decision and _decision(s.decision)),
            ("rating", _rating(s.rating, s.rating_open_until)),
            ("refused signals", s.refused_signal_count and str(s.refused_signal_count)),
            ("last events", _events(s.last_events)),
        ]
    )


def _n(value: int | None) -> str:
    return "—" if value is None else str(value)


def warning(value: str) -> Text:
    meaning = {"yellow": "80% of the promised limit used", "red": "past the promised limit"}.get(value, "")
    return Text(f"{value}: {meaning}" if meaning else value, style=LEVEL_STYLES.get(value, ""))


def _decision(d) -> str:
    result = {"approve": "approved", "reject": "rejected"}.get(d.result, d.result)
    return f"{result} by {d.by}, {local(d.at)}" + (f": {d.reasons}" if d.reasons else "")


def _rating(score: int | None, open_until: datetime | None) -> str | None:
    if score:
        return f"{score} of 5 ({SCORES.get(score, '')})"
    if open_until:
        return f"not yet; open until {local(open_until)}"
    return None


def _events(events, last: int = 5) -> Text | None:
    if not events:
        return None
    shown = [
        f"{_short(e.at)}  {e.action}" + (f" by {e.actor}" if e.actor else "") + (f": {e.reason}" if e.reason else "")
        for e in events[-last:]
    ]
    return Text("\n".join(shown))


def _said(head: str, rows: Iterable[tuple[str, str | Text | None]]) -> list[RenderableType]:
    """What an Update answers: one line saying what was done, then where things stand."""
    return [head, lines(rows)]


def case_update(done: str, s: CaseStatus) -> list[RenderableType]:
    return _said(
        f"case {s.case_no}: {done}",
        [
            ("stage", Text(s.stage.value, style="bold")),
            ("waiting on", ", ".join(s.waiting_on)),
            ("decision", s.decision and _decision(s.decision)),
            ("rating", _rating(s.rating, s.rating_open_until)),
        ],
    )


def supplement(case_no: str, r: SupplementResult) -> list[RenderableType]:
    return _said(
        f"case {case_no}: materials received",
        [
            ("complete", "yes" if r.complete else "no"),
            ("still missing", ", ".join(r.still_missing)),
            ("not used", r.not_used and ", ".join(r.not_used) + " (not awaited)"),
        ],
    )


def outcome(o: CaseOutcome) -> list[RenderableType]:
    return _said(
        f"case {o.case_no}: {o.stage.value}",
        [("reason", o.reason), ("closed", o.closed_at and local(o.closed_at))],
    )


# --- feedback and risks ---------------------------------------------------------------------------


def _due_line(at: datetime | None, overdue: bool) -> str | None:
    return at and local(at) + (" (overdue)" if overdue else "")


def rectification(done: str, s: RectificationStatus) -> list[RenderableType]:
    return _said(
        f"rectification of case {s.case_no}: {done}",
        [
            ("stage", Text(s.stage.value, style="bold")),
            ("department", s.department),
            ("due", _due_line(s.due_at, s.overdue)),
        ],
    )


def suggestion(done: str, s: SuggestionStatus) -> list[RenderableType]:
    answer = None
    if s.answer:
        why = s.answer.measures or s.answer.reason
        answer = ("adopted" if s.answer.adopted else "not adopted") + (f": {why}" if why else "")
    return _said(
        f"suggestion {s.suggestion_no}: {done}",
        [
            ("stage", Text(s.stage.value, style="bold")),
            ("complexity", s.complexity),
            ("department", s.department),
            ("due", _due_line(s.due_at, s.overdue)),
            ("answer", answer),
        ],
    )


def risk(done: str, s: RiskStatus) -> list[RenderableType]:
    e = s.entry
    return _said(
        f"risk {e.risk_no}: {done}",
        [
            ("state", Text(e.state.value, style="bold")),
            ("level", level(e.level.value)),
            ("owner", f"{e.owner} ({e.responsible_department})"),
            ("due", _due_line(s.due_at, s.overdue)),
        ],
    )


# --- lists ------------------------------------------------------------------------------------------


def _due(row: dict) -> Text:
    if not row["due_at"]:
        return Text("—")
    due = local(datetime.fromisoformat(row["due_at"]))
    return Text(due + " overdue", style="bold red") if row["overdue"] else Text(due)


def inbox(rows: list[dict], who: str, ui_base: str) -> list[RenderableType]:
    if not rows:
        return [f"nothing waits on {who}"]
    t = Listing("due (Asia/Shanghai)", "workflow", "stage", "waiting on")
    for row in rows:
        t.add_row(_due(row), Text(row["workflow_id"], style=f"link {row['link']}"), row["stage"] or "",
                  ", ".join(row["waiting_on"]))
    return [t, f"{len(rows)} waiting on {who}, soonest due first; open one: {ui_base}/<workflow>"]


def open_feedback(rows: list[dict], department: str) -> list[RenderableType]:
    if not rows:
        return [f"no open feedback work for {department}"]
    t = Listing("due (Asia/Shanghai)", "workflow", "type", "stage")
    for row in rows:
        t.add_row(_due(row), row["workflow_id"], row["type"], row["stage"] or "")
    return [t]


def risks(entries: list[RiskEntry]) -> list[RenderableType]:
    if not entries:
        return ["no risks"]
    t = Listing("risk", "level", "state", "title", "department", "owner", "reported", "escalations")
    for e in entries:
        t.add_row(e.risk_no, level(e.level.value), e.state.value, e.title, e.responsible_department, e.owner,
                  local(e.reported_at), str(e.escalations))
    return [t, "times in Asia/Shanghai"]


def published(entries: list[Publication]) -> list[RenderableType]:
    if not entries:
        return ["nothing published"]
    t = Listing("suggestion", "topic", "department", "adopted", "measures or reason", "answered", "on time")
    for p in entries:
        t.add_row(p.suggestion_no, p.topic, p.department, "yes" if p.adopted else "no", p.measures or p.reason,
                  local(p.answered_at), "yes" if p.on_time else Text("no", style="red"))
    return [t, "times in Asia/Shanghai"]
