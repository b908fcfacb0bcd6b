"""hallflow for service halls: start a case, supplement materials, withdraw, take part in its
approval (opinions, review, resubmit, transfer, vote, urge), rate it, rectify a bad review, submit
and answer public suggestions, list a department's open feedback work, show status.

    python starter.py start --file docs/examples/case-enterprise-opening.json
    python starter.py start --case-no HALL1-0001 --matter enterprise-opening --hall hall-central \\
        --clerk clerk-01 --applicant-id app-0001 --materials business-licence-application,... [--commitment-signed]
    python starter.py supplement HALL1-0001 --materials residence-proof --by clerk-01
    python starter.py withdraw HALL1-0001 --reason "..." --by applicant
    python starter.py opinion HALL1-0001 --department taxation --officer tax-01 --agree [--opinion "..."]
    python starter.py review HALL1-0001 --reviewer officer-li --decision approve|return|reject \
        [--opinion "..."] [--correction "..." --correction "..."]
    python starter.py resubmit HALL1-0001 --materials residence-proof [--note "..."] [--by applicant]
    python starter.py transfer HALL1-0001 --by officer-li --to officer-wang --reason "..."
    python starter.py vote HALL1-0001 --member officer-zhao --choice approve|reject|defer [--opinion "..."]
    python starter.py urge HALL1-0001 --by hall-central [--note "..."]
    python starter.py rate HALL1-0001 --score 1..5 [--channel window] [--comment "..."]
    python starter.py verify HALL1-0001 --officer officer-li --finding "..." [--malicious]
    python starter.py confirm-set-aside HALL1-0001 --officer officer-zhao --reason "..."
    python starter.py rectify HALL1-0001 --officer officer-li --action "..." --reply "..."
    python starter.py suggest --no SUG-0001 --submitter-id citizen-1 --topic "..." --content "..." \
        --department natural-resources [--complexity general|complex]
    python starter.py respond SUG-0001 --department natural-resources --officer officer-zhou \
        --adopted|--no-adopted [--reason "..."] [--measures "..."]
    python starter.py reclassify SUG-0001 --complexity complex --reason "..." --by coordinator-1
    python starter.py open --department market-regulation [--overdue]
    python starter.py risk --no R-0001 --type execution --title "..." --probability 0.6 --impact high \
        --department market-regulation --owner officer-li [--level red]
    python starter.py acknowledge R-0001 --officer officer-li --group emergency-group-1
    python starter.py plan R-0001 --officer officer-li --plan "..." --due 2026-12-01T18:00+08:00
    python starter.py regrade R-0001 --level red --reason "..." --by officer-zhao
    python starter.py risk-review R-0001 --by officer-li --cause "..." --what-worked "..." --what-changes "..."
    python starter.py resolve R-0001 --officer officer-li --summary "..."
    python starter.py risks [--department D] [--level red]
    python starter.py inbox --actor officer-li | --department market-regulation
    python starter.py report [--from 2026-11-01 --to 2026-11-30 --department D --matter M] \
        [--format table|json|csv] [--chart report.png]
    python starter.py demo                       # a scripted day against the running worker, then the report
    python starter.py status HALL1-0001
    python starter.py setup                      # register search attributes (idempotent)
    python starter.py schema [--out docs/schemas]

Exit codes: 0 done, 1 refused by hallflow (the message says why), 2 bad input, 3 server unreachable.
"""

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path

import structlog
from pydantic import BaseModel, ValidationError
from temporalio.client import Client, WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

import report
from activities.catalog import CatalogError, load_catalog
from contract import search
from contract.approval import DepartmentOpinion, Resubmit, Review, Transfer, Urge, Vote
from contract.rating import ConfirmSetAside, Rate, Rectify, Verify
from contract.risk import Acknowledge, Regrade, Resolve, RiskReport, RiskReviewRecord, SubmitPlan, risk_workflow_id
from contract.suggestion import Reclassify, Respond, Suggestion, suggestion_workflow_id
from contract.case import (
    Applicant,
    CaseApplication,
    CaseOutcome,
    CaseStatus,
    SupplementMaterials,
    SupplementResult,
    Withdraw,
    case_workflow_id,
)
from contract.converter import describe
from logs import configure_logging
from settings import Settings, connect, get_settings
from workflows.case import CaseWorkflow
from workflows.rectification import RectificationWorkflow
from workflows.risk import RiskWorkflow
from workflows.suggestion import SuggestionWorkflow

