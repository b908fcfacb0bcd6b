"""`starter.py sign`: the `hallflow-actor` header for a message sent with the temporal CLI.

    J='{"reviewer": "officer-li", "decision": "approve", "opinion": "lawful"}'
    temporal workflow update execute --workflow-id case-HALL-0001 --name review --input "$J" \\
        --headers "$(python starter.py sign --key var/keys/hallflow-cli.key.toml --actor officer-li \\
                     --workflow-id case-HALL-0001 --message review --input "$J")"

The input is hashed byte for byte as given, as the temporal CLI sends --input and --input-file
unchanged: pass the very same string or file to both.
"""

import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from cli.calls import BAD_INPUT, Refused
from contract.assertion import HEADER, MAX_LIFETIME
from contract.converter import describe
from security.keys import KeyFileError, load_private
from security.signing import header_value, sign as sign_assertion


def sign(
    key: Annotated[Path, typer.Option(help="private key file (starter.py admin keys new)")],
    actor: Annotated[str, typer.Option(help="who acts: an officer id, applicant, hallflow…")],
    workflow_id: Annotated[str, typer.Option(help="the workflow the message goes to")],
    message: Annotated[
        str, typer.Option(help="the Update name, the signal name as sent, or the workflow type of a start")
    ],
    input: Annotated[
        str | None, typer.Option("--input", "-i", help="the message's JSON argument, exactly as passed to temporal")
    ] = None,
    input_file: Annotated[Path | None, typer.Option(help="the argument from a file, as temporal's --input-file")] = None,
    lifetime: Annotated[
        int, typer.Option(min=1, max=int(MAX_LIFETIME.total_seconds()), help="seconds the assertion is valid")
    ] = int(MAX_LIFETIME.total_seconds()),
) -> None:
    """Print `hallflow-actor=<signed assertion>` for the temporal CLI's --headers."""
    if input is not None and input_file is not None:
        raise Refused("give --input or --input-file, not both", BAD_INPUT)
    try:
        private = load_private(key)
        # os.fsencode gives back the argument's bytes as the shell passed them, even non-UTF-8 ones.
        payload = os.fsencode(input) if input is not None else input_file.read_bytes() if input_file else b""
        assertion = sign_assertion(
            private,
            actor=actor,
            workflow_id=workflow_id,
            message=message,
            payload=payload,
            lifetime=timedelta(seconds=lifetime),
        )
    except (KeyFileError, OSError) as err:
        raise Refused(str(err), BAD_INPUT) from None
    except ValidationError as err:
        raise Refused(f"cannot sign: {describe(err)}", BAD_INPUT) from None
    # Bytes, not text: the line is UTF-8 whatever the locale says, as the temporal CLI reads it.
    sys.stdout.flush()
    sys.stdout.buffer.write(f"{HEADER}={header_value(assertion)}\n".encode())
    sys.stdout.buffer.flush()
