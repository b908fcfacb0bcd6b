"""The KPI report over a known month of data, written through the real activities, on SQLite and PostgreSQL.

March 2025 (Asia/Shanghai), report made 2025-04-01 10:00 +08:00:
- cases: C-01 enterprise-opening approved on time; C-02 enterprise-opening deferred, materials in
  on time, approved late; C-03 enterprise-opening deferred and terminated; C-04 housing fund
  approved automatically (秒批); C-05 real estate still consulting; C-06 real estate rejected on
  time; C-07 real estate deferred on 03-31, deadline not passed. Outside: C-08 received 02-28
  23:30, C-09 received 04-01 00:10 (still 03-31 in UTC).
- ratings: C-01 5, C-02 2 (rectified), C-03 1 (set aside as malicious), C-04 4, C-06 1 (open),
  C-08 3 (a February case rated on 03-01).
- suggestions: S-01 adopted on time, S-02 not adopted, late; S-03 open, not due; S-04 open,
  overdue; S-05 submitted in February.
- risks: R-01 red acknowledged after 1.5 h, R-02 red after 0.5 h, R-03 yellow after 24 h,
  R-04 yellow not acknowledged; R-05 blue reported in February.
"""

import csv
import io
import json
import re
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import Engine

import report
from activities.publication import PublicationActivities
from activities.risk import RiskActivities
from activities.store import Store
from contract.case import Applicant, CaseRegistration, CaseStage, case_workflow_id
from contract.common import SHANGHAI
from contract.rating import Rating, RatingRecord
from contract.records import AuditEntry, CaseEvent, CaseSnapshot, Notice
from contract.risk import RiskEntry
from contract.suggestion import Publication, PublicationRecord
from contract.approval import AUTOMATIC_RULE

MARCH_1, MARCH_31 = date(2025, 3, 1), date(2025, 3, 31)
AS_OF = datetime(2025, 4, 1, 10, tzinfo=SHANGHAI)
HALL = "hall-central"
# matter: (lead department, promised days, statutory days), as in data/matters.toml
MATTERS = {
    "enterprise-opening": ("market-regulation", 1, 5),
    "real-estate-registration": ("natural-resources", 5, 15),
    "housing-fund-withdrawal": ("housing-fund-center", 1, 3),
}


def march(day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2025, 3, day, hour, minute, tzinfo=SHANGHAI)


# --- writing the data the way the workflows do ----------------------------------------------------


def _entry(subject_type: str, subject_id: str, action: str, at: datetime, actor: str = "hallflow", **details) -> AuditEntry:
    return AuditEntry(
        key=f"{subject_type}/{subject_id}/{action}",
        subject_type=subject_type,
        subject_id=subject_id,
        action=action,
        actor=actor,
        at=at,
        workflow_id=f"{subject_type}-{subject_id}",
        run_id="run-1",
        details=details,
    )


class CaseTrail:
    """One case through Store.register_case and record_case_event, as CaseWorkflow writes it."""

    def __init__(self, store: Store, case_no: str, matter: str, received: datetime) -> None:
        self.store, self.matter = store, matter
        store.register_case(
            CaseRegistration(
                case_no=case_no,
                matter_code=matter,
                hall=HALL,
                clerk="clerk-01",
                applicant=Applicant(applicant_id=f"app-{case_no}"),
                workflow_id=case_workflow_id(case_no),
                received_at=received,
            )
        )
        self.case = CaseSnapshot(case_no=case_no, matter_code=matter, hall=HALL, stage=CaseStage.RECEIVED.value)
        self.event("received", received, CaseStage.RECEIVED, actor="clerk-01", materials=[])

    def event(
        self, action: str, at: datetime, stage: CaseStage, actor: str = "hallflow", state=None, **details
    ) -> "CaseTrail":
        self.case = self.case.model_copy(update={"stage": stage.value, **(state or {})})
        audit = _entry("case", self.case.case_no, action, at, actor, **details)
        self.store.record_case_event(CaseEvent(audit=audit, case=self.case))
        return self

    def accept(self, at: datetime, promised_due: datetime, deferral_due: datetime | None = None) -> "CaseTrail":
        department, _, statutory = MATTERS[self.matter]
        state = {
            "department": department,
            "accepted_at": at,
            "promised_due_at": promised_due,
            "statutory_due_at": at + timedelta(days=statutory + 2),
            "deferral_due_at": deferral_due,
        }
        deferred = ["residence-proof"] if deferral_due else []
        action = "accepted_with_deferral" if deferral_due else "accepted"
        return self.event(action, at, CaseStage.ACCEPTED, "clerk-01", state, deferred=deferred)

    def decide(self, stage: CaseStage, at: datetime, by: str, used: int) -> "CaseTrail":
        _, promised, statutory = MATTERS[self.matter]
        assert self.case.promised_due_at is not None
        return self.event(
            stage.value,
            at,
            stage,
            by,
            {"closed_at": at, "outcome": stage.value},
            decided_by=by,
            inputs={},
            working_days_used=used,
            promised_days=promised,
            statutory_days=statutory,
            on_time=at <= self.case.promised_due_at,
        )