log = structlog.get_logger()


class Refused(Exception):
    """hallflow (or the input check before it) said no; exit code 1 or 2."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def ui_link(settings: Settings, workflow_id: str) -> str:
    return f"{settings.ui_url}/namespaces/{settings.namespace}/workflows/{workflow_id}"


def _print(model: BaseModel) -> None:
    print(model.model_dump_json(indent=2))


def application_from(args: argparse.Namespace) -> CaseApplication:
    try:
        if args.file:
            app = CaseApplication.model_validate_json(Path(args.file).read_text(encoding="utf-8"))
            # --case-no with --file: the same application under a new case number (demos, retries).
            return app.model_copy(update={"case_no": args.case_no}) if args.case_no else app
        missing = [flag for flag in ("case_no", "matter", "hall", "clerk", "applicant_id") if not getattr(args, flag)]
        if missing:
            raise Refused("start needs --file, or all of: " + ", ".join("--" + m.replace("_", "-") for m in missing), 2)
        return CaseApplication(
            case_no=args.case_no,
            matter_code=args.matter,
            hall=args.hall,
            clerk=args.clerk,
            applicant=Applicant(applicant_id=args.applicant_id, name=args.applicant_name, phone=args.applicant_phone),
            materials=_codes(args.materials),
            commitment_signed=args.commitment_signed,
        )
    except ValidationError as err:
        raise Refused(f"invalid case application: {describe(err)}", 2) from None
    except OSError as err:
        raise Refused(f"cannot read {args.file}: {err.strerror}", 2) from None


def _codes(text: str | None) -> list[str]:
    return [c.strip() for c in (text or "").split(",") if c.strip()]


def check_matter(settings: Settings, code: str) -> None:
    """Refuse an unknown matter at the window, before a case number is spent on it."""
    try:
        catalog = load_catalog(settings.catalog_file)
    except CatalogError as err:
        raise Refused(f"the matter catalog is invalid:\n{err}", 2) from None
    if code not in catalog:
        raise Refused(f"unknown matter {code!r}; known matters: {', '.join(sorted(catalog))}", 2)


async def start(client: Client, settings: Settings, app: CaseApplication) -> str:
    workflow_id = case_workflow_id(app.case_no)
    try:
        await client.start_workflow(
            CaseWorkflow.run,
            app,
            id=workflow_id,
            task_queue=settings.task_queue,
            # A case number names one case forever, even after it closed.
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(search.CASE_STAGE, "received"),
                    SearchAttributePair(search.MATTER_CODE, app.matter_code),
                    SearchAttributePair(search.HALL, app.hall),
                ]
            ),
            static_summary=f"case {app.case_no} · {app.matter_code}",
            static_details=f"Case **{app.case_no}**, matter `{app.matter_code}`, accepted at {app.hall} by {app.clerk}.",
        )
    except WorkflowAlreadyStartedError:
        handle = client.get_workflow_handle(workflow_id)
        try:
            status = await handle.query(CaseWorkflow.status)
            where = f"it is {status.stage.value}"
        except (RPCError, WorkflowFailureError):
            where = "see the UI"
        raise Refused(f"case {app.case_no} already exists ({where}): {ui_link(settings, workflow_id)}") from None
    log.info("case_started", case_no=app.case_no, matter=app.matter_code, workflow_id=workflow_id)
    return workflow_id


async def _update(client: Client, case_no: str, update, arg, workflow_id: str | None = None):
    handle = client.get_workflow_handle(workflow_id or case_workflow_id(case_no))
    try:
        return await handle.execute_update(update, arg)
    except WorkflowUpdateFailedError as err:
        raise Refused(f"refused: {err.cause.message if err.cause else err}") from None
    except RPCError as err:
        raise Refused(f"case {case_no}: {err.message}") from None


async def status(client: Client, case_no: str) -> CaseStatus:
    try:
        return await client.get_workflow_handle(case_workflow_id(case_no)).query(CaseWorkflow.status)
    except RPCError as err:
        raise Refused(f"case {case_no}: {err.message}") from None


FEEDBACK_TYPES = ("RectificationWorkflow", "SuggestionWorkflow")


def open_feedback_query(department: str, overdue_only: bool) -> str:
    """Visibility query for a department's open feedback work (bad reviews, suggestions)."""
    _query_value(department, "department")
    types = ", ".join(f'"{t}"' for t in FEEDBACK_TYPES)
    query = f'Department = "{department}" AND ExecutionStatus = "Running" AND WorkflowType IN ({types})'
    return query + (" AND StepOverdue = true" if overdue_only else "")


