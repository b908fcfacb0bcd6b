"""The command tree, in the `temporal` CLI's manner: `starter.py <group> <command>`, a short
answer for people by default, `-o json` for scripts, and the exit codes scripts rely on."""

from typer import Typer

from cli import admin, audit, case, codec, directory, feedback, operator, risk, sign
from cli.calls import DONE, REFUSED, Refused
from cli.render import refusal
from logs import configure_logging
from settings import Settings, get_settings

app = Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # a crash must not print an applicant's details
    help="hallflow for service halls. Exit codes: 0 done, 1 refused by hallflow (the message says why), "
    "2 bad input, 3 Temporal unreachable.",
)
app.add_typer(case.app, name="case")
app.add_typer(feedback.app, name="feedback")
app.add_typer(risk.app, name="risk")
app.add_typer(operator.app, name="operator")
app.add_typer(admin.app, name="admin")
admin.app.add_typer(directory.app, name="directory")
# Apart from the five groups, each for a reason: `audit` is an auditor's, reads the database only,
# and its exit 1 says a chain is broken, not that hallflow refused; `sign` sends nothing, it prints
# one header line for the temporal CLI's own commands (no -o); `codec-server` is a server in the
# foreground (make run, deploy/), not a request. Their names are in docs/ and deploy/ as they are.
TOOLS = "Tools"
app.add_typer(audit.app, name="audit", rich_help_panel=TOOLS)
app.command("sign", rich_help_panel=TOOLS)(sign.sign)
app.command("codec-server", rich_help_panel=TOOLS)(codec.codec_server)


def log_level(settings: Settings) -> str:
    """A command's answer is its output: no log line on stderr unless something is wrong, or
    HALLFLOW_LOG_LEVEL asks for more (its default, INFO, is the worker's)."""
    return settings.log_level if "log_level" in settings.model_fields_set else "WARNING"


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit code. A usage error is Typer's own message and exit 2."""
    configure_logging(log_level(get_settings()))
    try:
        app(args=argv, prog_name="starter.py")
    except SystemExit as done:  # Typer ends every command this way, usage errors with 2
        return done.code if isinstance(done.code, int) else DONE if done.code is None else REFUSED
    except Refused as err:
        refusal(str(err))
        return err.code
    return DONE