def rate(store: Store, case_no: str, matter: str, score: int, at: datetime) -> None:
    rating = Rating(
        case_no=case_no, matter_code=matter, department=MATTERS[matter][0], hall=HALL, score=score, channel="app", at=at
    )
    store.record_rating(RatingRecord(key=f"rating/{case_no}", rating=rating))
    if rating.bad:
        store.record_audit(_entry("rectification", case_no, "opened", at, score=score, channel="app"))


def suggest(store: Store, no: str, department: str, submitted: datetime, due: datetime) -> None:
    store.record_audit(_entry("suggestion", no, "submitted", submitted, complexity="general", due_at=due.isoformat()))
    store.notify(
        Notice(
            key=f"suggestion/{no}/received",
            recipient=department,
            kind="suggestion_received",
            subject_type="suggestion",
            subject_id=no,
            title=f"建议 {no}",
            body="请按期答复",
            at=submitted,
        )
    )


def answer(
    store: Store, no: str, department: str, submitted: datetime, due: datetime, answered: datetime, adopted: bool
) -> None:
    suggest(store, no, department, submitted, due)
    on_time = answered <= due
    store.record_audit(_entry("suggestion", no, "answered", answered, "officer-zhou", adopted=adopted, on_time=on_time))
    entry = Publication(
        suggestion_no=no, topic="周六办理", department=department, complexity="general", adopted=adopted,
        reason="" if adopted else "已有预约办理", submitted_at=submitted, answered_at=answered, on_time=on_time,
    )
    PublicationActivities(store.engine).publish_answer(PublicationRecord(key=f"publish/{no}", entry=entry))


def risk(engine: Engine, no: str, level: str, department: str, reported: datetime, acknowledged: datetime | None) -> None:
    RiskActivities(engine, None).record_risk(
        RiskEntry(
            risk_no=no, source="manual", type="execution", title="窗口排队过长", responsible_department=department,
            owner=f"head:{department}", level=level, state="awaiting_plan" if acknowledged else "awaiting_acknowledgement",
            reported_at=reported, acknowledged_at=acknowledged,
        )
    )


