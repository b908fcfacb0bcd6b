"""`starter.py sign`: the `hallflow-actor` header for a message sent with the temporal CLI.

    J='{"reviewer": "officer-li", "decision": "approve", "opinion": "lawful"}'
    temporal workflow update execute --workflow-id case-HALL-0001 --name review --input "$J" \\
        --headers "$(python starter.py sign --actor officer-li \\
                     --workflow-id case-HALL-0001 --message review --input "$J")"

The input is hashed byte for byte as given, as the temporal CLI sends --input and --input-file
unchanged: pass the very same string or file to both.

One call that carries two messages under one header (update-with-start) needs both assertions in
it, as a JSON array: `--also-message` (with `--also-input` or `--also-input-file`, and
`--also-actor` when someone else acts) adds the second; the worker takes the one whose message
matches. The temporal CLI's signal-with-start sends no header: start with `workflow start
--headers`, then signal from an SDK.
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
from security.keys import KeyFileError, PrivateKey, load_private
from security.signing import header_value, sign as sign_assertion
from settings import get_settings


def _payload(input: str | None, input_file: Path | None, flag: str) -> bytes:
    if input is not None and input_file is not None:
        raise Refused(f"give {flag} or {flag}-file, not both", BAD_INPUT)
    # os.fsencode gives back the argument's bytes as the shell passed them, even non-UTF-8 ones.
    return os.fsencode(input) if input is not None else input_file.read_bytes() if input_file else b""


def sign(
    actor: Annotated[str, typer.Option(help="who acts: an officer id, applicant, hallflow, a hall")],
    workflow_id: Annotated[str, typer.Option(help="the workflow the message goes to")],
    message: Annotated[
        str, typer.Option(help="the Update name, the signal name as sent, or the workflow type of a start")
    ],
    key: Annotated[
        Path | None, typer.Option(help="private key file (default: HALLFLOW_SIGNING_KEY)")
    ] = None,
    input: Annotated[
        str | None, typer.Option("--input", "-i", help="the message's JSON argument, exactly as passed to temporal")
    ] = None,
    input_file: Annotated[Path | None, typer.Option(help="the argument from a file, as temporal's --input-file")] = None,
    also_message: Annotated[
        str | None,
        typer.Option(
            help="a second message under the same header (update-with-start: the Update and the workflow type): "
            "prints both assertions as a JSON array"
        ),
    ] = None,
    also_input: Annotated[
        str | None, typer.Option(help="the second message's JSON argument, exactly as passed to temporal")
    ] = None,
    also_input_file: Annotated[Path | None, typer.Option(help="the second message's argument from a file")] = None,
    also_actor: Annotated[
        str | None, typer.Option(help="who acts in the second message (default: --actor)")
    ] = None,
    lifetime: Annotated[
        int, typer.Option(min=1, max=int(MAX_LIFETIME.total_seconds()), help="seconds the assertion is valid")
    ] = int(MAX_LIFETIME.total_seconds()),
) -> None:
    """Print the signed hallflow-actor header for the temporal CLI.

    `hallflow-actor=<signed assertion>`, for the temporal CLI's --headers.

    With --also-message: `hallflow-actor=[<assertion>, <assertion>]`, for a call carrying two messages."""
    if also_message is None and (also_input is not None or also_input_file is not None or also_actor is not None):
        raise Refused("--also-input, --also-input-file and --also-actor need --also-message", BAD_INPUT)
    try:
        private = load_private(key or get_settings().signing_key)
        messages = [(actor, message, _payload(input, input_file, "--input"))]
        if also_message is not None:
            messages.append((also_actor or actor, also_message, _payload(also_input, also_input_file, "--also-input")))
        values = [_signed(private, who, workflow_id, name, payload, lifetime) for who, name, payload in messages]
    except (KeyFileError, OSError) as err:
        raise Refused(str(err), BAD_INPUT) from None
    except ValidationError as err:
        raise Refused(f"cannot sign: {describe(err)}", BAD_INPUT) from None
    value = values[0] if len(values) == 1 else "[" + ",".join(values) + "]"
    # Bytes, not text: the line is UTF-8 whatever the locale says, as the temporal CLI reads it.
    sys.stdout.flush()
    sys.stdout.buffer.write(f"{HEADER}={value}\n".encode())
    sys.stdout.buffer.flush()


def _signed(key: PrivateKey, actor: str, workflow_id: str, message: str, payload: bytes, lifetime: int) -> str:
    assertion = sign_assertion(
        key, actor=actor, workflow_id=workflow_id, message=message, payload=payload, lifetime=timedelta(seconds=lifetime)
    )
    return header_value(assertion)
