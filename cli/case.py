"""`starter.py case …`: a case at the window and through its approval route, then its rating."""

from pathlib import Path
from typing import Annotated, Literal

import typer
from pydantic import BaseModel, ValidationError, field_validator
from sqlalchemy import exc

from activities.db import failure_reason, make_engine
from activities.store import Store
from cli import calls, render
from cli.calls import BAD_INPUT, UNREACHABLE, Refused, check, codes
from cli.render import Output, OutputFlag
from contract.approval import DepartmentOpinion, Resubmit, Review, Transfer, Urge, Vote
from contract.case import Applicant, CaseApplication, SupplementMaterials, Withdraw, case_workflow_id
from contract.common import Name, Text
from contract.converter import describe
from contract.rating import Rate
from security.aead import Undecryptable
from settings import get_settings
from workflows.case import CaseWorkflow

app = typer.Typer(
    no_args_is_help=True, short_help="A case: start it, follow it, approve it, rate it.",
    help="A case: start it, see where it stands, take it through approval, rate it.",
)

CaseNo = Annotated[str, typer.Argument(metavar="CASE_NO", show_default=False)]


def _send(case_no: str, update, request, output: Output, done: str) -> None:
    """An approval step: it answers with the case's status."""
    answer = calls.run(lambda client, _: calls.update(client, case_workflow_id(case_no), update, request))
    render.reply(output, answer, lambda s: render.case_update(done, s))


@app.command()
def start(
    file: Annotated[Path | None, typer.Option(help="a CaseApplication as JSON (see docs/integration.md)")] = None,
    case_no: Annotated[str | None, typer.Option(help="with --file: the same application under this number")] = None,
    matter: Annotated[str | None, typer.Option(help="matter code from data/matters.toml")] = None,
    hall: str | None = None,
    clerk: str | None = None,
    applicant_id: Annotated[str | None, typer.Option(help="opaque applicant id (no personal data)")] = None,
    applicant_name: str | None = None,
    applicant_phone: str | None = None,
    materials: Annotated[str | None, typer.Option(help="comma-separated material codes handed in")] = None,
    commitment_signed: Annotated[
        bool, typer.Option("--commitment-signed", help="the applicant signed the 告知承诺书")
    ] = False,
    output: OutputFlag = Output.text,
) -> None:
    """Start a case (from flags or a JSON file)."""
    given = {"case_no": case_no, "matter": matter, "hall": hall, "clerk": clerk, "applicant_id": applicant_id}
    application = _application(file, given, applicant_name, applicant_phone, materials, commitment_signed)
    settings = get_settings()
    calls.check_matter(settings, application.matter_code)
    workflow_id = calls.run(lambda client, _: calls.start(client, settings, application))
    link = calls.ui_link(settings, workflow_id)
    if output is Output.json:
        render.dump({"case_no": application.case_no, "workflow_id": workflow_id, "link": link})
    else:
        render.show(f"case {application.case_no} started: workflow id {workflow_id}", link)


def _application(file: Path | None, given: dict, name, phone, materials, signed: bool) -> CaseApplication:
    try:
        if file:
            app = CaseApplication.model_validate_json(file.read_text(encoding="utf-8"))
            # --case-no with --file: the same application under a new case number (demos, retries).
            return app.model_copy(update={"case_no": given["case_no"]}) if given["case_no"] else app
        missing = [flag for flag, value in given.items() if not value]
        if missing:
            flags = ", ".join("--" + m.replace("_", "-") for m in missing)
            raise Refused(f"start needs --file, or all of: {flags}", BAD_INPUT)
        return CaseApplication(
            case_no=given["case_no"],
            matter_code=given["matter"],
            hall=given["hall"],
            clerk=given["clerk"],
            applicant=Applicant(applicant_id=given["applicant_id"], name=name, phone=phone),
            materials=codes(materials),
            commitment_signed=signed,
        )
    except ValidationError as err:
        raise Refused(f"invalid case application: {describe(err)}", BAD_INPUT) from None
    except OSError as err:
        raise Refused(f"cannot read {file}: {err.strerror}", BAD_INPUT) from None


