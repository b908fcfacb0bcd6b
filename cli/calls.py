"""What the commands ask of hallflow, as plain async functions: start a case, a risk or a
suggestion, send an Update, read a status, list the inbox and a department's open feedback.

They return models and rows, never text: cli/render.py shows them, `-o json` dumps them.
bench/cases.py and demo.py start workflows with these same functions.
"""

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

import structlog
from pydantic import ValidationError
from temporalio.client import Client, WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError

from activities.catalog import CatalogError, load_catalog
from contract import search
from contract.case import CaseApplication, CaseStatus, case_workflow_id
from contract.converter import describe
from contract.risk import RiskReport, risk_workflow_id
from contract.suggestion import Suggestion, suggestion_workflow_id
from security.connection import ConnectionConfigError, TemporalUnreachable
from settings import Settings, connect, get_settings
from workflows.case import CaseWorkflow
from workflows.risk import RiskWorkflow
from workflows.suggestion import SuggestionWorkflow

log = structlog.get_logger()

DONE, REFUSED, BAD_INPUT, UNREACHABLE = 0, 1, 2, 3  # the exit codes scripts rely on


class Refused(Exception):
    """hallflow (or the input check before it) said no: one line saying why, and an exit code."""

    def __init__(self, message: str, code: int = REFUSED) -> None:
        super().__init__(" ".join(message.split()))  # one line, whatever the message held
        self.code = code


def ui_link(settings: Settings, workflow_id: str) -> str:
    return f"{settings.ui_url}/namespaces/{namespace(settings)}/workflows/{workflow_id}"


def namespace(settings: Settings) -> str:
    """The namespace hallflow connects to: HALLFLOW_NAMESPACE, or Temporal's own settings."""
    from security.connection import ConnectionConfigError, temporal_connection

    try:
        return temporal_connection(settings).namespace
    except ConnectionConfigError:
        return settings.namespace


def codes(text: str | None) -> list[str]:
    """Comma-separated codes as typed at the window."""
    return [c.strip() for c in (text or "").split(",") if c.strip()]


def check(build, what: str):
    """Build a request from flags; bad input is refused here (exit 2), before the server is asked."""
    try:
        return build()
    except ValidationError as err:
        raise Refused(f"invalid {what}: {describe(err)}", BAD_INPUT) from None


async def client_for(settings: Settings, actor: str | None = None) -> Client:
    """Exit 3 when the server cannot be reached or the TLS handshake fails, in one line naming
    the address it tried and why; exit 2 when the TEMPORAL_* settings or profile are unusable."""
    try:
        return await connect(settings, actor=actor)
    except ConnectionConfigError as err:
        raise Refused(str(err), BAD_INPUT) from None
    except TemporalUnreachable as err:
        hint = "; is it running? (make run starts one)" if err.reason == "connection refused" else ""
        raise Refused(f"{err}{hint}", UNREACHABLE) from None
    except RuntimeError as err:
        raise Refused(f"cannot reach Temporal at {settings.temporal_address}: {err}", UNREACHABLE) from None


T = TypeVar("T")


def run(work: Callable[[Client, Settings], Awaitable[T]], actor: str | None = None) -> T:
    """Connect to Temporal (exit 3 when it cannot be reached), then `work(client, settings)`.
    `actor`: whom a message naming nobody is signed for (default: HALLFLOW_ACTOR, the applicant)."""
    settings = get_settings()

    async def connected() -> T:
        return await work(await client_for(settings, actor), settings)

    return asyncio.run(connected())


def check_matter(settings: Settings, code: str) -> None:
    """Refuse an unknown matter at the window, before a case number is spent on it."""
    try:
        catalog = load_catalog(settings.catalog_file)
    except CatalogError as err:
        raise Refused(f"the matter catalog is invalid: {err}", BAD_INPUT) from None
    if code not in catalog:
        raise Refused(f"unknown matter {code!r}; known matters: {', '.join(sorted(catalog))}", BAD_INPUT)


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
    # Debug: the command says it in words; codes and ids only, never the applicant.
    log.debug("case_started", case_no=app.case_no, matter=app.matter_code, workflow_id=workflow_id)
    return workflow_id


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
    log.debug("workflow_started", workflow_id=workflow_id)
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


async def update(client: Client, workflow_id: str, update, arg):
    """Send an Update and return its answer; a refusal names the workflow's error type."""
    try:
        return await client.get_workflow_handle(workflow_id).execute_update(update, arg)
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        kind = f" ({cause.type})" if isinstance(cause, ApplicationError) and cause.type else ""
        raise Refused(f"refused{kind}: {cause.message if cause else err}") from None
    except RPCError as err:
        raise Refused(f"{workflow_id}: {err.message}") from None


async def status(client: Client, case_no: str) -> CaseStatus:
    try:
        return await client.get_workflow_handle(case_workflow_id(case_no)).query(CaseWorkflow.status)
    except RPCError as err:
        raise Refused(f"case {case_no}: {err.message}") from None


def _query_value(value: str, what: str) -> str:
    """A value safe inside a visibility query's double quotes (ids and codes only)."""
    if not value or not all(c.isalnum() or c in "-_:.@" for c in value):
        raise Refused(f"invalid {what} {value!r}: letters, digits and - _ : . @ only", BAD_INPUT)
    return value


def soonest_due(row: dict) -> datetime:
    """Sort key: by the instant (a step's due time may carry any UTC offset), undated last."""
    return datetime.fromisoformat(row["due_at"]) if row["due_at"] else datetime.max.replace(tzinfo=timezone.utc)


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
    return sorted(rows, key=soonest_due)


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
    return sorted(rows, key=soonest_due)


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