async def open_feedback(client: Client, department: str, overdue_only: bool) -> list[dict]:
    """What is open (and overdue) for a department, soonest due first, from search attributes."""
    rows = []
    async for wf in client.list_workflows(open_feedback_query(department, overdue_only)):
        attrs = wf.typed_search_attributes
        due = attrs.get(search.STEP_DUE_AT)
        rows.append(
            {
                "workflow_id": wf.id,
                "type": wf.workflow_type,
                "stage": attrs.get(search.FEEDBACK_STAGE),
                "due_at": due.isoformat() if due else None,
                "overdue": bool(attrs.get(search.STEP_OVERDUE)),
            }
        )
    return sorted(rows, key=lambda r: r["due_at"] or "9999")


def _query_value(value: str, what: str) -> str:
    """A value safe inside a visibility query's double quotes (ids and codes only)."""
    if not value or not all(c.isalnum() or c in "-_:.@" for c in value):
        raise Refused(f"invalid {what} {value!r}: letters, digits and - _ : . @ only", 2)
    return value


def inbox_query(actor: str | None, department: str | None) -> str:
    """Visibility query for what waits on an actor (officer, `applicant:<id>`, department code) or
    on a department: its code, its head and coordinator, or its own workflows' officers."""
    if actor:
        return f'WaitingOn = "{_query_value(actor, "actor")}" AND ExecutionStatus = "Running"'
    d = _query_value(department or "", "department")
    return f'ExecutionStatus = "Running" AND (WaitingOn IN ("{d}", "head:{d}", "coordinator:{d}") OR Department = "{d}")'


OUTSIDERS = ("applicant:", "submitter:")  # waits on people outside the administration


async def inbox(client: Client, settings: Settings, actor: str | None, department: str | None) -> list[dict]:
    """The task list Temporal lacks: open workflows waiting on `actor` or `department`, oldest due first."""
    rows = []
    async for wf in client.list_workflows(inbox_query(actor, department)):
        attrs = wf.typed_search_attributes
        waiting = list(attrs.get(search.WAITING_ON) or [])
        if not waiting or (department and all(w.startswith(OUTSIDERS) for w in waiting)):
            continue  # nothing awaited, or only the applicant: not the department's to do
        due = attrs.get(search.STEP_DUE_AT)
        rows.append(
            {
                "due_at": due.isoformat() if due else None,
                "workflow_id": wf.id,
                "type": wf.workflow_type,
                "stage": attrs.get(search.CASE_STAGE) or attrs.get(search.FEEDBACK_STAGE) or attrs.get(search.RISK_STATE),
                "waiting_on": waiting,
                "overdue": bool(attrs.get(search.CASE_OVERDUE) or attrs.get(search.STEP_OVERDUE)),
                "link": ui_link(settings, wf.id),
            }
        )
    return sorted(rows, key=lambda r: r["due_at"] or "9999")


