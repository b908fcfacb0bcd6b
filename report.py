"""The management KPI report (管理考核报表): a read of the application database, no Temporal.

    python starter.py operator report [--from DATE --to DATE --department D --matter M]
                                      [-o text|json|csv] [--chart FILE.png]

The period is Asia/Shanghai calendar dates, both ends included. Each section counts what entered
the period: cases by when they were received, ratings by when they were given, suggestions by
when they were submitted, risks by when they were reported. What became of them later (a decision,
a rectification, an answer) counts as far as it has happened when the report is made (`as_of`),
so a report for last month is final only once that month's work is.

The department filter applies to every section (a case's lead department, a rating's department,
the department that must answer a suggestion, a risk's responsible department); the matter filter
to cases and ratings only: suggestions and risks have no matter.

A share whose denominator is empty is None (shown "—", csv empty), never a division error.
"""

import csv
import io
from collections import Counter
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Literal, NamedTuple

from pydantic import BaseModel, Field
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from activities.db import AuditRow, CaseRow, OutboxRow, RatingRow
from activities.publication import PublicationRow
from activities.risk import RiskRow
from contract.case import CaseStage
from contract.common import SHANGHAI
from contract.risk import Level
from contract.approval import AUTOMATIC_RULE

# The text formats made here; people read the report as tables (cli/render.py's kpi_report).
Format = Literal["json", "csv"]
FORMATS: tuple[Format, ...] = ("json", "csv")
DEFAULT_DAYS = 30

# A case ends by a decision when CaseWorkflow records "approved" or "rejected" (the action is
# named as the final stage) with the limits it used in details.
DECIDED = (CaseStage.APPROVED.value, CaseStage.REJECTED.value)
# 满意 (4) and 非常满意 (5); 基本满意 (3) is neither satisfied nor a bad review.
SATISFIED_FROM = 4
# RectificationWorkflow's last record: the applicant answered, or a malicious review set aside
# after a second officer confirmed it.
RECTIFICATION_CLOSED = ("rectified", "set_aside")
# What the report measures against (domain.md): every case within its promised limit, every bad
# review rectified, every suggestion answered within its deadline.
TARGETS = {"on_time_rate": 1.0, "rectification_rate": 1.0, "answered_on_time_share": 1.0}
# Ids per IN (...): SQLite caps the number of bound parameters.
CHUNK = 500


# --- the report -------------------------------------------------------------------------------


class ReportFilter(BaseModel):
    period_from: date = Field(description="first day, Asia/Shanghai")
    period_to: date = Field(description="last day, included, Asia/Shanghai")
    department: str | None = None
    matter: str | None = None


class MatterStageCount(BaseModel):
    matter_code: str
    stage: str
    cases: int


class CaseFigures(BaseModel):
    """Cases received in the period.

    Decided: ended by a decision, approved or rejected (not: not accepted, withdrawn, terminated,
    or still open). On time: a decided case closed on or before its promised due time (承诺时限,
    moved by recorded pauses). Working days and limits are those recorded with the decision; the
    compression rate is 1 - (working days used ÷ statutory days), summed over decided cases.
    Automatic (秒批): decided by the rule, no person.
    """

    received: int = 0
    by_matter_stage: list[MatterStageCount] = Field(default_factory=list)
    decided: int = 0
    decided_on_time: int = 0
    on_time_rate: float | None = None
    avg_working_days_used: float | None = None
    avg_promised_days: float | None = None
    avg_statutory_days: float | None = None
    compression_rate: float | None = None
    decided_automatically: int = 0
    automatic_share: float | None = None


class DeferralFigures(BaseModel):
    """Cases received in the period and accepted with deferred materials (容缺受理).

    On time: every deferred material in by the deferral deadline. Missed: terminated for the
    missed deadline, completed late, or past the deadline without them. Pending (deadline not
    passed) and closed otherwise (withdrawn or rejected while the materials were still owed) are
    not in the share.
    """

    accepted_with_deferral: int = 0
    supplemented_on_time: int = 0
    missed: int = 0
    pending: int = 0
    closed_otherwise: int = 0
    on_time_share: float | None = None


class RatingFigures(BaseModel):
    """Ratings given in the period (好差评). Satisfaction rate: share of ratings scored 4 or 5.
    Rectification rate: bad reviews (1 or 2) rectified or set aside as malicious ÷ bad reviews."""

    ratings: int = 0
    satisfied: int = 0
    satisfaction_rate: float | None = None
    bad_reviews: int = 0
    rectified: int = 0
    set_aside: int = 0
    rectification_rate: float | None = None


