"""The codec server: Temporal's remote codec protocol over HTTP, so that the Web UI and the
`temporal` CLI (`--codec-endpoint`, `--codec-auth`) show hallflow's encrypted payloads decoded.

    POST /encode, POST /decode   body and answer: {"payloads": [{"metadata": {...}, "data": "..."}]}
                                 (temporal.api.common.v1.Payloads as protobuf JSON)
    Authorization: Bearer <token>, or the token as the first path segment (/<token>/decode) for
    a UI that cannot send a header (the dev server's `--ui-codec-endpoint`; docs/security.md).

Run it with `python -m security.codec_server` (or `starter.py codec-server`); it binds to
HALLFLOW_CODEC_HOST:HALLFLOW_CODEC_PORT, loopback by default. It holds the data keys and never
talks to Temporal: whoever holds the token can decrypt what they can already fetch."""

import hmac
import secrets
from pathlib import Path

import structlog
from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from temporalio.api.common.v1 import Payloads

from security.codec import DataCodec
from security.data_keys import DataKeys
from settings import Settings

log = structlog.get_logger("hallflow.codec_server")
MAX_BODY = 8 * 1024 * 1024  # a page of history's payloads; more is refused, not buffered


def read_token(settings: Settings, create: bool = False) -> str:
    """HALLFLOW_CODEC_TOKEN, else the token file (`create`: write a new one, 0600, if absent)."""
    if settings.codec_token is not None:
        return settings.codec_token.get_secret_value()
    path = Path(settings.codec_token_file)
    if not path.exists():
        if not create:
            raise FileNotFoundError(f"{path}: no codec token; `make keys` writes one, or set HALLFLOW_CODEC_TOKEN")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32) + "\n", encoding="utf-8")
    token = path.read_text(encoding="utf-8").strip()
    if len(token) < 16:
        raise ValueError(f"{path}: a codec token has at least 16 characters")
    return token


def origins(settings: Settings) -> list[str]:
    if settings.codec_origins:
        return [o.strip().rstrip("/") for o in settings.codec_origins.split(",") if o.strip()]
    ui = settings.ui_url.rstrip("/")
    return sorted({ui, ui.replace("127.0.0.1", "localhost"), ui.replace("localhost", "127.0.0.1")})


def app(keys: DataKeys, token: str, allowed_origins: list[str]) -> Starlette:
    codec = DataCodec(keys, keep_unreadable=True)  # a payload it cannot open is shown as it is

    def authorised(request: Request) -> bool:
        given = request.path_params.get("token")
        if given is None:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer":
                return False
        return hmac.compare_digest(given.strip().encode(), token.encode())

    async def handle(request: Request) -> Response:
        if not authorised(request):
            log.warning("codec_unauthorised", path=request.url.path.split("/")[-1], origin=request.headers.get("origin"))
            return JSONResponse(
                {"error": "unauthorised: send Authorization: Bearer <token> (HALLFLOW_CODEC_TOKEN or var/keys/codec-token)"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        body = await request.body()
        if len(body) > MAX_BODY:
            return JSONResponse({"error": f"body over {MAX_BODY} bytes"}, status_code=413)
        try:
            payloads = json_format.Parse(body, Payloads())
        except (json_format.ParseError, UnicodeDecodeError) as err:
            return JSONResponse({"error": f"expected {{\"payloads\": [...]}} (Payloads as protobuf JSON): {err}"}, status_code=400)
        action = request.url.path.rsplit("/", 1)[-1]
        coded = await (codec.encode if action == "encode" else codec.decode)(list(payloads.payloads))
        log.info("codec_" + action, payloads=len(coded), namespace=request.headers.get("x-namespace"))
        return Response(json_format.MessageToJson(Payloads(payloads=coded)), media_type="application/json")

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/encode", handle, methods=["POST"]),
            Route("/decode", handle, methods=["POST"]),
            Route("/{token}/encode", handle, methods=["POST"]),
            Route("/{token}/decode", handle, methods=["POST"]),
            Route("/healthz", health, methods=["GET"]),
        ],
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=allowed_origins,
                allow_methods=["POST"],
                allow_headers=["Authorization", "Content-Type", "X-Namespace"],
                allow_credentials=True,
                max_age=600,
            )
        ],
    )


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Build the app (raising DataKeyError, OSError or ValueError before anything binds when the
    keys or the token are missing), then serve until interrupted. host/port override settings."""
    import uvicorn

    from security.data_keys import load

    host, port = host or settings.codec_host, settings.codec_port if port is None else port
    server = app(load(settings), read_token(settings), origins(settings))
    log.info("codec_server_started", host=host, port=port, origins=origins(settings))
    uvicorn.run(server, host=host, port=port, log_level="warning", access_log=False)


def main() -> None:
    from logs import configure_logging
    from settings import get_settings

    settings = get_settings()
    configure_logging(settings.log_level)
    serve(settings)


if __name__ == "__main__":
    main()