async def run_demo(client: Client, settings: Settings) -> None:
    """The scripted day (demo.py), then today's report and where to look in the UI."""
    from datetime import datetime, timezone

    import demo
    from activities.db import make_engine
    from contract.common import SHANGHAI

    await search.ensure_search_attributes(client)
    logging.getLogger().setLevel(logging.WARNING)  # the progress bar, not a log line per case
    day = demo.Day(client, settings, demo.Starters(start, start_risk, start_suggestion))
    try:
        await demo.check_worker(client, settings)
        await day.run()
    except demo.NoWorker as err:
        raise Refused(str(err)) from None
    today = datetime.now(timezone.utc).astimezone(SHANGHAI).date()
    print(f"A day in hall-central: {len(day.cases)} cases ({day.prefix}-01 … {day.prefix}-{day.count:02d}), "
          "ratings, a suggestion and a risk.\n")
    print(report.render(report.build_report(make_engine(settings.database_url), today, today)))
    print("\nIn the Web UI:")
    for link in day.links():
        print("  " + link)
    print("\nWhat waits on officer-li: python starter.py inbox --actor officer-li")


def write_schemas(out: Path) -> list[Path]:
    """The integration contract's JSON Schemas, generated from the pydantic models."""
    from contract import schemas

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in schemas.all_schemas().items():
        path = out / f"{name}.json"
        path.write_text(json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    return written


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="starter.py", description="hallflow for service halls")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("start", help="start a case (from flags or a JSON file)")
    s.add_argument("--file", help="a CaseApplication as JSON (see docs/integration.md)")
    s.add_argument("--case-no")
    s.add_argument("--matter", help="matter code from data/matters.toml")
    s.add_argument("--hall")
    s.add_argument("--clerk")
    s.add_argument("--applicant-id", help="opaque applicant id (no personal data)")
    s.add_argument("--applicant-name")
    s.add_argument("--applicant-phone")
    s.add_argument("--materials", help="comma-separated material codes handed in")
    s.add_argument("--commitment-signed", action="store_true", help="the applicant signed the 告知承诺书")

    s = sub.add_parser("supplement", help="hand in deferred materials")
    s.add_argument("case_no")
    s.add_argument("--materials", required=True, help="comma-separated material codes")
    s.add_argument("--by", required=True, help="who handed them in (clerk id)")

    s = sub.add_parser("withdraw", help="the applicant withdraws before a decision")
    s.add_argument("case_no")
    s.add_argument("--reason", required=True)
    s.add_argument("--by", required=True)

    s = sub.add_parser("opinion", help="a consulted department answers (并联审批)")
    s.add_argument("case_no")
    s.add_argument("--department", required=True)
    s.add_argument("--officer", required=True)
    s.add_argument("--agree", action=argparse.BooleanOptionalAction, required=True)
    s.add_argument("--opinion", default="")

    s = sub.add_parser("review", help="comprehensive review (综合研判): approve, return or reject")
    s.add_argument("case_no")
    s.add_argument("--reviewer", required=True)
    s.add_argument("--decision", required=True, choices=["approve", "return", "reject"])
    s.add_argument("--opinion", default="")
    s.add_argument("--correction", action="append", default=[], help="one correction; repeat for each (return)")

    s = sub.add_parser("resubmit", help="the applicant's corrections after a return (补正)")
    s.add_argument("case_no")
    s.add_argument("--materials", default="", help="comma-separated material codes corrected or added")
    s.add_argument("--note", default="")
    s.add_argument("--by", default="applicant")

    s = sub.add_parser("transfer", help="hand the review to another allowed reviewer (转办)")
    s.add_argument("case_no")
    s.add_argument("--by", required=True)
    s.add_argument("--to", required=True)
    s.add_argument("--reason", required=True)

    s = sub.add_parser("vote", help="a panel member votes (集体决策)")
    s.add_argument("case_no")
    s.add_argument("--member", required=True)
    s.add_argument("--choice", required=True, choices=["approve", "reject", "defer"])
    s.add_argument("--opinion", default="")

    s = sub.add_parser("urge", help="chase whoever holds the case (催办), once per working day")
    s.add_argument("case_no")
    s.add_argument("--by", required=True)
    s.add_argument("--note", default="")

    s = sub.add_parser("rate", help="the applicant rates an ended case (好差评): 5 very satisfied … 1")
    s.add_argument("case_no")
    s.add_argument("--score", required=True, type=int, choices=range(1, 6))
    s.add_argument("--channel", default="window", choices=["window", "app", "web", "sms", "hotline", "kiosk"])
    s.add_argument("--comment", default="")

    s = sub.add_parser("verify", help="call back on a bad review (回访核实), within 1 working day")
    s.add_argument("case_no")
    s.add_argument("--officer", required=True)
    s.add_argument("--finding", required=True)
    s.add_argument("--malicious", action="store_true", help="found malicious: a second officer must confirm")

    s = sub.add_parser("confirm-set-aside", help="a second officer confirms a malicious review is set aside")
    s.add_argument("case_no")
    s.add_argument("--officer", required=True)
    s.add_argument("--reason", required=True)

    s = sub.add_parser("rectify", help="rectify or explain a bad review and answer the applicant")
    s.add_argument("case_no")
    s.add_argument("--officer", required=True)
    s.add_argument("--action", required=True, help="the rectification or explanation")
    s.add_argument("--reply", required=True, help="the answer sent to the applicant")

    s = sub.add_parser("suggest", help="submit a public suggestion (意见征集)")
    s.add_argument("--no", required=True, help="suggestion number")
    s.add_argument("--submitter-id", required=True, help="opaque id of the submitter (never published)")
    s.add_argument("--topic", required=True)
    s.add_argument("--content", required=True)
    s.add_argument("--department", required=True, help="department that must answer")
    s.add_argument("--complexity", choices=["general", "complex"], default="general")

    s = sub.add_parser("respond", help="a department answers a suggestion (adopted or not, with reasons)")
    s.add_argument("case_no", metavar="suggestion_no")
    s.add_argument("--department", required=True)
    s.add_argument("--officer", required=True)
    s.add_argument("--adopted", action=argparse.BooleanOptionalAction, required=True)
    s.add_argument("--reason", default="", help="required when not adopted")
    s.add_argument("--measures", default="")

    s = sub.add_parser("reclassify", help="general <-> complex, with a reason (deadline recomputed)")
    s.add_argument("case_no", metavar="suggestion_no")
    s.add_argument("--complexity", required=True, choices=["general", "complex"])
    s.add_argument("--reason", required=True)
    s.add_argument("--by", required=True)

    s = sub.add_parser("risk", help="report a risk (风险清单); its level comes from data/risk.toml unless given")
    s.add_argument("--no", required=True, help="risk number")
    s.add_argument("--type", required=True, choices=["policy", "technology", "execution", "social"])
    s.add_argument("--title", required=True)
    s.add_argument("--description", default="")
    s.add_argument("--probability", required=True, type=float)
    s.add_argument("--impact", required=True, choices=["low", "medium", "high"])
    s.add_argument("--department", required=True, help="responsible department")
    s.add_argument("--owner", required=True)
    s.add_argument("--level", choices=["blue", "yellow", "red"])

    s = sub.add_parser("acknowledge", help="the emergency (handling) group has convened")
    s.add_argument("case_no", metavar="risk_no")
    s.add_argument("--officer", required=True)
    s.add_argument("--group", required=True)

    s = sub.add_parser("plan", help="submit a risk's handling plan")
    s.add_argument("case_no", metavar="risk_no")
    s.add_argument("--officer", required=True)
    s.add_argument("--plan", required=True)
    s.add_argument("--due", required=True, help="ISO date-time the plan is carried out by, e.g. 2026-12-01T18:00+08:00")

    s = sub.add_parser("regrade", help="another level for a risk, with a reason")
    s.add_argument("case_no", metavar="risk_no")
    s.add_argument("--level", required=True, choices=["blue", "yellow", "red"])
    s.add_argument("--reason", required=True)
    s.add_argument("--by", required=True)

    s = sub.add_parser("risk-review", help="a risk's review (复盘), needed before it is resolved")
    s.add_argument("case_no", metavar="risk_no")
    s.add_argument("--by", required=True)
    s.add_argument("--cause", required=True)
    s.add_argument("--what-worked", required=True)
    s.add_argument("--what-changes", required=True)

    s = sub.add_parser("resolve", help="close a risk (after its plan and review)")
    s.add_argument("case_no", metavar="risk_no")
    s.add_argument("--officer", required=True)
    s.add_argument("--summary", required=True)

    s = sub.add_parser("risks", help="the risk register, from the database")
    s.add_argument("--department")
    s.add_argument("--level", choices=["blue", "yellow", "red"])

    s = sub.add_parser("published", help="the public list of answered suggestions (采纳公示), from the database")
    s.add_argument("--department")

    s = sub.add_parser("open", help="a department's open bad-review rectifications and suggestions, soonest due first")
    s.add_argument("--department", required=True)
    s.add_argument("--overdue", action="store_true", help="only those past their step's deadline")

    s = sub.add_parser("report", help="the hall's KPIs for a period, from the database (table, json or csv; --chart)")
    report.add_arguments(s)

    sub.add_parser("demo", help="a scripted day in a service hall against the running server and worker, then the report")

    s = sub.add_parser("inbox", help="what waits on an officer, an applicant or a department, oldest due first")
    who = s.add_mutually_exclusive_group(required=True)
    who.add_argument("--actor", help="officer-li, applicant:<id>, a department code as consulted, head:<dept>")
    who.add_argument("--department", help="everything the department owes: its code, head, coordinator, officers")

    s = sub.add_parser("status", help="where a case stands")
    s.add_argument("case_no")

    sub.add_parser("setup", help="register hallflow's search attributes on the namespace (idempotent)")

    s = sub.add_parser("dev-calendar", help="DEVELOPMENT ONLY: data/calendar plus weekends-only placeholders (make run)")
    s.add_argument("out", type=Path)

    s = sub.add_parser("schema", help="write the contract's JSON Schemas")
    s.add_argument("--out", default="docs/schemas")
    return p


