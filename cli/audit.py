"""`starter.py audit …`: check the audit trail's hash chains, and print their heads to anchor elsewhere.

Reads the application database (HALLFLOW_DATABASE_URL) directly: no Temporal needed. Exit codes
here: 0 intact, 1 a chain is broken, 2 bad input, 3 the database cannot be read.
"""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from pydantic import TypeAdapter, ValidationError
from rich.console import RenderableType
from rich.text import Text
from sqlalchemy import Engine, exc

from activities import chain
from activities.db import failure_reason, make_engine
from cli import render
from cli.calls import BAD_INPUT, REFUSED, UNREACHABLE, Refused
from cli.render import Column, Listing, Output, OutputFlag
from settings import get_settings

app = typer.Typer(
    no_args_is_help=True, short_help="Verify the audit trail's hash chains, print their heads.",
    help="The tamper-evident audit trail: verify its hash chains, print their heads.",
)

T = TypeVar("T")
CaseFlag = Annotated[str | None, typer.Option("--case", metavar="CASE_NO", help="one case (its subject: case CASE_NO)")]
TypeFlag = Annotated[str | None, typer.Option(help="case, rectification, suggestion, risk, satisfaction")]
IdFlag = Annotated[str | None, typer.Option(help="with --subject-type: one subject")]


def _scope(case: str | None, subject_type: str | None, subject_id: str | None) -> tuple[str | None, str | None]:
    if case is not None:
        if subject_type is not None or subject_id is not None:
            raise typer.BadParameter("give --case or --subject-type/--subject-id, not both", param_hint="'--case'")
        return "case", case
    if subject_id is not None and subject_type is None:
        raise typer.BadParameter("--subject-id needs --subject-type", param_hint="'--subject-id'")
    return subject_type, subject_id


def _read(work: Callable[[Engine], T]) -> T:
    """Run `work` on the application database; exit 3 when it cannot be read."""
    engine = make_engine(get_settings().database_url)
    try:
        return work(engine)
    except exc.SQLAlchemyError as err:
        reason, _ = failure_reason(err)
        raise Refused(f"cannot read the application database: {reason}", UNREACHABLE) from None
    finally:
        engine.dispose()


def _anchors(path: Path | None) -> list[chain.Head]:
    """Heads written down earlier: `audit heads -o json`, or the `heads` of `audit verify -o json`."""
    if path is None:
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return TypeAdapter(list[chain.Head]).validate_python(data["heads"] if isinstance(data, dict) else data)
    except (OSError, ValueError, KeyError, ValidationError) as err:
        raise Refused(f"cannot read the anchored heads in {path}: {type(err).__name__}", BAD_INPUT) from None


@app.command()
def verify(
    case: CaseFlag = None,
    subject_type: TypeFlag = None,
    subject_id: IdFlag = None,
    anchor: Annotated[
        Path | None, typer.Option(metavar="HEADS.json", help="heads written down earlier (audit heads -o json)")
    ] = None,
    output: OutputFlag = Output.text,
) -> None:
    """Recompute the hash chains: exit 0 when intact, else 1.

    Of every subject, or one. A broken subject is named with its first changed, inserted or deleted row."""
    scope = _scope(case, subject_type, subject_id)
    anchors = _anchors(anchor)
    verdict = _read(lambda engine: chain.verify(engine, *scope, anchors=anchors))
    render.reply(output, verdict, _verdict)
    if not verdict.intact:
        raise typer.Exit(REFUSED)


@app.command()
def heads(
    case: CaseFlag = None, subject_type: TypeFlag = None, subject_id: IdFlag = None, output: OutputFlag = Output.text
) -> None:
    """Each subject's last seq and hash, to keep elsewhere.

    In a separate log: `verify --anchor` then shows a chain rewritten or cut short since."""
    scope = _scope(case, subject_type, subject_id)
    render.reply(output, _read(lambda engine: chain.heads(engine, *scope)), _heads)


def _subject(subject_type: str, subject_id: str) -> str:
    return f"{subject_type} {subject_id}"


def _verdict(v: chain.Verdict) -> list[RenderableType]:
    if v.intact:
        hashes = ", ".join(v.algorithms) or "none"
        return [f"intact: {v.rows} rows in {v.subjects} subjects, every chain recomputed ({hashes})"]
    t = Listing(Column("subject", "id"), Column("seq", "short", justify="right"), Column("row", "id"), Column("problem"))
    for b in v.broken:
        t.add_row(_subject(b.subject_type, b.subject_id), "—" if b.seq is None else str(b.seq), b.key or "—",
                  Text(f"{b.problem}: {b.detail}"))
    head = Text(f"BROKEN: {len(v.broken)} of {v.subjects} subjects; the first bad row of each:", style="bold red")
    return [head, t]


def _heads(rows: list[chain.Head]) -> list[RenderableType]:
    if not rows:
        return ["no audit rows"]
    t = Listing(Column("subject", "id"), Column("seq", "short", justify="right"), Column("hash", "id"))
    for h in rows:
        t.add_row(_subject(h.subject_type, h.subject_id), str(h.seq), f"{h.hash_alg}:{h.hash}")
    return [t]
