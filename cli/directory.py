"""`starter.py admin directory …`: check the organisation directory, and hand a changed one to
every running workflow (each keeps it in its history; docs/security.md)."""

import asyncio
from datetime import datetime, timezone
from typing import Annotated

import typer
from temporalio.client import Client

from activities.catalog import load_catalog
from activities.org import DirectoryError, load_directory
from cli import calls, render
from cli.render import Output, OutputFlag
from contract.org import Directory, DirectoryChange, Role
from settings import Settings, get_settings

app = typer.Typer(no_args_is_help=True, help="The organisation directory: check it, publish a change.")

WORKFLOW_TYPES = ("CaseWorkflow", "RectificationWorkflow", "SuggestionWorkflow", "RiskWorkflow", "SatisfactionWatchWorkflow")


def _load(settings: Settings) -> Directory:
    try:
        return load_directory(settings.org_file, settings.keys_file, load_catalog(settings.catalog_file), settings.risk_file)
    except DirectoryError as err:
        raise calls.Refused(f"the directory is invalid:\n{err}", calls.BAD_INPUT) from None


@app.command()
def check(output: OutputFlag = Output.text) -> None:
    """Validate data/org.toml and the keys file, as the worker does."""
    settings = get_settings()
    d = _load(settings)
    summary = {"version": d.version, "officers": len(d.officers), "systems": len(d.systems), "keys": len(d.keys)}
    if output is Output.json:
        render.dump(summary)
    else:
        render.show(f"directory {d.version}: {len(d.officers)} officers, {len(d.systems)} systems, {len(d.keys)} keys")


@app.command()
def publish(
    by: Annotated[str, typer.Option("--by", help="the directory admin sending it (role directory_admin)")],
    output: OutputFlag = Output.text,
) -> None:
    """Send the directory on file to every running workflow.

    The signal directory_changed, to every running hallflow workflow.

    Workers must have the same files: restart them first, or they refuse the new keys' messages."""
    settings = get_settings()
    change = DirectoryChange(directory=_load(settings))
    admins = change.directory.with_role(Role.DIRECTORY_ADMIN, datetime.now(timezone.utc))
    if by not in admins:
        # Every workflow would log the change and keep its copy: say so here instead.
        raise calls.Refused(f"{by} is not a directory admin; who is: {', '.join(admins) or 'nobody'}", calls.BAD_INPUT)
    types = " OR ".join(f'WorkflowType = "{t}"' for t in WORKFLOW_TYPES)

    async def send() -> int:
        client: Client = await calls.client_for(settings, actor=by)
        sent = 0
        async for wf in client.list_workflows(f'ExecutionStatus = "Running" AND ({types})'):
            await client.get_workflow_handle(wf.id).signal("directory_changed", change)
            sent += 1
        return sent

    sent = asyncio.run(send())
    if output is Output.json:
        render.dump({"version": change.directory.version, "workflows": sent})
    else:
        render.show(f"directory {change.directory.version} sent to {sent} running workflows")