async def run(args: argparse.Namespace, settings: Settings) -> None:
    if args.command == "dev-calendar":
        from datetime import date, timedelta

        from activities.calendar import with_placeholders

        for year in with_placeholders(settings.calendar_dir, args.out, date.today() + timedelta(days=366)):
            print(f"WARNING: no {year}.toml in {settings.calendar_dir}: {args.out} has a weekends-only placeholder "
                  "(development only; add the State Council's table for production)", file=sys.stderr)
        return
    if args.command == "schema":
        for path in write_schemas(Path(args.out)):
            print(path)
        return
    if args.command == "risks":
        from activities.db import make_engine
        from activities.risk import RiskActivities

        entries = RiskActivities(make_engine(settings.database_url), None).register(args.department, args.level)
        print(json.dumps([e.model_dump(mode="json") for e in entries], indent=2, ensure_ascii=False))
        return
    if args.command == "report":
        from activities.db import make_engine

        try:
            print(report.run(args, make_engine(settings.database_url)))
        except ValueError as err:
            raise Refused(str(err), 2) from None
        return
    if args.command == "published":
        from activities.db import make_engine
        from activities.publication import PublicationActivities

        entries = PublicationActivities(make_engine(settings.database_url)).published(args.department)
        print(json.dumps([e.model_dump(mode="json") for e in entries], indent=2, ensure_ascii=False))
        return
    if args.command == "start":
        app = application_from(args)
        check_matter(settings, app.matter_code)
    if args.command == "suggest":
        try:
            suggestion = Suggestion(
                suggestion_no=args.no, submitter_id=args.submitter_id, topic=args.topic, content=args.content,
                department=args.department, complexity=args.complexity,
            )
        except ValidationError as err:
            raise Refused(f"invalid suggestion: {describe(err)}", 2) from None
    if args.command == "risk":
        try:
            risk = RiskReport(
                risk_no=args.no, type=args.type, title=args.title, description=args.description,
                probability=args.probability, impact=args.impact, responsible_department=args.department,
                owner=args.owner, level=args.level,
            )
        except ValidationError as err:
            raise Refused(f"invalid risk: {describe(err)}", 2) from None
    if args.command in ROUTE_UPDATES:
        update, build = ROUTE_UPDATES[args.command]
        try:
            req = build(args)  # bad input is refused here, before the server is asked
        except ValidationError as err:
            raise Refused(f"invalid {args.command}: {describe(err)}", 2) from None
    try:
        client = await connect(settings)
    except RuntimeError as err:
        raise Refused(
            f"cannot reach Temporal at {settings.temporal_address} ({err}); is it running? (make run starts one)", 3
        ) from None

    if args.command == "demo":
        await run_demo(client, settings)
    elif args.command == "setup":
        added = await search.ensure_search_attributes(client)
        print("search attributes added: " + (", ".join(added) if added else "none (all present)"))
    elif args.command == "start":
        workflow_id = await start(client, settings, app)
        print(f"case {app.case_no} started: workflow id {workflow_id}")
        print(ui_link(settings, workflow_id))
    elif args.command == "supplement":
        try:
            req = SupplementMaterials(materials=_codes(args.materials), submitted_by=args.by)
        except ValidationError as err:
            raise Refused(f"invalid supplement: {describe(err)}", 2) from None
        result: SupplementResult = await _update(client, args.case_no, CaseWorkflow.supplement_materials, req)
        _print(result)
    elif args.command == "withdraw":
        try:
            req = Withdraw(reason=args.reason, requested_by=args.by)
        except ValidationError as err:
            raise Refused(f"invalid withdrawal: {describe(err)}", 2) from None
        outcome: CaseOutcome = await _update(client, args.case_no, CaseWorkflow.withdraw, req)
        _print(outcome)
    elif args.command in ROUTE_UPDATES:
        _print(await _update(client, args.case_no, update, req, _workflow_id(args)))
    elif args.command == "risk":
        workflow_id = await start_risk(client, settings, risk)
        print(f"risk {risk.risk_no} reported: workflow id {workflow_id}")
        print(ui_link(settings, workflow_id))
    elif args.command == "suggest":
        workflow_id = await start_suggestion(client, settings, suggestion)
        print(f"suggestion {suggestion.suggestion_no} submitted: workflow id {workflow_id}")
        print(ui_link(settings, workflow_id))
    elif args.command == "open":
        rows = await open_feedback(client, args.department, args.overdue)
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    elif args.command == "inbox":
        print(json.dumps(await inbox(client, settings, args.actor, args.department), indent=2, ensure_ascii=False))
    elif args.command == "status":
        _print(await status(client, args.case_no))