def write_month(store: Store) -> None:
    """March 2025 of one hall (the module docstring tells the story)."""
    EO, RE, HF = "enterprise-opening", "real-estate-registration", "housing-fund-withdrawal"
    (CaseTrail(store, "C-01", EO, march(3, 9)).accept(march(3, 9, 5), march(5))
     .decide(CaseStage.APPROVED, march(4, 15), "officer-li", used=1))
    (CaseTrail(store, "C-02", EO, march(4, 10)).accept(march(4, 10, 5), march(6), deferral_due=march(6))
     .event("materials_supplemented", march(5, 11), CaseStage.ACCEPTED, "applicant", materials=["residence-proof"])
     .event("materials_complete", march(5, 11), CaseStage.ACCEPTED, "applicant")
     .decide(CaseStage.APPROVED, march(6, 10), "officer-li", used=2))
    (CaseTrail(store, "C-03", EO, march(5, 9)).accept(march(5, 9, 5), march(7), deferral_due=march(7))
     .event("terminated", march(7), CaseStage.TERMINATED, state={"closed_at": march(7), "outcome": "terminated"},
            missing=["residence-proof"]))
    (CaseTrail(store, "C-04", HF, march(10, 9)).accept(march(10, 9), march(12))
     .decide(CaseStage.APPROVED, march(10, 9, 1), AUTOMATIC_RULE, used=0))
    (CaseTrail(store, "C-05", RE, march(12, 9)).accept(march(12, 9, 5), march(20))
     .event("consulting", march(12, 9, 6), CaseStage.CONSULTING))
    (CaseTrail(store, "C-06", RE, march(13, 9)).accept(march(13, 9, 5), march(21))
     .decide(CaseStage.REJECTED, march(14, 16), "officer-wang", used=1))
    CaseTrail(store, "C-07", RE, march(31, 16)).accept(march(31, 16, 5), datetime(2025, 4, 8, tzinfo=SHANGHAI),
                                                         deferral_due=datetime(2025, 4, 4, tzinfo=SHANGHAI))
    for case_no, received in [("C-08", datetime(2025, 2, 28, 23, 30, tzinfo=SHANGHAI)),
                              ("C-09", datetime(2025, 4, 1, 0, 10, tzinfo=SHANGHAI))]:
        (CaseTrail(store, case_no, EO, received).accept(received, received + timedelta(days=2))
         .decide(CaseStage.APPROVED, received + timedelta(hours=2), "officer-li", used=0))

    rate(store, "C-01", EO, 5, march(5, 10))
    rate(store, "C-02", EO, 2, march(7, 10))
    store.record_audit(_entry("rectification", "C-02", "verified", march(8, 10), "officer-li", malicious=False))
    store.record_audit(_entry("rectification", "C-02", "rectified", march(12, 10), "officer-li"))
    rate(store, "C-03", EO, 1, march(8, 10))
    store.record_audit(_entry("rectification", "C-03", "found_malicious", march(9, 10), "officer-li", malicious=True))
    store.record_audit(_entry("rectification", "C-03", "set_aside_confirmed", march(10, 10), "officer-zhao"))
    store.record_audit(_entry("rectification", "C-03", "set_aside", march(10, 10), "officer-zhao"))
    rate(store, "C-04", HF, 4, march(11, 10))
    rate(store, "C-06", RE, 1, march(15, 10))
    rate(store, "C-08", EO, 3, march(1, 8))

    answer(store, "S-01", "natural-resources", march(3, 10), march(25), march(10, 10), adopted=True)
    answer(store, "S-02", "market-regulation", march(4, 10), march(26), march(28, 10), adopted=False)
    suggest(store, "S-03", "market-regulation", march(20, 10), datetime(2025, 4, 11, tzinfo=SHANGHAI))
    suggest(store, "S-04", "natural-resources", march(5, 10), march(27))
    february_10 = datetime(2025, 2, 10, 10, tzinfo=SHANGHAI)
    answer(store, "S-05", "natural-resources", february_10, march(4), march(2, 10), adopted=True)

    risk(store.engine, "R-01", "red", "market-regulation", march(6, 10), march(6, 11, 30))
    risk(store.engine, "R-02", "red", "natural-resources", march(15, 8), march(15, 8, 30))
    risk(store.engine, "R-03", "yellow", "market-regulation", march(20, 9), march(21, 9))
    risk(store.engine, "R-04", "yellow", "housing-fund-center", march(25, 9), None)
    risk(store.engine, "R-05", "blue", "market-regulation", datetime(2025, 2, 20, tzinfo=SHANGHAI), march(2))


@pytest.fixture
def month(store: Store) -> Engine:
    write_month(store)
    return store.engine


def _levels(r: report.Report) -> dict[str, tuple[int, int, float | None]]:
    return {x.level: (x.risks, x.acknowledged, x.avg_hours_to_acknowledge) for x in r.risks.by_level}


# --- the figures ----------------------------------------------------------------------------------


def test_report_counts_the_month_by_its_local_dates(month):
    r = report.build_report(month, MARCH_1, MARCH_31, now=AS_OF)

    cases = r.cases
    assert cases.received == 7  # C-08 (02-28 23:30) and C-09 (04-01 00:10 local, 03-31 UTC) left out
    assert {(c.matter_code, c.stage): c.cases for c in cases.by_matter_stage} == {
        ("enterprise-opening", "approved"): 2,
        ("enterprise-opening", "terminated"): 1,
        ("housing-fund-withdrawal", "approved"): 1,
        ("real-estate-registration", "accepted"): 1,
        ("real-estate-registration", "consulting"): 1,
        ("real-estate-registration", "rejected"): 1,
    }
    assert (cases.decided, cases.decided_on_time, cases.on_time_rate) == (4, 3, 0.75)  # C-02 late
    assert (cases.avg_working_days_used, cases.avg_promised_days, cases.avg_statutory_days) == (1.0, 2.0, 7.0)
    assert cases.compression_rate == pytest.approx(1 - 4 / 28, abs=1e-4)
    assert (cases.decided_automatically, cases.automatic_share) == (1, 0.25)

    assert r.deferrals.model_dump() == {
        "accepted_with_deferral": 3,
        "supplemented_on_time": 1,  # C-02
        "missed": 1,  # C-03 terminated
        "pending": 1,  # C-07, due 04-04
        "closed_otherwise": 0,
        "on_time_share": 0.5,
    }

    ratings = r.ratings
    assert (ratings.ratings, ratings.satisfied, ratings.satisfaction_rate) == (6, 2, pytest.approx(2 / 6, abs=1e-4))
    assert (ratings.bad_reviews, ratings.rectified, ratings.set_aside) == (3, 1, 1)
    assert ratings.rectification_rate == pytest.approx(2 / 3, abs=1e-4)  # C-06 still open

    s = r.suggestions
    assert (s.received, s.answered, s.answered_on_time, s.open_overdue) == (4, 2, 1, 1)
    assert s.answered_on_time_share == pytest.approx(1 / 3, abs=1e-4)  # S-04 overdue counts against
    assert (s.adopted, s.adoption_rate) == (1, 0.5)

    assert r.risks.risks == 4
    assert _levels(r) == {"red": (2, 2, 1.0), "yellow": (2, 1, 24.0), "blue": (0, 0, None)}
    assert r.notes == []


