"""`starter.py admin …`: set a namespace up, write the contract's schemas, lay a development calendar."""

from datetime import date, timedelta
from pathlib import Path
from typing import Annotated

import typer

from cli import calls, render
from cli.render import Output, OutputFlag
from settings import get_settings

app = typer.Typer(no_args_is_help=True, help="Administration: search attributes, JSON Schemas, the dev calendar.")


@app.command()
def setup(output: OutputFlag = Output.text) -> None:
    """Register hallflow's search attributes on the namespace (idempotent)."""
    from temporalio.service import RPCError

    from contract import search

    async def ensure(client, _settings) -> list[str]:
        try:
            return await search.ensure_search_attributes(client)
        except RuntimeError as err:  # a name registered with another type
            raise calls.Refused(str(err)) from None
        except RPCError as err:
            raise calls.Refused(f"cannot register search attributes: {err.message}") from None

    added = calls.run(ensure)
    if output is Output.json:
        render.dump({"added": list(added)})
    else:
        render.show("search attributes added: " + (", ".join(added) if added else "none (all present)"))


@app.command()
def schema(out: Path = Path("docs/schemas"), output: OutputFlag = Output.text) -> None:
    """Write the contract's JSON Schemas."""
    written = calls.write_schemas(out)
    if output is Output.json:
        render.dump([str(path) for path in written])
    else:
        render.show(*(str(path) for path in written))


@app.command("dev-calendar")
def dev_calendar(
    out: Annotated[Path, typer.Argument(metavar="OUT", show_default=False)], output: OutputFlag = Output.text
) -> None:
    """DEVELOPMENT ONLY: data/calendar plus weekends-only placeholders (make run)."""
    from activities.calendar import with_placeholders

    source = get_settings().calendar_dir
    if out.resolve() == source.resolve():
        # with_placeholders empties OUT first: the official tables would be replaced by guesses.
        raise calls.Refused(
            f"{out} is the calendar directory dev-calendar reads from ({source}); "
            "write the development calendar elsewhere (make run uses var/calendar)",
            calls.BAD_INPUT,
        )
    placeholders = list(with_placeholders(source, out, date.today() + timedelta(days=366)))
    for year in placeholders:
        render.warn(
            f"WARNING: no {year}.toml in {source}: {out} has a weekends-only placeholder "
            "(development only; add the State Council's table for production)"
        )
    if output is Output.json:
        render.dump({"calendar": str(out), "placeholders": list(placeholders)})