@app.command()
def status(
    case_no: CaseNo,
    with_applicant: Annotated[
        bool, typer.Option("--with-applicant", help="also the applicant's name, ID number and phone (audited)")
    ] = False,
    by: Annotated[str | None, typer.Option(help="with --with-applicant: who asks (default: HALLFLOW_ACTOR)")] = None,
    reason: Annotated[str, typer.Option(help="with --with-applicant: why, for the audit trail")] = "",
    output: OutputFlag = Output.text,
) -> None:
    """Where a case stands: stage, due dates, whom it waits on.

    Stage, due dates, working days used and left, what and whom it waits on.

    No personal details unless --with-applicant: who asked and why goes to the audit trail first."""
    if not with_applicant:
        if by is not None or reason:
            raise Refused("--by and --reason go with --with-applicant", BAD_INPUT)
        answer = calls.run(lambda client, _: calls.status(client, case_no))
        render.reply(output, answer, render.case_status)
        return
    asker = check(lambda: _Asker(by=by or get_settings().actor, reason=reason), "--by/--reason")
    answer = calls.run(lambda client, _: calls.status(client, case_no))  # the case exists, or exit 1 here
    person = _disclose(case_no, asker)
    if output is Output.json:
        render.dump({**answer.model_dump(mode="json"), "applicant": person})
        return
    who = render.lines([("applicant", person["applicant_id"]), ("name", person["name"]),
                        ("ID number", person["id_number"]), ("phone", person["phone"])])
    seen = f"(recorded in the case's audit trail: applicant_viewed by {asker.by})"
    render.show(render.case_status(answer), "", who, seen)


class _Asker(BaseModel):
    """Who asks for an applicant's details, and why: as the audit trail keeps them."""

    by: Name
    reason: Text

    @field_validator("by", "reason")
    @classmethod
    def _storable(cls, value: str) -> str:
        if "\x00" in value:  # PostgreSQL cannot store it: refused here, not by the database
            raise ValueError("holds a NUL character")
        return value


def _entitled(case: dict | None, case_no: str, by: str, settings) -> None:
    """Only an active officer of the case's hall or of its department sees the applicant: the
    directory (data/org.toml) says who they are. Who runs the command is not proven here (it reads
    the database directly): the audit row records whom they named (docs/security.md)."""
    from datetime import datetime, timezone

    from activities.org import DirectoryError, load_directory

    if case is None:
        raise Refused(f"case {case_no}: no such case in the application database")
    try:
        directory = load_directory(settings.org_file, settings.keys_file)
    except DirectoryError as err:
        raise Refused(str(err), BAD_INPUT) from None
    officer = directory.active(by, datetime.now(timezone.utc))
    places = [p for p in (case.get("hall"), case.get("department")) if p]
    if officer is None or not ({officer.hall, officer.department} & set(places)):
        raise Refused(
            f"{by} may not see the applicant of case {case_no}: only an active officer of {' or '.join(places)} "
            "(data/org.toml); say who asks with --by"
        )


def _disclose(case_no: str, asker: _Asker) -> dict:
    """The applicant's details, once the audit row naming the asker is written (exit 3 when the
    application database cannot be read or written, 1 when no applicant is on record)."""
    settings = get_settings()
    engine = make_engine(settings.database_url)
    try:
        store = Store(engine)
        _entitled(store.case_row(case_no), case_no, asker.by, settings)
        person = store.disclose_applicant(case_no, asker.by, asker.reason)
    except exc.SQLAlchemyError as err:
        reason, _ = failure_reason(err)
        raise Refused(f"cannot read the application database: {reason}", UNREACHABLE) from None
    except Undecryptable as err:
        raise Refused(f"case {case_no}: the applicant's details do not decrypt: {err}") from None
    finally:
        engine.dispose()
    if person is None:
        raise Refused(f"case {case_no}: no applicant details on record")
    return {k: v for k, v in person.items() if k != "updated_at"}


@app.command()
def supplement(
    case_no: CaseNo,
    materials: Annotated[str, typer.Option(help="comma-separated material codes")],
    by: Annotated[str, typer.Option(help="who handed them in (clerk id)")],
    output: OutputFlag = Output.text,
) -> None:
    """Hand in deferred materials."""
    request = check(lambda: SupplementMaterials(materials=codes(materials), submitted_by=by), "supplement")
    answer = calls.run(
        lambda client, _: calls.update(client, case_workflow_id(case_no), CaseWorkflow.supplement_materials, request)
    )
    render.reply(output, answer, lambda r: render.supplement(case_no, r))


