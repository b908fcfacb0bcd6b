"""`starter.py codec-server`: the codec server (security/codec_server.py) in the foreground, for the
Web UI (`--ui-codec-endpoint`) and the temporal CLI (`--codec-endpoint`, `--codec-auth`).

    python starter.py codec-server                       # HALLFLOW_CODEC_HOST:HALLFLOW_CODEC_PORT
    python starter.py codec-server --port 9234           # flags win over the settings
"""

from typing import Annotated

import typer

from cli.calls import BAD_INPUT, Refused
from settings import get_settings


def codec_server(
    host: Annotated[
        str | None, typer.Option(help="address to bind (default: HALLFLOW_CODEC_HOST, 127.0.0.1)")
    ] = None,
    port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="port (default: HALLFLOW_CODEC_PORT, 8234)")
    ] = None,
) -> None:
    """Decode payloads for the Web UI and the temporal CLI.

    A server: it decodes (and encodes) payloads for whoever holds the token, until interrupted."""
    from logs import configure_logging
    from security.codec_server import serve
    from security.data_keys import DataKeyError

    settings = get_settings()
    configure_logging(settings.log_level)  # a server: it logs what it serves (HALLFLOW_LOG_LEVEL, INFO)
    try:  # what is missing is said before anything binds: no keys file, no token, a short token
        serve(settings, host, port)
    except (DataKeyError, OSError, ValueError) as err:
        raise Refused(str(err), BAD_INPUT) from None