def test_department_filter_applies_to_every_section_and_matter_filter_to_cases_and_ratings(month):
    r = report.build_report(month, MARCH_1, MARCH_31, department="market-regulation", now=AS_OF)

    assert r.filter.department == "market-regulation"
    assert (r.cases.received, r.cases.decided, r.cases.on_time_rate, r.cases.automatic_share) == (3, 2, 0.5, 0.0)
    assert (r.deferrals.accepted_with_deferral, r.deferrals.on_time_share) == (2, 0.5)
    assert (r.ratings.ratings, r.ratings.satisfaction_rate, r.ratings.bad_reviews, r.ratings.rectification_rate) == (
        4, 0.25, 2, 1.0,
    )
    s = r.suggestions
    assert (s.received, s.answered, s.open_overdue, s.answered_on_time_share, s.adoption_rate) == (2, 1, 0, 0.0, 0.0)
    assert _levels(r) == {"red": (1, 1, 1.5), "yellow": (1, 1, 24.0), "blue": (0, 0, None)}

    r = report.build_report(month, MARCH_1, MARCH_31, matter="real-estate-registration", now=AS_OF)

    assert (r.cases.received, r.cases.decided, r.cases.on_time_rate) == (3, 1, 1.0)
    assert (r.deferrals.accepted_with_deferral, r.deferrals.pending, r.deferrals.on_time_share) == (1, 1, None)
    assert (r.ratings.ratings, r.ratings.satisfaction_rate, r.ratings.rectification_rate) == (1, 0.0, 0.0)
    assert r.suggestions.received == 4 and r.risks.risks == 4
    assert r.notes and "matter filter does not apply" in r.notes[0]


def test_a_period_with_nothing_in_it_has_no_shares_instead_of_errors(month):
    r = report.build_report(month, date(2024, 1, 1), date(2024, 1, 31), now=AS_OF)

    assert r.cases.received == 0 and r.cases.by_matter_stage == []
    shares = [r.cases.on_time_rate, r.cases.automatic_share, r.cases.compression_rate, r.cases.avg_working_days_used,
              r.deferrals.on_time_share, r.ratings.satisfaction_rate, r.ratings.rectification_rate,
              r.suggestions.answered_on_time_share, r.suggestions.adoption_rate]
    assert shares == [None] * len(shares)
    table = _shown(r, 80)
    assert "(no cases)" in table and "—" in table
    with pytest.raises(ValueError, match="starts"):
        report.build_report(month, MARCH_31, MARCH_1)


# --- rendering and the command line: the figures are the same on both databases, so SQLite only ---

sqlite_only = pytest.mark.parametrize("db_engine", ["sqlite"], indirect=True)


@sqlite_only
def test_json_and_csv_read_back_to_the_same_figures(month):
    r = report.build_report(month, MARCH_1, MARCH_31, now=AS_OF)

    assert report.Report.model_validate_json(report.render(r, "json")) == r

    rows = list(csv.DictReader(io.StringIO(report.render(r, "csv"))))
    values = {(row["section"], row["metric"]): row["value"] for row in rows}
    assert values[("filter", "period_from")] == "2025-03-01" and values[("filter", "department")] == ""
    assert values[("cases_by_matter_stage", "enterprise-opening/approved")] == "2"
    assert values[("cases", "on_time_rate")] == "0.75"
    assert values[("ratings", "bad_reviews")] == "3"
    assert values[("risks", "blue.avg_hours_to_acknowledge")] == ""  # no denominator: empty, not an error
    assert len(values) == len(rows)  # one row per metric


