"""`starter.py risk …`: the risk register (风险清单), from report to review."""

from typing import Annotated, Literal

import typer

from cli import calls, render
from cli.calls import check
from cli.render import Output, OutputFlag
from contract.risk import Acknowledge, Regrade, Resolve, RiskReport, RiskReviewRecord, SubmitPlan, risk_workflow_id
from settings import get_settings
from workflows.risk import RiskWorkflow

app = typer.Typer(
    no_args_is_help=True, short_help="Risks: report, handle, list the register.",
    help="Risks: report one, handle it step by step, list the register (风险清单).",
)

RiskNo = Annotated[str, typer.Argument(metavar="RISK_NO", show_default=False)]
Level = Literal["blue", "yellow", "red"]


def _send(no: str, update, request, output: Output, done: str) -> None:
    answer = calls.run(lambda client, _: calls.update(client, risk_workflow_id(no), update, request))
    render.reply(output, answer, lambda s: render.risk(done, s))


@app.command()
def report(
    no: Annotated[str, typer.Option("--no", help="risk number")],
    type: Annotated[Literal["policy", "technology", "execution", "social"], typer.Option()],
    title: Annotated[str, typer.Option()],
    probability: Annotated[float, typer.Option()],
    impact: Annotated[Literal["low", "medium", "high"], typer.Option()],
    department: Annotated[str, typer.Option(help="responsible department")],
    owner: Annotated[str, typer.Option()],
    description: str = "",
    level: Annotated[Level | None, typer.Option(help="otherwise from the matrix in data/risk.toml")] = None,
    by: Annotated[str | None, typer.Option(help="who reports it, an officer in post [default: the owner]")] = None,
    output: OutputFlag = Output.text,
) -> None:
    """Report a risk.

    Its level comes from the matrix in data/risk.toml unless --level gives it."""
    risk = check(
        lambda: RiskReport(
            risk_no=no, type=type, title=title, description=description, probability=probability, impact=impact,
            responsible_department=department, owner=owner, level=level,
        ),
        "risk",
    )
    settings = get_settings()
    workflow_id = calls.run(lambda client, _: calls.start_risk(client, settings, risk), actor=by or owner)
    link = calls.ui_link(settings, workflow_id)
    if output is Output.json:
        render.dump({"risk_no": no, "workflow_id": workflow_id, "link": link})
    else:
        render.show(f"risk {no} reported: workflow id {workflow_id}", link)


@app.command()
def acknowledge(
    risk_no: RiskNo, officer: Annotated[str, typer.Option()], group: Annotated[str, typer.Option()],
    output: OutputFlag = Output.text,
) -> None:
    """The emergency (handling) group has convened."""
    request = check(lambda: Acknowledge(officer=officer, group=group), "acknowledge")
    _send(risk_no, RiskWorkflow.acknowledge, request, output, f"{group} convened")


@app.command()
def plan(
    risk_no: RiskNo,
    officer: Annotated[str, typer.Option()],
    plan: Annotated[str, typer.Option()],
    due: Annotated[str, typer.Option(help="ISO date-time the plan is carried out by, e.g. 2026-12-01T18:00+08:00")],
    output: OutputFlag = Output.text,
) -> None:
    """Submit a risk's handling plan."""
    request = check(lambda: SubmitPlan(officer=officer, plan=plan, due=due), "plan")  # pydantic checks the time
    _send(risk_no, RiskWorkflow.submit_plan, request, output, f"plan in from {officer}")


@app.command()
def regrade(
    risk_no: RiskNo,
    level: Annotated[Level, typer.Option()],
    reason: Annotated[str, typer.Option()],
    by: Annotated[str, typer.Option()],
    output: OutputFlag = Output.text,
) -> None:
    """Another level for a risk, with a reason."""
    request = check(lambda: Regrade(level=level, reason=reason, by=by), "regrade")
    _send(risk_no, RiskWorkflow.regrade, request, output, f"regraded {level} by {by}")


@app.command()
def review(
    risk_no: RiskNo,
    by: Annotated[str, typer.Option()],
    cause: Annotated[str, typer.Option()],
    what_worked: Annotated[str, typer.Option()],
    what_changes: Annotated[str, typer.Option()],
    output: OutputFlag = Output.text,
) -> None:
    """A risk's review (复盘), needed before it is resolved."""
    request = check(
        lambda: RiskReviewRecord(by=by, cause=cause, what_worked=what_worked, what_changes=what_changes), "review"
    )
    _send(risk_no, RiskWorkflow.review, request, output, f"reviewed by {by}")


@app.command()
def resolve(
    risk_no: RiskNo, officer: Annotated[str, typer.Option()], summary: Annotated[str, typer.Option()],
    output: OutputFlag = Output.text,
) -> None:
    """Close a risk (after its plan and review)."""
    request = check(lambda: Resolve(officer=officer, summary=summary), "resolve")
    _send(risk_no, RiskWorkflow.resolve, request, output, f"resolved by {officer}")


@app.command("list")
def register(department: str | None = None, level: Level | None = None, output: OutputFlag = Output.text) -> None:
    """The risk register, from the database."""
    from activities.db import make_engine
    from activities.risk import RiskActivities

    entries = RiskActivities(make_engine(get_settings().database_url), None).register(department, level)
    render.reply(output, entries, render.risks)