@app.command()
def withdraw(
    case_no: CaseNo, reason: Annotated[str, typer.Option()], by: Annotated[str, typer.Option()],
    output: OutputFlag = Output.text,
) -> None:
    """The applicant withdraws before a decision."""
    request = check(lambda: Withdraw(reason=reason, requested_by=by), "withdrawal")
    workflow_id = case_workflow_id(case_no)
    answer = calls.run(lambda client, _: calls.update(client, workflow_id, CaseWorkflow.withdraw, request))
    render.reply(output, answer, render.outcome)


@app.command()
def opinion(
    case_no: CaseNo,
    department: Annotated[str, typer.Option()],
    officer: Annotated[str, typer.Option()],
    agree: Annotated[bool, typer.Option("--agree/--no-agree", help="the department agrees, or not")],
    opinion: str = "",
    output: OutputFlag = Output.text,
) -> None:
    """A consulted department answers (并联审批)."""
    request = check(
        lambda: DepartmentOpinion(department=department, officer=officer, agree=agree, opinion=opinion), "opinion"
    )
    done = f"{department} {'agrees' if agree else 'disagrees'}"
    _send(case_no, CaseWorkflow.department_opinion, request, output, done)


@app.command()
def review(
    case_no: CaseNo,
    reviewer: Annotated[str, typer.Option()],
    decision: Annotated[Literal["approve", "return", "reject"], typer.Option()],
    opinion: str = "",
    correction: Annotated[list[str], typer.Option(help="one correction; repeat for each (return)")] = [],
    output: OutputFlag = Output.text,
) -> None:
    """Comprehensive review (综合研判): approve, return or reject."""
    request = check(
        lambda: Review(reviewer=reviewer, decision=decision, opinion=opinion, corrections=correction), "review"
    )
    _send(case_no, CaseWorkflow.review, request, output, f"{reviewer} decided {decision}")


@app.command()
def resubmit(
    case_no: CaseNo,
    materials: Annotated[str, typer.Option(help="comma-separated material codes corrected or added")] = "",
    note: str = "",
    by: str = "applicant",
    output: OutputFlag = Output.text,
) -> None:
    """The applicant's corrections after a return (补正)."""
    request = check(lambda: Resubmit(materials=codes(materials), note=note, submitted_by=by), "resubmit")
    _send(case_no, CaseWorkflow.resubmit, request, output, "corrections received")


@app.command()
def transfer(
    case_no: CaseNo,
    by: Annotated[str, typer.Option()],
    to: Annotated[str, typer.Option()],
    reason: Annotated[str, typer.Option()],
    output: OutputFlag = Output.text,
) -> None:
    """Hand the review to another allowed reviewer (转办)."""
    request = check(lambda: Transfer(by=by, to_reviewer=to, reason=reason), "transfer")
    _send(case_no, CaseWorkflow.transfer, request, output, f"review handed from {by} to {to}")


@app.command()
def vote(
    case_no: CaseNo,
    member: Annotated[str, typer.Option()],
    choice: Annotated[Literal["approve", "reject", "defer"], typer.Option()],
    opinion: str = "",
    output: OutputFlag = Output.text,
) -> None:
    """A panel member votes (集体决策)."""
    request = check(lambda: Vote(member=member, choice=choice, opinion=opinion), "vote")
    _send(case_no, CaseWorkflow.vote, request, output, f"{member} voted {choice}")


@app.command()
def urge(case_no: CaseNo, by: Annotated[str, typer.Option()], note: str = "", output: OutputFlag = Output.text) -> None:
    """Chase whoever holds the case (催办), once per working day."""
    request = check(lambda: Urge(by=by, note=note), "urge")
    _send(case_no, CaseWorkflow.urge, request, output, f"urged by {by}")


@app.command()
def rate(
    case_no: CaseNo,
    score: Annotated[int, typer.Option(min=1, max=5, help="5 very satisfied down to 1 very dissatisfied")],
    channel: Annotated[Literal["window", "app", "web", "sms", "hotline", "kiosk"], typer.Option()] = "window",
    comment: str = "",
    output: OutputFlag = Output.text,
) -> None:
    """The applicant rates an ended case (好差评).

    1 and 2 are bad reviews: the department verifies, rectifies and answers each."""
    request = check(lambda: Rate(score=score, comment=comment, channel=channel), "rate")
    _send(case_no, CaseWorkflow.rate, request, output, f"rated {score}")