def _shown(r: report.Report, width: int) -> str:
    """The report as `operator report` prints it on a terminal `width` columns wide."""
    from rich.console import Console

    from cli import render

    out = io.StringIO()
    console = Console(file=out, width=width, color_system=None)
    for part in render.kpi_report(r):
        console.print(part)
    return "".join(line.rstrip() + "\n" for line in out.getvalue().splitlines())


@sqlite_only
@pytest.mark.parametrize("width", (80, 120))
def test_the_report_reads_as_tables_each_figure_beside_its_label(month, width):
    r = report.build_report(month, MARCH_1, MARCH_31, now=AS_OF)
    table = _shown(r, width)

    assert table.startswith("KPI report 2025-03-01 to 2025-03-31")
    assert "…" not in table and max(map(len, table.splitlines())) <= width
    assert re.search(r"^  on-time rate \(promised limit\) +75\.0% +100%$", table, re.M)
    matrix = table.split("Cases by matter and stage\n")[1].split("\n\n")[0].splitlines()
    assert matrix[0].split() == ["matter", "accepted", "consulting", "approved", "rejected", "terminated", "total"]
    assert set(matrix[1]) == {"─"}
    assert matrix[-1].split() == ["total", "1", "1", "3", "1", "1", "7"]
    figures = table.split("Cases (办件)\n")[1].splitlines()
    shown = [line for line in figures if line.startswith("  ")]
    assert len(shown) == len(report.metrics(r))
    for line, m in zip(shown, report.metrics(r)):
        assert line.split("  ")[1].strip() == m.label  # each label on one line, whole
        assert report.shown(m.value, m.kind) in line
    assert len({line.rindex(report.shown(m.value, m.kind)[-1]) for line, m in zip(shown, report.metrics(r))
                if m.name not in report.TARGETS}) == 1  # values right-aligned in one column


@sqlite_only
def test_a_matrix_too_wide_for_the_terminal_is_given_as_rows_per_matter_and_stage(month):
    r = report.build_report(month, MARCH_1, MARCH_31, now=AS_OF)
    table = _shown(r, 60)

    assert "…" not in table and max(map(len, table.splitlines())) <= 60
    rows = table.split("Cases by matter and stage\n")[1].split("\n\n")[0].splitlines()
    assert rows[0].split() == ["matter", "stage", "cases"]
    assert rows[-1].split() == ["total", "7"]
    counts = {(m.matter_code, m.stage): m.cases for m in r.cases.by_matter_stage}
    assert sum(int(line.split()[-1]) for line in rows[2:-1]) == sum(counts.values())


@sqlite_only
def test_run_defaults_to_the_last_30_days_and_draws_the_chart(month, tmp_path):
    chart = tmp_path / "kpi.png"
    r = report.run(month, chart=chart, now=AS_OF)

    assert report.Report.model_validate(json.loads(report.render(r, "json"))) == r
    assert (r.filter.period_from, r.filter.period_to) == (date(2025, 3, 3), date(2025, 4, 1))
    assert r.cases.received == 8  # 03-03..04-01: C-09 in, C-08 out
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and chart.stat().st_size > 10_000


@sqlite_only
def test_the_report_command_takes_the_period_and_filters_from_flags(month, monkeypatch, capsys):
    from cli.app import main
    from settings import get_settings

    monkeypatch.setenv("HALLFLOW_DATABASE_URL", month.url.render_as_string(hide_password=False))
    get_settings.cache_clear()
    try:
        flags = ["--from", "2025-03-01", "--to", "2025-03-31", "--department", "natural-resources"]
        assert main(["operator", "report", *flags, "-o", "csv"]) == 0
        rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
        assert ["cases", "received", "3"] in rows and ["filter", "department", "natural-resources"] in rows
        assert main(["operator", "report", *flags, "--format", "csv"]) == 0  # the old flag, kept for scripts
        assert ["cases", "received", "3"] in list(csv.reader(io.StringIO(capsys.readouterr().out)))
        assert main(["operator", "report", *flags, "-o", "json"]) == 0
        figures = report.Report.model_validate_json(capsys.readouterr().out)
        assert figures.cases.received == 3 and figures.filter.department == "natural-resources"
        assert main(["operator", "report", *flags]) == 0
        text = capsys.readouterr().out
        assert text.startswith("KPI report 2025-03-01 to 2025-03-31") and "{" not in text
        assert re.search(r"^  received +3$", text, re.M)
        assert main(["operator", "report", "--from", "March"]) == 2
        assert "not a date (YYYY-MM-DD): 'March'" in capsys.readouterr().err
    finally:
        get_settings.cache_clear()