class SuggestionFigures(BaseModel):
    """Suggestions submitted in the period (意见征集).

    Answered on time share: answered within the deadline ÷ (answered + still open past the
    deadline); open ones not yet due are not in it. Adoption rate: adopted ÷ answered.
    """

    received: int = 0
    answered: int = 0
    answered_on_time: int = 0
    open_overdue: int = 0
    answered_on_time_share: float | None = None
    adopted: int = 0
    adoption_rate: float | None = None


class RiskLevelFigures(BaseModel):
    level: str
    risks: int = 0
    acknowledged: int = 0
    avg_hours_to_acknowledge: float | None = None


class RiskFigures(BaseModel):
    """Risks reported in the period, by their current level (an escalation raises it); hours to
    acknowledge averaged over the acknowledged ones."""

    risks: int = 0
    by_level: list[RiskLevelFigures] = Field(default_factory=list)


class Report(BaseModel):
    """The KPI report for one period and filter: the one thing shown as tables, json, csv or chart."""

    filter: ReportFilter
    as_of: datetime = Field(description="when it was made: later events are not in it")
    cases: CaseFigures
    deferrals: DeferralFigures
    ratings: RatingFigures
    suggestions: SuggestionFigures
    risks: RiskFigures
    notes: list[str] = Field(default_factory=list)


# --- building it --------------------------------------------------------------------------------


def build_report(
    engine: Engine,
    period_from: date,
    period_to: date,
    department: str | None = None,
    matter: str | None = None,
    *,
    now: datetime | None = None,
) -> Report:
    """Read the period's figures from the application database (SQLite or PostgreSQL)."""
    if period_from > period_to:
        raise ValueError(f"the period starts ({period_from}) after it ends ({period_to})")
    as_of = now or datetime.now(timezone.utc)
    start = datetime.combine(period_from, time(), SHANGHAI)
    end = datetime.combine(period_to + timedelta(days=1), time(), SHANGHAI)
    with Session(engine) as session:
        cases = _cases(session, start, end, department, matter)
        actions = [*DECIDED, "accepted_with_deferral", "materials_complete", "terminated"]
        trail = _latest_audit(session, "case", [c.case_no for c in cases], actions)
        report = Report(
            filter=ReportFilter(period_from=period_from, period_to=period_to, department=department, matter=matter),
            as_of=as_of,
            cases=_case_figures(cases, trail),
            deferrals=_deferral_figures(cases, trail, as_of),
            ratings=_rating_figures(session, start, end, department, matter),
            suggestions=_suggestion_figures(session, start, end, department, as_of),
            risks=_risk_figures(session, start, end, department),
        )
    if matter:
        report.notes.append("suggestions and risks have no matter: the matter filter does not apply to them")
    return report


def _share(part: int | float, whole: int | float) -> float | None:
    return round(part / whole, 4) if whole else None


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 2) if values else None


def _cases(session: Session, start: datetime, end: datetime, department: str | None, matter: str | None) -> list[CaseRow]:
    query = select(CaseRow).where(col(CaseRow.received_at) >= start, col(CaseRow.received_at) < end)
    if department:
        query = query.where(CaseRow.department == department)
    if matter:
        query = query.where(CaseRow.matter_code == matter)
    return list(session.exec(query))


def _chunks(ids: Iterable[str]) -> Iterable[list[str]]:
    ids = sorted(set(ids))
    for i in range(0, len(ids), CHUNK):
        yield ids[i : i + CHUNK]


def _latest_audit(
    session: Session, subject_type: str, subject_ids: Iterable[str], actions: Iterable[str]
) -> dict[tuple[str, str], AuditRow]:
    """The latest entry of each (subject, action): a reset run may record an action again."""
    latest: dict[tuple[str, str], AuditRow] = {}
    for ids in _chunks(subject_ids):
        rows = session.exec(
            select(AuditRow)
            .where(
                AuditRow.subject_type == subject_type,
                col(AuditRow.subject_id).in_(ids),
                col(AuditRow.action).in_(list(actions)),
            )
            .order_by(col(AuditRow.at), col(AuditRow.id))
        )
        for row in rows:
            latest[(row.subject_id, row.action)] = row
    return latest


def stage_order(stage: str) -> int:
    order = [s.value for s in CaseStage]
    return order.index(stage) if stage in order else len(order)


