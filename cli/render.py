"""How the commands' answers read: labelled lines and tables for people, JSON for scripts.

Colour only on a terminal (Rich decides). Nothing is ever cut off with "…": prose wraps at
spaces, an id also after - _ : / or , and only a piece longer than its column (a hash) is folded;
lists are tables down to 60 columns. Off a terminal the lines are as wide as their content unless
COLUMNS says otherwise.
"""

import json
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Literal

import typer
from pydantic import BaseModel
from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderableType
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

    def each() -> None:
        for item in items:  # a Text with no_wrap (a long link) is one line, for the terminal to wrap
            out.print(item, soft_wrap=isinstance(item, Text) and bool(item.no_wrap))

    if out.is_terminal:
        each()
        return
    with out.capture() as captured:  # a file or a pipe: no padding after the last word
        each()
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


@dataclass(frozen=True)
class Column:
    """A column of a Listing, by what its cells hold.

    text: words, wrapped at spaces, never cut. id: ids and codes (case-DEMO-20261130-12,
    awaiting_review, applicant:app-0001), also broken after - _ : / or , when the column is
    narrower; only a piece longer than FOLD_MIN (a hash) is folded. time: "2026-12-01 17:30",
    the time under the date when narrow. short: never wrapped (a level, yes/no, a count).
    """

    header: str
    kind: Literal["text", "id", "time", "short"] = "text"
    justify: Literal["left", "right"] = "left"
    drop: int = 0  # left out when the table does not fit otherwise: 1 first, then 2 …; 0 never
    short: str | None = None  # the header when the table does not fit otherwise


FOLD_MIN = 16
COMFORT = (20, 16, 12)  # characters of prose a line a table keeps, leaving columns of little use out
BREAKS = re.compile(r"[^-_:/,]*[-_:/,]+|[^-_:/,]+")  # an id's pieces, each ending after its - _ : / ,


