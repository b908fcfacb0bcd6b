"""worker.py and starter.py reach Temporal over TLS, mTLS or with an API key, configured the way
the `temporal` CLI is: TEMPORAL_* variables or a profile file (security/connection.py). The dev
server cannot serve TLS, so a TLS-terminating proxy on loopback stands in front of it; the
certificates are made for the test (tests/tls_fixtures.py)."""

import os
import random
import subprocess
import sys
import time

import pytest

from security.connection import TemporalUnreachable, temporal_connection, unreachable_reason
from settings import ROOT, Settings, connect
from tests.e2e_fixtures import shipped_calendar_or_placeholder, stage_of, wait_for
from tests.tls_fixtures import TLSProxy

pytestmark = pytest.mark.e2e

MATERIALS = (
    "business-licence-application,articles-of-association,shareholder-qualification,"
    "legal-representative-appointment,seal-engraving-form"
)


@pytest.fixture(autouse=True)
def no_hallflow_address(monkeypatch):
    """`make test` exports HALLFLOW_TEMPORAL_ADDRESS (the Makefile's default server), which would
    win over TEMPORAL_ADDRESS in Settings() here: these tests are about Temporal's own settings."""
    monkeypatch.delenv("HALLFLOW_TEMPORAL_ADDRESS", raising=False)
    monkeypatch.delenv("HALLFLOW_NAMESPACE", raising=False)


def plain_env(**extra: str) -> dict[str, str]:
    """The test's environment without any way to Temporal but `extra`: no HALLFLOW address or
    namespace, no TEMPORAL_* variable, and no profile file (a developer's own stays out)."""
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith("TEMPORAL_") and k not in ("HALLFLOW_TEMPORAL_ADDRESS", "HALLFLOW_NAMESPACE")
    }
    return {**env, "TEMPORAL_CONFIG_FILE": os.devnull, **extra}


def starter(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "starter.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def start_case(env: dict[str, str]) -> str:
    case_no = f"TLS-{time.time_ns()}"
    started = starter(
        env, "case", "start", "--case-no", case_no, "--matter", "enterprise-opening", "--hall", "hall-central",
        "--clerk", "clerk-01", "--applicant-id", "app-tls-1", "--applicant-name", "王五", "--materials", MATERIALS,
        "--commitment-signed",
    )
    assert started.returncode == 0, started.stderr
    return case_no


def status_via(env: dict[str, str]):
    """stage_of's `hall`: starter.py with these variables."""
    return lambda *args: starter(env, *args)


@pytest.fixture(scope="module")
def tls_proxy(dev_server, certs):
    with TLSProxy(dev_server.client.service_client.config.target_host, certs) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def mtls_proxy(dev_server, certs):
    with TLSProxy(dev_server.client.service_client.config.target_host, certs, client_ca=certs.ca) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def server_tls(tls_proxy, certs):
    """Only TEMPORAL_* variables say where Temporal is and which CA signs its certificate."""
    return plain_env(TEMPORAL_ADDRESS=tls_proxy.address, TEMPORAL_TLS_SERVER_CA_CERT_PATH=str(certs.ca))


@pytest.fixture(scope="module")
def worker(server_tls, tmp_path_factory):
    """worker.py over server TLS, configured only as server_tls says."""
    folder = tmp_path_factory.mktemp("tls-worker")
    env = {
        **server_tls,
        "HALLFLOW_DATABASE_URL": f"sqlite:///{folder / 'hallflow.db'}",
        "HALLFLOW_TASK_QUEUE": "hallflow",
        "HALLFLOW_CALENDAR_DIR": str(shipped_calendar_or_placeholder(folder / "calendar")),
    }
    with open(folder / "worker.log", "w") as log:
        process = subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=env, stderr=log, text=True)
    try:
        yield folder / "worker.log"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_worker_and_starter_run_a_case_over_tls_from_temporal_variables(worker, server_tls, tls_proxy):
    case_no = start_case(server_tls)
    # The status is the worker's answer to a query: both ends went through the TLS proxy.
    assert wait_for(lambda: stage_of(status_via(server_tls), case_no) == "awaiting_review"), worker.read_text()
    assert tls_proxy.handshakes >= 2
    assert '"worker_started"' in worker.read_text()


def test_starter_needs_a_client_certificate_where_the_server_asks_for_one(worker, mtls_proxy, certs):
    mtls = plain_env(
        TEMPORAL_ADDRESS=mtls_proxy.address, TEMPORAL_TLS_SERVER_CA_CERT_PATH=str(certs.ca),
        TEMPORAL_TLS_CLIENT_CERT_PATH=str(certs.client_cert), TEMPORAL_TLS_CLIENT_KEY_PATH=str(certs.client_key),
    )
    case_no = start_case(mtls)
    assert wait_for(lambda: stage_of(status_via(mtls), case_no) == "awaiting_review")

    anonymous = {k: v for k, v in mtls.items() if not k.startswith("TEMPORAL_TLS_CLIENT_")}
    refused = starter(anonymous, "case", "status", case_no)
    assert refused.returncode == 3, refused.stderr
    assert refused.stderr.strip().splitlines() == [refused.stderr.strip()]  # one line, no traceback
    assert refused.stderr.startswith(f"cannot reach Temporal at {mtls_proxy.address}: ")
    assert "client certificate" in refused.stderr and refused.stdout == ""


