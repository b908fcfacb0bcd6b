"""The codec server as a deployment runs it: `python -m security.codec_server` in its own process,
on a free loopback port, with a token, decrypting with the test data keys (tests/keys)."""

import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass

import pytest

from settings import ROOT


@dataclass(frozen=True)
class CodecServer:
    url: str  # http://127.0.0.1:<port>, what --codec-endpoint takes
    token: str

    @property
    def auth(self) -> str:  # what --codec-auth takes
        return f"Bearer {self.token}"

    @property
    def ui_endpoint(self) -> str:  # what --ui-codec-endpoint takes: the UI sends no header
        return f"{self.url}/{self.token}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_codec_server(log_path, origins: str | None = None) -> tuple[subprocess.Popen, CodecServer]:
    port, token = free_port(), secrets.token_urlsafe(24)
    env = {**os.environ, "HALLFLOW_CODEC_PORT": str(port), "HALLFLOW_CODEC_TOKEN": token}
    if origins:
        env["HALLFLOW_CODEC_ORIGINS"] = origins
    log = open(log_path, "a")
    process = subprocess.Popen([sys.executable, "-m", "security.codec_server"], cwd=ROOT, env=env, stderr=log, stdout=log)
    log.close()
    server = CodecServer(f"http://127.0.0.1:{port}", token)
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{server.url}/healthz", timeout=2):
                return process, server
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"codec server did not start; see {log_path}") from None
            time.sleep(0.2)


@pytest.fixture(scope="module")
def codec_server(tmp_path_factory):
    process, server = start_codec_server(tmp_path_factory.mktemp("codec") / "codec.log")
    try:
        yield server
    finally:
        process.terminate()
        process.wait(timeout=10)