def _case_figures(cases: list[CaseRow], trail: dict[tuple[str, str], AuditRow]) -> CaseFigures:
    counts = Counter((c.matter_code, c.stage) for c in cases)
    decided = [c for c in cases if c.outcome in DECIDED]
    on_time = sum(1 for c in decided if c.closed_at and c.promised_due_at and c.closed_at <= c.promised_due_at)
    decisions = [trail[(c.case_no, c.outcome)].details for c in decided if (c.case_no, c.outcome) in trail]
    limits = [d for d in decisions if {"working_days_used", "promised_days", "statutory_days"} <= d.keys()]
    used = [float(d["working_days_used"]) for d in limits]
    statutory = [float(d["statutory_days"]) for d in limits]
    automatic = sum(1 for d in decisions if d.get("decided_by") == AUTOMATIC_RULE)
    return CaseFigures(
        received=len(cases),
        by_matter_stage=[
            MatterStageCount(matter_code=m, stage=s, cases=n)
            for (m, s), n in sorted(counts.items(), key=lambda item: (item[0][0], stage_order(item[0][1])))
        ],
        decided=len(decided),
        decided_on_time=on_time,
        on_time_rate=_share(on_time, len(decided)),
        avg_working_days_used=_mean(used),
        avg_promised_days=_mean([float(d["promised_days"]) for d in limits]),
        avg_statutory_days=_mean(statutory),
        compression_rate=None if not sum(statutory) else round(1 - sum(used) / sum(statutory), 4),
        decided_automatically=automatic,
        automatic_share=_share(automatic, len(decided)),
    )


def _deferral_figures(cases: list[CaseRow], trail: dict[tuple[str, str], AuditRow], as_of: datetime) -> DeferralFigures:
    figures = DeferralFigures()
    for case in cases:
        if (case.case_no, "accepted_with_deferral") not in trail:
            continue
        figures.accepted_with_deferral += 1
        complete = trail.get((case.case_no, "materials_complete"))
        due = case.deferral_due_at
        if complete is not None:
            if due is None or complete.at <= due:
                figures.supplemented_on_time += 1
            else:
                figures.missed += 1
        elif (case.case_no, "terminated") in trail:
            figures.missed += 1
        elif case.outcome is not None:
            figures.closed_otherwise += 1
        elif due is not None and due <= as_of:
            figures.missed += 1  # past the deadline; the termination is on its way
        else:
            figures.pending += 1
    figures.on_time_share = _share(figures.supplemented_on_time, figures.supplemented_on_time + figures.missed)
    return figures


def _rating_figures(
    session: Session, start: datetime, end: datetime, department: str | None, matter: str | None
) -> RatingFigures:
    query = select(RatingRow).where(col(RatingRow.at) >= start, col(RatingRow.at) < end)
    if department:
        query = query.where(RatingRow.department == department)
    if matter:
        query = query.where(RatingRow.matter_code == matter)
    ratings = list(session.exec(query))
    satisfied = sum(1 for r in ratings if r.score >= SATISFIED_FROM)
    bad = [r.case_no for r in ratings if r.bad]
    closed = _latest_audit(session, "rectification", bad, RECTIFICATION_CLOSED)
    rectified = sum(1 for case_no in bad if (case_no, "rectified") in closed)
    set_aside = sum(1 for case_no in bad if (case_no, "set_aside") in closed and (case_no, "rectified") not in closed)
    return RatingFigures(
        ratings=len(ratings),
        satisfied=satisfied,
        satisfaction_rate=_share(satisfied, len(ratings)),
        bad_reviews=len(bad),
        rectified=rectified,
        set_aside=set_aside,
        rectification_rate=_share(rectified + set_aside, len(bad)),
    )