class Listing:
    """Rows under headers, in the `temporal` CLI's manner: a header, no borders, a Rich table.

    Too narrow for every column's longest word: headers shortened first, then the columns of least
    use left out (a line under the table names them). Only below `blocks_below` columns, or when
    even that does not fit, one block of labelled lines per row. Nothing is cut with "…"."""

    GAP = 2  # between two columns: padding and divider

    def __init__(self, *columns: str | Column, blocks_below: int = 60) -> None:
        self.columns = [c if isinstance(c, Column) else Column(c) for c in columns]
        self.blocks_below = blocks_below
        self.rows: list[list[Text]] = []

    def add_row(self, *cells: str | Text) -> None:
        self.rows.append([c if isinstance(c, Text) else Text(c) for c in cells])

    def _least(self, i: int, header: str) -> int:
        """The narrowest column i can be without cutting a word (an id: without folding a piece)."""
        kind = self.columns[i].kind
        head = cell_len(header) if kind == "short" else max(map(cell_len, header.split()), default=0)
        cells = [row[i].plain for row in self.rows]
        if kind == "short":
            return max([head, *(cell_len(line) for c in cells for line in c.splitlines())])
        words = [w for c in cells for w in c.split()]
        if kind == "id":
            pieces = [cell_len(p) for w in words for p in BREAKS.findall(w)]
            return max([head, *(min(n, FOLD_MIN) for n in pieces)])
        return max([head, *map(cell_len, words)])

    def _most(self, i: int, header: str) -> int:
        lines = [line for row in self.rows for line in row[i].plain.splitlines()]
        return max([cell_len(header), *map(cell_len, lines)])

    def plan(self, width: int) -> tuple[list[int], list[str], list[int]] | None:
        """The columns kept, their headers and widths at `width`; None: blocks of lines instead.

        With room for 20 characters of prose a line (else 16, else 12), shortening headers and
        leaving columns out as needed; failing that, as narrow as no word cut allows."""
        if width < self.blocks_below:
            return None
        for comfort in (*COMFORT, 0):
            keep = list(range(len(self.columns)))
            headers = [c.header for c in self.columns]

            def floor() -> list[int]:  # a column's least, prose given `comfort` characters
                return [max(self._least(i, headers[i]), min(comfort, self._most(i, headers[i]))
                            if self.columns[i].kind == "text" else 0) for i in keep]

            def fits() -> bool:
                return sum(floor()) + self.GAP * (len(keep) - 1) <= width

            if not fits():
                headers = [c.short or c.header for c in self.columns]
            for order in sorted({c.drop for c in self.columns if c.drop}):
                if fits():
                    break
                keep = [i for i in keep if self.columns[i].drop != order]
            if fits():
                break
        else:
            if self.blocks_below:
                return None
        room = width - self.GAP * (len(keep) - 1)
        texts = [[headers[i], *(row[i].plain for row in self.rows)] for i in keep]
        kinds = [self.columns[i].kind for i in keep]
        most = [self._most(i, headers[i]) for i in keep]
        cache: dict[tuple[int, int], list[int]] = {}

        def lines_at(j: int, w: int) -> list[int]:
            if (j, w) not in cache:
                cache[(j, w)] = [_lines_needed(t, w, kinds[j]) for t in texts[j]]
            return cache[(j, w)]

        def cost(widths: list[int]) -> int:
            """The table's lines, and two more for each line an id or a time is broken over."""
            lines = [lines_at(j, w) for j, w in enumerate(widths)]
            broken = sum(n - whole for j, kind in enumerate(kinds) if kind in ("id", "time")
                         for n, whole in zip(lines[j][1:], lines_at(j, most[j])[1:]))
            return sum(map(max, zip(*lines))) + 2 * broken

        least = [self._least(i, headers[i]) for i in keep]
        return keep, [headers[i] for i in keep], _fit(least, floor(), most, room, cost)

    def needs(self) -> int:
        """The narrowest this table can be with every column and full headers, no word cut."""
        least = [self._least(i, c.header) for i, c in enumerate(self.columns)]
        return sum(least) + self.GAP * (len(least) - 1)

    def __rich_console__(self, console: Console, options: ConsoleOptions):
        plan = self.plan(options.max_width)
        if plan is None:
            room = options.max_width - max(cell_len(c.header) for c in self.columns) - 2
            for n, row in enumerate(self.rows):
                values = [_broken(v, room) if c.kind == "id" else v for c, v in zip(self.columns, row)]
                yield lines(zip((c.header for c in self.columns), values))
                if n < len(self.rows) - 1:
                    yield Text()
            return
        keep, headers, widths = plan
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0), header_style="bold")
        for i, header, width in zip(keep, headers, widths):
            column = self.columns[i]
            table.add_column(header, width=width, overflow="fold", no_wrap=column.kind == "short",
                             justify=column.justify)
        for row in self.rows:
            table.add_row(*(_broken(row[i], width) if self.columns[i].kind == "id" else row[i]
                            for i, width in zip(keep, widths)))
        yield table
        left_out = [c.header for i, c in enumerate(self.columns) if i not in keep]
        if left_out:
            yield Text(f"not shown at this width: {', '.join(left_out)} (-o json has every field)", style="dim")


def _fit(least: list[int], floor: list[int], most: list[int], room: int, cost) -> list[int]:
    """Column widths within `room`, each between its least and most, costing least: `cost(widths)`
    (lines, ids broken), and prose below its `floor` a quarter line for the first character, half
    for the second …. From each column's widest, one character at a time is taken where it costs
    least (the widest first); then characters move between columns while that costs less."""

    def score(widths: list[int]) -> float:
        below = (max(0, f - w) for f, w in zip(floor, widths))
        return cost(widths) + sum(n * (n + 1) / 8 for n in below)

    widths = list(most)
    while sum(widths) > room:
        giving = [i for i in range(len(widths)) if widths[i] > least[i]]
        if not giving:
            return widths

        def loss(i: int) -> tuple[float, int]:
            return score(widths[:i] + [widths[i] - 1] + widths[i + 1:]), -widths[i]

        widths[min(giving, key=loss)] -= 1
    best = score(widths)
    improved = True
    while improved:
        improved = False
        for a in range(len(widths)):
            for b in range(len(widths)):
                for n in range(1, min(widths[a] - least[a], most[b] - widths[b]) + 1):
                    moved = list(widths)
                    moved[a] -= n
                    moved[b] += n
                    if (new := score(moved)) < best:
                        widths, best, improved = moved, new, True
                        break
    return widths