# The approval route's updates: command -> (update, request from flags); each answers with the status.
ROUTE_UPDATES = {
    "opinion": (
        CaseWorkflow.department_opinion,
        lambda a: DepartmentOpinion(department=a.department, officer=a.officer, agree=a.agree, opinion=a.opinion),
    ),
    "review": (
        CaseWorkflow.review,
        lambda a: Review(reviewer=a.reviewer, decision=a.decision, opinion=a.opinion, corrections=a.correction),
    ),
    "resubmit": (
        CaseWorkflow.resubmit,
        lambda a: Resubmit(materials=_codes(a.materials), note=a.note, submitted_by=a.by),
    ),
    "transfer": (CaseWorkflow.transfer, lambda a: Transfer(by=a.by, to_reviewer=a.to, reason=a.reason)),
    "vote": (CaseWorkflow.vote, lambda a: Vote(member=a.member, choice=a.choice, opinion=a.opinion)),
    "urge": (CaseWorkflow.urge, lambda a: Urge(by=a.by, note=a.note)),
    "rate": (CaseWorkflow.rate, lambda a: Rate(score=a.score, comment=a.comment, channel=a.channel)),
    # The rectification of a case's bad review (workflow rectification-<case_no>).
    "verify": (
        RectificationWorkflow.verify,
        lambda a: Verify(officer=a.officer, finding=a.finding, malicious=a.malicious),
    ),
    "confirm-set-aside": (
        RectificationWorkflow.confirm_set_aside,
        lambda a: ConfirmSetAside(officer=a.officer, reason=a.reason),
    ),
    "rectify": (RectificationWorkflow.rectify, lambda a: Rectify(officer=a.officer, action=a.action, reply=a.reply)),
}
RECTIFICATION_COMMANDS = {"verify", "confirm-set-aside", "rectify"}
SUGGESTION_COMMANDS = {"respond", "reclassify"}
RISK_COMMANDS = {"acknowledge", "plan", "regrade", "risk-review", "resolve"}
ROUTE_UPDATES |= {
    # A risk (workflow risk-<no>); the positional argument is its number.
    "acknowledge": (RiskWorkflow.acknowledge, lambda a: Acknowledge(officer=a.officer, group=a.group)),
    "plan": (
        RiskWorkflow.submit_plan,
        lambda a: SubmitPlan(officer=a.officer, plan=a.plan, due=a.due),  # pydantic parses and checks the time
    ),
    "regrade": (RiskWorkflow.regrade, lambda a: Regrade(level=a.level, reason=a.reason, by=a.by)),
    "risk-review": (
        RiskWorkflow.review,
        lambda a: RiskReviewRecord(by=a.by, cause=a.cause, what_worked=a.what_worked, what_changes=a.what_changes),
    ),
    "resolve": (RiskWorkflow.resolve, lambda a: Resolve(officer=a.officer, summary=a.summary)),
}
ROUTE_UPDATES |= {
    # A public suggestion (workflow suggestion-<no>); the positional argument is its number.
    "respond": (
        SuggestionWorkflow.respond,
        lambda a: Respond(
            department=a.department, officer=a.officer, adopted=a.adopted, reason=a.reason, measures=a.measures
        ),
    ),
    "reclassify": (
        SuggestionWorkflow.reclassify,
        lambda a: Reclassify(complexity=a.complexity, reason=a.reason, by=a.by),
    ),
}