def _suggestion_figures(
    session: Session, start: datetime, end: datetime, department: str | None, as_of: datetime
) -> SuggestionFigures:
    """Answered suggestions come from the publication (exact submission time, department, on
    time); open ones only from the audit trail ("submitted", with its due time, moved by
    "reclassified") and the department's "suggestion_received" notice in the outbox."""
    query = select(PublicationRow).where(col(PublicationRow.submitted_at) >= start, col(PublicationRow.submitted_at) < end)
    if department:
        query = query.where(PublicationRow.department == department)
    answered = list(session.exec(query))

    submitted = session.exec(
        select(AuditRow.subject_id).where(
            AuditRow.subject_type == "suggestion",
            AuditRow.action == "submitted",
            col(AuditRow.at) >= start,
            col(AuditRow.at) < end,
        )
    ).all()
    published: set[str] = set()
    for ids in _chunks(submitted):
        query = select(PublicationRow.suggestion_no).where(col(PublicationRow.suggestion_no).in_(ids))
        published.update(session.exec(query))
    still_open = set(submitted) - published
    if department:
        still_open &= _notified(session, still_open, "suggestion_received", department)
    due = _latest_audit(session, "suggestion", still_open, ["submitted", "reclassified"])
    overdue = 0
    for no in still_open:
        # A reclassification recomputes the deadline: the later entry holds the one in force.
        entries = [due[(no, a)] for a in ("submitted", "reclassified") if (no, a) in due]
        latest = max(entries, key=lambda e: e.at).details.get("due_at") if entries else None
        if latest and datetime.fromisoformat(latest) <= as_of:
            overdue += 1

    on_time = sum(1 for p in answered if p.on_time)
    adopted = sum(1 for p in answered if p.adopted)
    return SuggestionFigures(
        received=len(answered) + len(still_open),
        answered=len(answered),
        answered_on_time=on_time,
        open_overdue=overdue,
        answered_on_time_share=_share(on_time, len(answered) + overdue),
        adopted=adopted,
        adoption_rate=_share(adopted, len(answered)),
    )


def _notified(session: Session, subject_ids: Iterable[str], kind: str, recipient: str) -> set[str]:
    found: set[str] = set()
    for ids in _chunks(subject_ids):
        found.update(
            session.exec(
                select(OutboxRow.subject_id).where(
                    OutboxRow.kind == kind, OutboxRow.recipient == recipient, col(OutboxRow.subject_id).in_(ids)
                )
            )
        )
    return found


def _risk_figures(session: Session, start: datetime, end: datetime, department: str | None) -> RiskFigures:
    query = select(RiskRow).where(col(RiskRow.reported_at) >= start, col(RiskRow.reported_at) < end)
    if department:
        query = query.where(RiskRow.responsible_department == department)
    risks = list(session.exec(query))
    by_level = []
    for level in (Level.RED, Level.YELLOW, Level.BLUE):
        rows = [r for r in risks if r.level == level.value]
        hours = [(r.acknowledged_at - r.reported_at).total_seconds() / 3600 for r in rows if r.acknowledged_at]
        by_level.append(
            RiskLevelFigures(
                level=level.value, risks=len(rows), acknowledged=len(hours), avg_hours_to_acknowledge=_mean(hours)
            )
        )
    return RiskFigures(risks=len(risks), by_level=by_level)


# --- rendering ----------------------------------------------------------------------------------


class Metric(NamedTuple):
    section: str
    name: str
    label: str
    value: int | float | None
    kind: Literal["count", "share", "days", "hours"]


# Labels stay ASCII so the chart needs no CJK font; the Chinese terms are in the section titles.
SECTION_TITLES = {
    "cases": "Cases (办件)",
    "deferrals": "Deferred acceptance (容缺受理)",
    "ratings": "Ratings (好差评)",
    "suggestions": "Suggestions (意见征集)",
    "risks": "Risks (风险清单)",
}