def _lines_needed(text: str, width: int, kind: str) -> int:
    """How many lines a cell takes at `width`: words wrapped at spaces, an id's pieces after
    - _ : / or ,, and what is still too long folded (as _broken and Rich lay it out)."""
    if kind == "short" or width <= 0:
        return max(1, len(text.splitlines()))
    count = 0
    for line in text.splitlines() or [""]:
        count += 1
        used = 0
        for word in line.split():
            parts = BREAKS.findall(word) if kind == "id" and cell_len(word) > width else [word]
            for n, part in enumerate(parts):
                size = cell_len(part)
                gap = 1 if used and n == 0 else 0
                if used and used + gap + size > width:
                    count += 1
                    used, gap = 0, 0
                while size > width:  # folded
                    count += 1
                    size -= width
                used += gap + size
    return count


def _broken(cell: Text, width: int) -> Text:
    """An id longer than its column goes on the next line after a - _ : / or , (Rich breaks only at
    spaces); a piece still longer is folded by the column."""
    plain, cuts = cell.plain, []
    for word in re.finditer(r"\S+", plain):
        if cell_len(word.group()) <= width:
            continue
        used = 0
        for piece in BREAKS.finditer(word.group()):
            size = cell_len(piece.group())
            if used and used + size > width:
                cuts.append(word.start() + piece.start())
                used = 0
            used += size
    if not cuts:
        return cell
    return Text("\n").join(cell.divide(cuts))


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


DUE = Column("due", "time")
WORKFLOW = Column("workflow", "id")
STAGE = Column("stage", "id")


def inbox(rows: list[dict], who: str, ui_base: str) -> list[RenderableType]:
    if not rows:
        return [f"nothing waits on {who}"]
    t = Listing(DUE, WORKFLOW, STAGE, Column("waiting on", "id"))
    for row in rows:
        t.add_row(_due(row), Text(row["workflow_id"], style=f"link {row['link']}"), row["stage"] or "",
                  ", ".join(row["waiting_on"]))
    return [t, f"{len(rows)} waiting on {who}, soonest due first; times in Asia/Shanghai; open one: {ui_base}/<workflow>"]


def open_feedback(rows: list[dict], department: str) -> list[RenderableType]:
    if not rows:
        return [f"no open feedback work for {department}"]
    # RectificationWorkflow reads "rectification"; the workflow id says it too: left out first.
    t = Listing(DUE, WORKFLOW, Column("type", "id", drop=1), STAGE)
    for row in rows:
        kind = row["type"].removesuffix("Workflow").lower()
        t.add_row(_due(row), row["workflow_id"], kind, row["stage"] or "")
    return [t, "times in Asia/Shanghai"]


def risks(entries: list[RiskEntry]) -> list[RenderableType]:
    if not entries:
        return ["no risks"]
    t = Listing(Column("risk", "id"), Column("level", "short"), Column("state", "id"), Column("title"),
                Column("department", "id"), Column("owner", "id"), Column("reported", "time", drop=2),
                Column("escalations", "short", justify="right", drop=1))
    for e in entries:
        t.add_row(e.risk_no, level(e.level.value), e.state.value, e.title, e.responsible_department, e.owner,
                  local(e.reported_at), str(e.escalations))
    return [t, "times in Asia/Shanghai"]


