"""`starter.py operator …`: what an officer or the hall's operator looks at: the inbox, the KPI
report, and the scripted day that fills both."""

import logging
from datetime import date, datetime, timezone
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text
from temporalio.client import Client

import report as kpi
from cli import calls, render
from cli.calls import BAD_INPUT, Refused
from cli.render import Output, OutputFlag
from settings import Settings, get_settings

app = typer.Typer(
    no_args_is_help=True, short_help="The inbox, the KPI report, the demo day.",
    help="For officers and the hall: the inbox, the KPI report, the demo day.",
)


@app.command()
def inbox(
    actor: Annotated[
        str | None, typer.Option(help="officer-li, applicant:<id>, a department code as consulted, head:<dept>")
    ] = None,
    department: Annotated[
        str | None, typer.Option(help="everything the department owes: its code, head, coordinator, officers")
    ] = None,
    output: OutputFlag = Output.text,
) -> None:
    """What waits on an officer, an applicant or a department.

    Soonest due first, with a Web UI link each."""
    if (actor is None) == (department is None):
        raise typer.BadParameter("give one of --actor or --department", param_hint="'--actor' / '--department'")
    rows = calls.run(lambda client, settings: calls.inbox(client, settings, actor, department))
    settings = get_settings()
    base = f"{settings.ui_url}/namespaces/{calls.namespace(settings)}/workflows"
    render.reply(output, rows, lambda r: render.inbox(r, actor or department, base))


class ReportOutput(StrEnum):
    text = "text"
    json = "json"
    csv = "csv"


class ReportFormat(StrEnum):  # --format, kept for the scripts written before -o
    table = "table"
    json = "json"
    csv = "csv"


@app.command("report")
def kpi_report(
    period_from: Annotated[
        date | None,
        typer.Option(
            "--from", parser=kpi.parse_date, metavar="DATE",
            help=f"first day, YYYY-MM-DD, Asia/Shanghai (default: {kpi.DEFAULT_DAYS} days ending --to)",
        ),
    ] = None,
    period_to: Annotated[
        date | None,
        typer.Option("--to", parser=kpi.parse_date, metavar="DATE", help="last day, included (default: today)"),
    ] = None,
    department: Annotated[str | None, typer.Option(help="only this department (lead department of a case)")] = None,
    matter: Annotated[str | None, typer.Option(help="only this matter (cases and ratings)")] = None,
    chart: Annotated[Path | None, typer.Option(metavar="FILE.png", help="also draw the report as a PNG")] = None,
    output: Annotated[ReportOutput, typer.Option("-o", "--output", help="text, json or csv")] = ReportOutput.text,
    format: Annotated[ReportFormat | None, typer.Option("--format", hidden=True)] = None,
) -> None:
    """The hall's KPIs for a period, from the database.

    As tables, json or csv; --chart draws it."""
    from activities.db import make_engine

    fmt = format.value if format else {"text": "table"}.get(output.value, output.value)
    try:
        figures = kpi.run(make_engine(get_settings().database_url), period_from, period_to, department, matter, chart)
    except ValueError as err:
        raise Refused(str(err), BAD_INPUT) from None
    if fmt == "table":
        render.show(*render.kpi_report(figures))
    else:
        print(kpi.render(figures, fmt))


@app.command()
def demo(output: OutputFlag = Output.text) -> None:
    """A scripted day in the hall, then its KPI report.

    Against the running server and worker, with a progress bar."""
    calls.run(lambda client, settings: _day(client, settings, output))


async def _day(client: Client, settings: Settings, output: Output) -> None:
    import demo as script
    from activities.db import make_engine
    from contract import search
    from contract.common import SHANGHAI

    await search.ensure_search_attributes(client)
    logging.getLogger().setLevel(logging.WARNING)  # the progress bar, not a log line per case
    day = script.Day(client, settings, script.Starters(calls.start, calls.start_risk, calls.start_suggestion),
                     render.console(stderr=True))
    try:
        await script.check_worker(client, settings)
        await day.run()
    except script.NoWorker as err:
        raise Refused(str(err)) from None
    today = datetime.now(timezone.utc).astimezone(SHANGHAI).date()
    figures = kpi.build_report(make_engine(settings.database_url), today, today)
    if output is Output.json:
        render.dump({"cases": day.cases, "report": figures.model_dump(mode="json"), "links": day.links()})
        return
    render.show(
        f"A day in hall-central: {len(day.cases)} cases ({day.prefix}-01 to {day.prefix}-{day.count:02d}), "
        "ratings, a suggestion and a risk.",
        "",
        *render.kpi_report(figures),
        "",
        "In the Web UI:",
        # A link whole on its line, however long: the terminal wraps it, and copies it whole.
        *(Text("  " + link, no_wrap=True) for link in day.links()),
        "",
        "What waits on officer-li: python starter.py operator inbox --actor officer-li",
    )
