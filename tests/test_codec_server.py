"""The codec server as the Web UI and the temporal CLI reach it: over HTTP, in its own process,
holding the test data keys (tests/keys). No Temporal server is needed."""

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from security.codec import DataCodec
from security.codec_server import origins
from security.data_keys import add_key, parse
from settings import ROOT, get_settings
from tests.codec_fixtures import free_port
from tests.org_fixtures import data_converter

NAME = "张三丰"  # personal data: never readable without the key
PLAIN = Payload(
    metadata={"encoding": b"json/plain"},
    data=json.dumps({"case_no": "CODEC-0001", "applicant": {"name": NAME}}, ensure_ascii=False).encode(),
)


def post(url: str, body: bytes, headers: dict[str, str] | None = None, method: str = "POST"):
    """(status, headers, body) of one request, errors included."""
    request = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def as_json(*payloads: Payload) -> bytes:
    return json_format.MessageToJson(Payloads(payloads=payloads)).encode()


def payloads(body: bytes) -> list[Payload]:
    return list(json_format.Parse(body, Payloads()).payloads)


def call(server, action: str, *items: Payload) -> list[Payload]:
    status, _, body = post(f"{server.url}/{action}", as_json(*items), {"Authorization": server.auth})
    assert status == 200, body
    return payloads(body)


async def test_what_hallflow_encrypts_the_server_decodes_and_the_other_way_round(codec_server):
    # What a worker or starter.py puts into Temporal, the server shows as sent.
    written = await data_converter.payload_codec.encode([PLAIN])
    assert call(codec_server, "decode", *written) == [PLAIN]

    # What the server encodes (the UI's and CLI's --input) is hallflow's format: the worker reads it.
    (sealed,) = call(codec_server, "encode", PLAIN)
    assert sealed.metadata["encoding"] == b"binary/encrypted"
    assert NAME.encode() not in sealed.data
    assert await data_converter.payload_codec.decode([sealed]) == [PLAIN]
    assert call(codec_server, "decode", sealed) == [PLAIN]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-the-token-at-all"}, "basic-scheme"],
    ids=["no token", "wrong token", "not bearer"],
)
def test_a_request_without_the_token_is_refused(codec_server, headers):
    if headers == "basic-scheme":  # the right secret under the wrong scheme is still refused
        headers = {"Authorization": f"Basic {codec_server.token}"}
    for action in ("decode", "encode"):
        status, answer_headers, body = post(f"{codec_server.url}/{action}", as_json(PLAIN), headers)
        assert status == 401
        assert answer_headers["WWW-Authenticate"] == "Bearer"
        assert "Bearer" in json.loads(body)["error"]
        assert NAME not in body.decode()


async def test_the_token_may_be_the_first_path_segment_for_the_web_ui(codec_server):
    (written,) = await data_converter.payload_codec.encode([PLAIN])
    status, _, body = post(f"{codec_server.ui_endpoint}/decode", as_json(written))
    assert status == 200 and payloads(body) == [PLAIN]

    status, _, body = post(f"{codec_server.url}/not-the-token-at-all/decode", as_json(written))
    assert status == 401 and NAME not in body.decode()


def test_browsers_are_let_in_from_the_web_ui_origin_only(codec_server):
    ui = origins(get_settings())[0]  # HALLFLOW_UI_URL, as the server reads it
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type,x-namespace"}

    status, headers, _ = post(f"{codec_server.ui_endpoint}/decode", b"", {"Origin": ui, **preflight}, "OPTIONS")
    assert status == 200 and headers["Access-Control-Allow-Origin"] == ui
    status, headers, _ = post(f"{codec_server.ui_endpoint}/decode", as_json(PLAIN), {"Origin": ui})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == ui

    elsewhere = "http://pages.example:8080"
    status, headers, _ = post(f"{codec_server.ui_endpoint}/decode", b"", {"Origin": elsewhere, **preflight}, "OPTIONS")
    assert status != 200 and "Access-Control-Allow-Origin" not in headers
    # The request itself may go through, but the browser is given nothing that lets the page read it.
    _, headers, _ = post(f"{codec_server.ui_endpoint}/decode", as_json(PLAIN), {"Origin": elsewhere})
    assert "Access-Control-Allow-Origin" not in headers


async def test_a_payload_under_a_key_the_server_does_not_hold_comes_back_as_it_was(codec_server, tmp_path):
    key_id, _ = add_key(tmp_path / "elsewhere.toml", "aes-256-gcm", "k-another-deployment")
    (foreign,) = await DataCodec(parse((tmp_path / "elsewhere.toml").read_text(), "elsewhere")).encode([PLAIN])
    (ours,) = await data_converter.payload_codec.encode([PLAIN])

    # One unreadable payload does not spoil the page: the others still decode.
    shown = call(codec_server, "decode", foreign, ours)
    assert shown == [foreign, PLAIN]
    assert shown[0].metadata["encoding"] == b"binary/encrypted"
    assert shown[0].metadata["encryption-key-id"] == key_id.encode()


@pytest.mark.parametrize("body", [b"", b"not json", b'{"payloads": "one"}', b'{"payload": []}', b"\xff\xfe"])
def test_a_malformed_body_is_a_400_saying_what_is_expected(codec_server, body):
    status, _, answer = post(f"{codec_server.url}/decode", body, {"Authorization": codec_server.auth})
    assert status == 400
    assert '{"payloads": [...]}' in json.loads(answer)["error"]


def test_starter_codec_server_listens_where_its_flags_say(tmp_path):
    port = free_port()
    token = "a-token-for-this-test-only"
    env = {**os.environ, "HALLFLOW_CODEC_TOKEN": token, "HALLFLOW_CODEC_PORT": "1"}  # --port wins
    log = open(tmp_path / "codec.log", "w")
    server = subprocess.Popen(
        [sys.executable, "starter.py", "codec-server", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=log,
    )
    log.close()
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                status, _, body = post(f"{url}/decode", as_json(PLAIN), {"Authorization": f"Bearer {token}"})
                break
            except OSError:  # not listening yet
                assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "codec.log").read_text()
                time.sleep(0.2)
        assert status == 200, body
        assert payloads(body) == [PLAIN]
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_starter_codec_server_without_a_token_says_how_to_make_one(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "HALLFLOW_CODEC_TOKEN"}
    env["HALLFLOW_CODEC_TOKEN_FILE"] = str(tmp_path / "codec-token")
    done = subprocess.run(
        [sys.executable, "starter.py", "codec-server", "--port", str(free_port())],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=30,
    )
    assert done.returncode == 2
    assert "make keys" in done.stderr and "HALLFLOW_CODEC_TOKEN" in done.stderr