def published(entries: list[Publication]) -> list[RenderableType]:
    if not entries:
        return ["nothing published"]
    t = Listing(Column("suggestion", "id"), Column("topic"), Column("department", "id"),
                Column("adopted", "short"), Column("measures or reason"), Column("answered", "time", drop=1),
                Column("on time", "short"))
    for p in entries:
        t.add_row(p.suggestion_no, p.topic, p.department, "yes" if p.adopted else "no", p.measures or p.reason,
                  local(p.answered_at), "yes" if p.on_time else Text("no", style="red"))
    return [t, "times in Asia/Shanghai"]


# --- the KPI report ------------------------------------------------------------------------------


class FirstThatFits:
    """The first listing that fits the width with every column and no word cut, else the last."""

    def __init__(self, *choices: Listing) -> None:
        self.choices = choices

    def __rich_console__(self, console: Console, options: ConsoleOptions):
        yield next((c for c in self.choices if c.needs() <= options.max_width), self.choices[-1])


def kpi_report(r) -> list[RenderableType]:
    """report.Report as people read it: what it covers, cases by matter and stage, then each
    section's figures against their targets; the same figures as `-o csv`, in tables."""
    import report as kpi

    f = r.filter
    said: list[RenderableType] = [
        Text(f"KPI report {f.period_from} to {f.period_to} (Asia/Shanghai dates, inclusive)", style="bold"),
        f"department: {f.department or 'all'}   matter: {f.matter or 'all'}   "
        f"as of {r.as_of.astimezone(SHANGHAI):%Y-%m-%d %H:%M} +08:00",
        *(f"note: {note}" for note in r.notes),
        "",
        Text("Cases by matter and stage", style="bold"),
    ]
    counts = r.cases.by_matter_stage
    if counts:
        said.append(FirstThatFits(_matrix(counts, kpi.stage_order), _by_matter(counts, kpi.stage_order)))
    else:
        said.append("(no cases)")
    figures = Listing(Column("figure"), Column("value", "short", justify="right"),
                      Column("target", "short", justify="right"), blocks_below=0)
    section = None
    for m in kpi.metrics(r):
        if m.section != section:
            if section is not None:
                figures.add_row("", "", "")
            section = m.section
            figures.add_row(Text(kpi.SECTION_TITLES[section], style="bold"), "", "")
        target = kpi.TARGETS.get(m.name) if m.section != "risks" else None
        figures.add_row("  " + m.label, kpi.shown(m.value, m.kind), "" if target is None else f"{target:.0%}")
    return [*said, "", figures]


def _matrix(counts, stage_order) -> Listing:
    """Matters down, stages across in procedure order, with totals."""
    stages = sorted({c.stage for c in counts}, key=stage_order)
    matters = sorted({c.matter_code for c in counts})
    cell = {(c.matter_code, c.stage): c.cases for c in counts}
    t = Listing(Column("matter", "id"), *(Column(s, "id", justify="right") for s in stages),
                Column("total", "short", justify="right"), blocks_below=0)
    for m in matters:
        values = [cell.get((m, s), 0) for s in stages]
        t.add_row(m, *map(str, values), str(sum(values)))
    totals = [sum(cell.get((m, s), 0) for m in matters) for s in stages]
    t.add_row(Text("total", style="bold"), *map(str, totals), Text(str(sum(totals)), style="bold"))
    return t


def _by_matter(counts, stage_order) -> Listing:
    """The same counts as rows, for a terminal too narrow for a column per stage."""
    t = Listing(Column("matter", "id"), Column("stage", "id"), Column("cases", "short", justify="right"),
                blocks_below=0)
    matter = None
    for c in sorted(counts, key=lambda c: (c.matter_code, stage_order(c.stage))):
        t.add_row(c.matter_code if c.matter_code != matter else "", c.stage, str(c.cases))
        matter = c.matter_code
    t.add_row(Text("total", style="bold"), "", Text(str(sum(c.cases for c in counts)), style="bold"))
    return t