def metrics(report: Report) -> list[Metric]:
    """Every figure once, in reading order: the tables and the csv are both made from this list."""
    c, d, r, s = report.cases, report.deferrals, report.ratings, report.suggestions
    rows = [
        Metric("cases", "received", "received", c.received, "count"),
        Metric("cases", "decided", "decided (approved or rejected)", c.decided, "count"),
        Metric("cases", "decided_on_time", "decided within the promised limit", c.decided_on_time, "count"),
        Metric("cases", "on_time_rate", "on-time rate (promised limit)", c.on_time_rate, "share"),
        Metric("cases", "avg_working_days_used", "average working days used", c.avg_working_days_used, "days"),
        Metric("cases", "avg_promised_days", "average promised limit", c.avg_promised_days, "days"),
        Metric("cases", "avg_statutory_days", "average statutory limit", c.avg_statutory_days, "days"),
        Metric("cases", "compression_rate", "time compression (1 - used/statutory)", c.compression_rate, "share"),
        Metric("cases", "decided_automatically", "decided automatically (by rule)", c.decided_automatically, "count"),
        Metric("cases", "automatic_share", "automatic share of decided", c.automatic_share, "share"),
        Metric("deferrals", "accepted_with_deferral", "accepted with deferral", d.accepted_with_deferral, "count"),
        Metric("deferrals", "supplemented_on_time", "materials in on time", d.supplemented_on_time, "count"),
        Metric("deferrals", "missed", "deadline missed (incl. terminated)", d.missed, "count"),
        Metric("deferrals", "pending", "deadline not passed yet", d.pending, "count"),
        Metric("deferrals", "closed_otherwise", "closed before the deadline", d.closed_otherwise, "count"),
        Metric("deferrals", "on_time_share", "supplemented on time", d.on_time_share, "share"),
        Metric("ratings", "ratings", "ratings", r.ratings, "count"),
        Metric("ratings", "satisfied", "satisfied (score 4-5)", r.satisfied, "count"),
        Metric("ratings", "satisfaction_rate", "satisfaction rate (score >= 4)", r.satisfaction_rate, "share"),
        Metric("ratings", "bad_reviews", "bad reviews (score 1-2)", r.bad_reviews, "count"),
        Metric("ratings", "rectified", "rectified and answered", r.rectified, "count"),
        Metric("ratings", "set_aside", "set aside as malicious", r.set_aside, "count"),
        Metric("ratings", "rectification_rate", "rectification rate", r.rectification_rate, "share"),
        Metric("suggestions", "received", "received", s.received, "count"),
        Metric("suggestions", "answered", "answered", s.answered, "count"),
        Metric("suggestions", "answered_on_time", "answered on time", s.answered_on_time, "count"),
        Metric("suggestions", "open_overdue", "open past the deadline", s.open_overdue, "count"),
        Metric("suggestions", "answered_on_time_share", "answered on time share", s.answered_on_time_share, "share"),
        Metric("suggestions", "adopted", "adopted", s.adopted, "count"),
        Metric("suggestions", "adoption_rate", "adoption rate", s.adoption_rate, "share"),
        Metric("risks", "risks", "reported", report.risks.risks, "count"),
    ]
    for level in report.risks.by_level:
        rows += [
            Metric("risks", f"{level.level}.risks", f"{level.level}", level.risks, "count"),
            Metric("risks", f"{level.level}.acknowledged", f"{level.level} acknowledged", level.acknowledged, "count"),
            Metric(
                "risks",
                f"{level.level}.avg_hours_to_acknowledge",
                f"{level.level} average time to acknowledge",
                level.avg_hours_to_acknowledge,
                "hours",
            ),
        ]
    return rows


def shown(value: int | float | None, kind: str) -> str:
    """A figure as people read it: 75.0%, 2.50 d, 1.5 h, 7; "—" when there is none."""
    if value is None:
        return "—"
    if kind == "share":
        return f"{value:.1%}"
    if kind == "days":
        return f"{value:.2f} d"
    if kind == "hours":
        return f"{value:.1f} h"
    return str(value)


def render(report: Report, fmt: Format) -> str:
    """The report as json or csv text, for scripts."""
    if fmt == "json":
        return report.model_dump_json(indent=2)
    if fmt == "csv":
        return _csv(report)
    raise ValueError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")


def _csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["section", "metric", "value"])
    f = report.filter
    for name, value in [
        ("period_from", f.period_from.isoformat()),
        ("period_to", f.period_to.isoformat()),
        ("department", f.department),
        ("matter", f.matter),
        ("as_of", report.as_of.isoformat()),
    ]:
        writer.writerow(["filter", name, "" if value is None else value])
    for row in report.cases.by_matter_stage:
        writer.writerow(["cases_by_matter_stage", f"{row.matter_code}/{row.stage}", row.cases])
    for m in metrics(report):
        writer.writerow([m.section, m.name, "" if m.value is None else m.value])
    return out.getvalue()


# --- chart ---------------------------------------------------------------------------------------

# Ended well green, ended otherwise red or grey, still open in blues.
STAGE_COLOURS = {
    CaseStage.APPROVED: "#2e7d32",
    CaseStage.REJECTED: "#c62828",
    CaseStage.TERMINATED: "#8e0000",
    CaseStage.NOT_ACCEPTED: "#9e9e9e",
    CaseStage.WITHDRAWN: "#bdbdbd",
    CaseStage.APPROVED_PENDING_MATERIALS: "#a5d6a7",
    CaseStage.RETURNED: "#ffb74d",
}
RATE_BARS = [
    ("cases", "on_time_rate", "on time (promised)"),
    ("cases", "automatic_share", "decided automatically"),
    ("cases", "compression_rate", "time compression"),
    ("deferrals", "on_time_share", "deferral met"),
    ("ratings", "satisfaction_rate", "satisfaction"),
    ("ratings", "rectification_rate", "bad reviews rectified"),
    ("suggestions", "answered_on_time_share", "suggestions on time"),
    ("suggestions", "adoption_rate", "suggestions adopted"),
]