def _workflow_id(args: argparse.Namespace) -> str:
    if args.command in RECTIFICATION_COMMANDS:
        return f"rectification-{args.case_no}"
    if args.command in SUGGESTION_COMMANDS:
        return suggestion_workflow_id(args.case_no)
    if args.command in RISK_COMMANDS:
        return risk_workflow_id(args.case_no)
    return case_workflow_id(args.case_no)


async def start_once(
    client: Client, settings: Settings, run, arg, workflow_id: str, what: str, summary: str, details: str
) -> str:
    """Start a risk or a suggestion; its number names it forever (REJECT_DUPLICATE)."""
    try:
        await client.start_workflow(
            run,
            arg,
            id=workflow_id,
            task_queue=settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            static_summary=summary,
            static_details=details,
        )
    except WorkflowAlreadyStartedError:
        raise Refused(f"{what} already exists: {ui_link(settings, workflow_id)}") from None
    log.info("workflow_started", workflow_id=workflow_id)
    return workflow_id


async def start_risk(client: Client, settings: Settings, risk: RiskReport) -> str:
    return await start_once(
        client, settings, RiskWorkflow.run, risk, risk_workflow_id(risk.risk_no), f"risk {risk.risk_no}",
        f"risk {risk.risk_no} · {risk.responsible_department}",
        f"Risk **{risk.risk_no}** ({risk.type}), reported by hand; department `{risk.responsible_department}`, "
        f"owner `{risk.owner}`.",
    )


async def start_suggestion(client: Client, settings: Settings, suggestion: Suggestion) -> str:
    return await start_once(
        client, settings, SuggestionWorkflow.run, suggestion, suggestion_workflow_id(suggestion.suggestion_no),
        f"suggestion {suggestion.suggestion_no}", f"suggestion {suggestion.suggestion_no} · {suggestion.department}",
        f"Public suggestion **{suggestion.suggestion_no}** ({suggestion.complexity}) for `{suggestion.department}` "
        "to answer; the submitter is not named here.",
    )


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    configure_logging(settings.log_level)
    args = parser().parse_args(argv)
    try:
        asyncio.run(run(args, settings))
    except Refused as err:
        print(str(err), file=sys.stderr)
        return err.code
    return 0


if __name__ == "__main__":
    code = main()
    # temporalio's Rust runtime threads can abort a short-lived client at interpreter teardown
    # (sdk-python issue #300: "PyGILState_Release ... finalizing"); all output is written, so skip it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
