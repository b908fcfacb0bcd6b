"""`starter.py feedback …`: a bad review's rectification, public suggestions, and what is open or published."""

from typing import Annotated, Literal

import typer

from cli import calls, render
from cli.calls import check
from cli.render import Output, OutputFlag
from contract.rating import ConfirmSetAside, Rectify, Verify
from contract.suggestion import Reclassify, Respond, Suggestion, suggestion_workflow_id
from settings import get_settings
from workflows.rectification import RectificationWorkflow
from workflows.suggestion import SuggestionWorkflow

app = typer.Typer(
    no_args_is_help=True, short_help="Bad reviews rectified, public suggestions answered.",
    help="Feedback: bad reviews rectified (好差评), public suggestions answered (意见征集).",
)

CaseNo = Annotated[str, typer.Argument(metavar="CASE_NO", help="the rated case", show_default=False)]
SuggestionNo = Annotated[str, typer.Argument(metavar="SUGGESTION_NO", show_default=False)]
Complexity = Literal["general", "complex"]


def _rectification(case_no: str, update, request, output: Output, done: str) -> None:
    answer = calls.run(lambda client, _: calls.update(client, f"rectification-{case_no}", update, request))
    render.reply(output, answer, lambda s: render.rectification(done, s))


def _suggestion(no: str, update, request, output: Output, done: str) -> None:
    answer = calls.run(lambda client, _: calls.update(client, suggestion_workflow_id(no), update, request))
    render.reply(output, answer, lambda s: render.suggestion(done, s))


@app.command()
def verify(
    case_no: CaseNo,
    officer: Annotated[str, typer.Option()],
    finding: Annotated[str, typer.Option()],
    malicious: Annotated[
        bool, typer.Option("--malicious", help="found malicious: a second officer must confirm")
    ] = False,
    output: OutputFlag = Output.text,
) -> None:
    """Call back on a bad review (回访核实).

    Within 1 working day of the rating; --malicious asks a second officer to confirm."""
    request = check(lambda: Verify(officer=officer, finding=finding, malicious=malicious), "verify")
    _rectification(case_no, RectificationWorkflow.verify, request, output, f"verified by {officer}")


@app.command("confirm-set-aside")
def confirm_set_aside(
    case_no: CaseNo, officer: Annotated[str, typer.Option()], reason: Annotated[str, typer.Option()],
    output: OutputFlag = Output.text,
) -> None:
    """Set a malicious review aside, as the second officer."""
    request = check(lambda: ConfirmSetAside(officer=officer, reason=reason), "confirm-set-aside")
    done = f"set aside, confirmed by {officer}"
    _rectification(case_no, RectificationWorkflow.confirm_set_aside, request, output, done)


@app.command()
def rectify(
    case_no: CaseNo,
    officer: Annotated[str, typer.Option()],
    action: Annotated[str, typer.Option(help="the rectification or explanation")],
    reply: Annotated[str, typer.Option(help="the answer sent to the applicant")],
    output: OutputFlag = Output.text,
) -> None:
    """Rectify or explain a bad review and answer the applicant."""
    request = check(lambda: Rectify(officer=officer, action=action, reply=reply), "rectify")
    _rectification(case_no, RectificationWorkflow.rectify, request, output, f"rectified by {officer}")


@app.command()
def suggest(
    no: Annotated[str, typer.Option("--no", help="suggestion number")],
    submitter_id: Annotated[str, typer.Option(help="opaque id of the submitter (never published)")],
    topic: Annotated[str, typer.Option()],
    content: Annotated[str, typer.Option()],
    department: Annotated[str, typer.Option(help="department that must answer")],
    complexity: Annotated[Complexity, typer.Option()] = "general",
    output: OutputFlag = Output.text,
) -> None:
    """Submit a public suggestion (意见征集)."""
    suggestion = check(
        lambda: Suggestion(
            suggestion_no=no, submitter_id=submitter_id, topic=topic, content=content, department=department,
            complexity=complexity,
        ),
        "suggestion",
    )
    settings = get_settings()
    workflow_id = calls.run(lambda client, _: calls.start_suggestion(client, settings, suggestion))
    link = calls.ui_link(settings, workflow_id)
    if output is Output.json:
        render.dump({"suggestion_no": no, "workflow_id": workflow_id, "link": link})
    else:
        render.show(f"suggestion {no} submitted: workflow id {workflow_id}", link)


@app.command()
def respond(
    suggestion_no: SuggestionNo,
    department: Annotated[str, typer.Option()],
    officer: Annotated[str, typer.Option()],
    adopted: Annotated[bool, typer.Option("--adopted/--no-adopted")],
    reason: Annotated[str, typer.Option(help="required when not adopted")] = "",
    measures: str = "",
    output: OutputFlag = Output.text,
) -> None:
    """A department answers a suggestion: adopted or not.

    With measures or a reason; the answer is published (采纳公示)."""
    request = check(
        lambda: Respond(department=department, officer=officer, adopted=adopted, reason=reason, measures=measures),
        "respond",
    )
    done = f"answered by {officer}: {'adopted' if adopted else 'not adopted'}"
    _suggestion(suggestion_no, SuggestionWorkflow.respond, request, output, done)


@app.command()
def reclassify(
    suggestion_no: SuggestionNo,
    complexity: Annotated[Complexity, typer.Option()],
    reason: Annotated[str, typer.Option()],
    by: Annotated[str, typer.Option()],
    output: OutputFlag = Output.text,
) -> None:
    """General <-> complex, with a reason.

    The answer's deadline is computed again."""
    request = check(lambda: Reclassify(complexity=complexity, reason=reason, by=by), "reclassify")
    _suggestion(suggestion_no, SuggestionWorkflow.reclassify, request, output, f"reclassified {complexity} by {by}")


@app.command("open")
def open_work(
    department: Annotated[str, typer.Option()],
    overdue: Annotated[bool, typer.Option("--overdue", help="only those past their step's deadline")] = False,
    output: OutputFlag = Output.text,
) -> None:
    """A department's open rectifications and suggestions.

    Bad-review rectifications and suggestions still to answer, soonest due first."""
    rows = calls.run(lambda client, _: calls.open_feedback(client, department, overdue))
    render.reply(output, rows, lambda r: render.open_feedback(r, department))


@app.command()
def published(department: str | None = None, output: OutputFlag = Output.text) -> None:
    """Answered suggestions, as published (采纳公示).

    The public list, from the database."""
    from activities.db import make_engine
    from activities.publication import PublicationActivities

    entries = PublicationActivities(make_engine(get_settings().database_url)).published(department)
    render.reply(output, entries, render.published)