def test_a_profile_file_serves_starter_as_it_serves_the_temporal_cli(worker, mtls_proxy, certs, tmp_path):
    profile = tmp_path / "temporal.toml"
    profile.write_text(
        f"""[profile.hall]
address = "{mtls_proxy.address}"
[profile.hall.tls]
server_ca_cert_path = "{certs.ca}"
client_cert_path = "{certs.client_cert}"
client_key_path = "{certs.client_key}"

[profile.elsewhere]
address = "127.0.0.1:1"
[profile.elsewhere.tls]
server_ca_cert_path = "{certs.ca}"
client_cert_path = "{certs.client_cert}"
client_key_path = "{certs.client_key}"
""",
        encoding="utf-8",
    )
    hall = plain_env(TEMPORAL_CONFIG_FILE=str(profile), TEMPORAL_PROFILE="hall")
    case_no = start_case(hall)
    assert wait_for(lambda: stage_of(status_via(hall), case_no) == "awaiting_review")

    # An explicit HALLFLOW_TEMPORAL_ADDRESS wins over the profile's address; its TLS still applies.
    moved = plain_env(
        TEMPORAL_CONFIG_FILE=str(profile), TEMPORAL_PROFILE="elsewhere", HALLFLOW_TEMPORAL_ADDRESS=mtls_proxy.address
    )
    assert stage_of(status_via(moved), case_no) == "awaiting_review"
    away = starter({**moved, "HALLFLOW_TEMPORAL_ADDRESS": "127.0.0.1:1"}, "case", "status", case_no)
    assert away.returncode == 3 and "cannot reach Temporal at 127.0.0.1:1: connection refused" in away.stderr

    missing = starter(plain_env(TEMPORAL_CONFIG_FILE=str(tmp_path / "nowhere.toml")), "case", "status", case_no)
    assert missing.returncode == 2 and "nowhere.toml does not exist" in missing.stderr


# RFC 7541 appendix B: the ten characters with 5-bit Huffman codes, 0b00000 to 0b01001. h2 (the
# SDK core's HTTP/2) Huffman-codes every header value, so an API key of these characters shows up
# in the decrypted stream as a known run of bits.
HUFFMAN_5 = {c: format(i, "05b") for i, c in enumerate("012aceiost")}


def bits(data: bytes) -> str:
    return "".join(format(b, "08b") for b in data)


def test_api_key_reaches_the_server_as_a_bearer_token(dev_server, certs):
    """Checked on the wire: behind the proxy's TLS, the client's HTTP/2 headers carry the key's
    Huffman code (and, after it, nothing when no key is set). The header's name is the SDK's."""
    key = "".join(random.choice(tuple(HUFFMAN_5)) for _ in range(40))
    key_bits = "".join(HUFFMAN_5[c] for c in key)
    with TLSProxy(dev_server.client.service_client.config.target_host, certs, record=True) as proxy:
        env = plain_env(
            TEMPORAL_ADDRESS=proxy.address, TEMPORAL_TLS_SERVER_CA_CERT_PATH=str(certs.ca), TEMPORAL_API_KEY=key
        )
        asked = starter(env, "case", "status", "NO-SUCH-CASE")
        assert asked.returncode == 1 and "not found" in asked.stderr, asked.stderr  # connected, then asked
        assert key_bits in bits(bytes(proxy.received))

        proxy.received.clear()
        without = starter({k: v for k, v in env.items() if k != "TEMPORAL_API_KEY"}, "case", "status", "NO-SUCH-CASE")
        assert without.returncode == 1, without.stderr
        assert proxy.received and key_bits not in bits(bytes(proxy.received))

    where = temporal_connection(Settings(), env)
    assert where.api_key == key and where.uses_tls and where.address == proxy.address


def test_hallflow_settings_set_explicitly_win_over_temporal_variables(monkeypatch):
    for name in ("HALLFLOW_TEMPORAL_ADDRESS", "HALLFLOW_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)
    env = plain_env(TEMPORAL_ADDRESS="temporal.example:7233", TEMPORAL_NAMESPACE="hall-prod", TEMPORAL_API_KEY="k")
    from_profile = temporal_connection(Settings(), env)
    assert (from_profile.address, from_profile.namespace) == ("temporal.example:7233", "hall-prod")
    assert from_profile.uses_tls  # an API key turns TLS on
    explicit = temporal_connection(Settings(temporal_address="127.0.0.1:7299", namespace="hall-test"), env)
    assert (explicit.address, explicit.namespace, explicit.api_key) == ("127.0.0.1:7299", "hall-test", "k")
    assert temporal_connection(Settings(), plain_env()).address == "127.0.0.1:7233"  # the default, plaintext
    assert not temporal_connection(Settings(), {**env, "TEMPORAL_TLS": "false"}).uses_tls


async def test_worker_log_names_the_tls_problem(mtls_proxy, certs, monkeypatch):
    """The reason worker.py logs per attempt (unreachable_reason) for a refused handshake."""
    for name in [n for n in os.environ if n.startswith("TEMPORAL_")] + ["HALLFLOW_TEMPORAL_ADDRESS"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("TEMPORAL_ADDRESS", mtls_proxy.address)
    monkeypatch.setenv("TEMPORAL_TLS_SERVER_CA_CERT_PATH", str(certs.other_ca))
    with pytest.raises(TemporalUnreachable) as unknown_ca:
        await connect(Settings())
    reason = unreachable_reason(str(unknown_ca.value))
    assert reason.startswith("TLS: the server's certificate is not signed by a trusted CA")

    monkeypatch.setenv("TEMPORAL_TLS_SERVER_CA_CERT_PATH", str(certs.ca))
    with pytest.raises(TemporalUnreachable) as no_cert:
        await connect(Settings())
    assert "client certificate" in unreachable_reason(str(no_cert.value))