def write_chart(report: Report, path: Path | str) -> Path:
    """A PNG: cases by matter stacked by stage, and the rates against their targets."""
    # Imported here: matplotlib is slow to import and only this needs it. The Agg canvas draws
    # without a display and leaves pyplot's global state alone.
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    figure = Figure(figsize=(13, 5.5), layout="constrained")
    FigureCanvasAgg(figure)
    cases_ax, rates_ax = figure.subplots(1, 2, width_ratios=[1.3, 1])
    f = report.filter
    scope = ", ".join(x for x in (f.department, f.matter) if x) or "all departments and matters"
    figure.suptitle(f"hallflow KPI report {f.period_from} to {f.period_to} ({scope})")

    counts = report.cases.by_matter_stage
    if counts:
        matters = sorted({c.matter_code for c in counts})
        stages = sorted({c.stage for c in counts}, key=stage_order)
        cell = {(c.matter_code, c.stage): c.cases for c in counts}
        blues = colormaps["Blues"]
        left = [0] * len(matters)
        for i, stage in enumerate(stages):
            widths = [cell.get((m, stage), 0) for m in matters]
            colour = STAGE_COLOURS.get(stage) or blues(0.35 + 0.5 * i / max(1, len(stages)))
            cases_ax.barh(matters, widths, left=left, label=stage, color=colour)
            left = [a + b for a, b in zip(left, widths)]
        cases_ax.invert_yaxis()
        # Below the bars, where it hides none of them.
        cases_ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.12), ncols=min(4, len(stages)))
        cases_ax.xaxis.get_major_locator().set_params(integer=True)
    else:
        cases_ax.text(0.5, 0.5, "no cases received", ha="center", va="center", transform=cases_ax.transAxes)
        cases_ax.set_xticks([])
        cases_ax.set_yticks([])
    cases_ax.set_title("cases received, by matter and stage")
    cases_ax.set_xlabel("cases")

    labels = [label for _, _, label in RATE_BARS]
    values = [getattr(getattr(report, section), name) for section, name, _ in RATE_BARS]
    colours = [_rate_colour(name, value) for (_, name, _), value in zip(RATE_BARS, values)]
    rates_ax.barh(labels, [0 if v is None else v * 100 for v in values], color=colours)
    for y, ((_, name, _), value) in enumerate(zip(RATE_BARS, values)):
        text = "—" if value is None else f"{value:.0%}"
        rates_ax.text(1 if value is None else value * 100 + 1, y, text, va="center", fontsize="small")
        if name in TARGETS:
            rates_ax.plot([TARGETS[name] * 100] * 2, [y - 0.4, y + 0.4], color="black", linewidth=2)
    rates_ax.invert_yaxis()
    rates_ax.set_xlim(0, 112)
    rates_ax.set_xlabel("%  (black line: target; orange: short of it)")
    rates_ax.set_title("rates")

    figure.savefig(path, format="png", dpi=100)
    return path


def _rate_colour(name: str, value: float | None) -> str:
    target = TARGETS.get(name)
    if target is None or value is None:
        return "#1565c0"
    return "#2e7d32" if value >= target else "#ef6c00"


# --- command line ------------------------------------------------------------------------------


def parse_date(text: str) -> date:
    """A period's end from the command line; the message says what a date looks like."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not a date (YYYY-MM-DD): {text!r}") from None


def run(
    engine: Engine,
    period_from: date | None = None,
    period_to: date | None = None,
    department: str | None = None,
    matter: str | None = None,
    chart: Path | None = None,
    *,
    now: datetime | None = None,
) -> Report:
    """The report `starter.py operator report` asks for (the last 30 days unless given), the chart
    drawn if asked."""
    now = now or datetime.now(timezone.utc)
    period_to = period_to or now.astimezone(SHANGHAI).date()
    period_from = period_from or period_to - timedelta(days=DEFAULT_DAYS - 1)
    report = build_report(engine, period_from, period_to, department, matter, now=now)
    if chart:
        write_chart(report, chart)
    return report
