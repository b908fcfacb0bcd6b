"""docs/examples/node/codec.mjs and security/codec.py encrypt the same way: what one seals, the
other opens, and a changed byte is refused. Node.js runs the example as an integrator would
(`node codec.mjs encode|decode`, Payloads as protobuf JSON on stdin), with node:crypto only."""

import json
import os
import shutil
import subprocess
import urllib.request

from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from security.codec import CIPHER, ENCRYPTED, KEY_ID, UNDECRYPTABLE, DataCodec
from security.data_keys import add_key, parse
from settings import ROOT
from tests.org_fixtures import TEST_DATA_KEYS

NODE_CODEC = ROOT / "docs" / "examples" / "node" / "codec.mjs"
KEYS = parse(TEST_DATA_KEYS.read_text(encoding="utf-8"), str(TEST_DATA_KEYS))

# What hallflow's converter sends (json/plain, with personal data), an empty one (binary/null)
# and one with metadata besides its encoding: each must come back byte for byte.
SAMPLES = [
    Payload(metadata={"encoding": b"json/plain"}, data=json.dumps({"case_no": "N-1", "name": "李四"}, ensure_ascii=False).encode()),
    Payload(metadata={"encoding": b"binary/null"}),
    Payload(metadata={"encoding": b"json/protobuf", "messageType": b"temporal.api.common.v1.WorkflowExecution"}, data=b'{"workflowId":"w"}'),
]


def node() -> str:
    path = shutil.which("node")
    assert path, "node (Node.js 20) must be installed: the Node.js example is tested, not skipped"
    return path


def run_node(action: str, payloads: list[Payload], *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [node(), str(NODE_CODEC), action, *args],
        input=json_format.MessageToJson(Payloads(payloads=payloads)), env=env,
        capture_output=True, text=True, timeout=30, cwd=ROOT,
    )


def answer(ran: subprocess.CompletedProcess) -> list[Payload]:
    assert ran.returncode == 0, ran.stderr
    return list(json_format.Parse(ran.stdout, Payloads()).payloads)


def node_has(cipher: str) -> bool:
    ran = subprocess.run([node(), "-p", f"require('node:crypto').getCiphers().includes('{cipher}')"],
                         capture_output=True, text=True, timeout=30)
    return ran.stdout.strip() == "true"


def test_node_encrypts_what_python_decodes():
    sealed = answer(run_node("encode", SAMPLES, "--keys", str(TEST_DATA_KEYS)))
    for payload in sealed:
        assert payload.metadata["encoding"] == ENCRYPTED
        assert payload.metadata[KEY_ID] == b"test-1" and payload.metadata[CIPHER] == b"aes-256-gcm"
        assert "李四".encode() not in payload.data and b"N-1" not in payload.data
    assert len({p.data[:12] for p in sealed}) == len(sealed)  # a fresh nonce each time
    assert [DataCodec(KEYS).decrypt(p) for p in sealed] == SAMPLES


def test_python_encrypts_what_node_decodes():
    sealed = [DataCodec(KEYS).encrypt(p) for p in SAMPLES]
    # A payload sent without the codec is read as sent, as the worker reads it.
    assert answer(run_node("decode", [*sealed, SAMPLES[0]], "--keys", str(TEST_DATA_KEYS))) == [*SAMPLES, SAMPLES[0]]


def test_node_reads_the_keys_as_hallflow_finds_them():
    sealed = [DataCodec(KEYS).encrypt(SAMPLES[0])]
    # No --keys: HALLFLOW_DATA_KEYS_FILE (the test session sets it), then the TOML itself in HALLFLOW_DATA_KEYS.
    assert answer(run_node("decode", sealed, env={**os.environ})) == [SAMPLES[0]]
    inline = {**os.environ, "HALLFLOW_DATA_KEYS": TEST_DATA_KEYS.read_text(encoding="utf-8"), "HALLFLOW_DATA_KEYS_FILE": "/nonexistent"}
    assert answer(run_node("decode", sealed, env=inline)) == [SAMPLES[0]]


def test_node_refuses_a_changed_payload():
    sealed = DataCodec(KEYS).encrypt(SAMPLES[0])
    data = bytearray(sealed.data)
    for at in (0, 12, len(data) // 2, len(data) - 1):  # nonce, ciphertext, tag
        changed = Payload(metadata=sealed.metadata, data=bytes(data[:at]) + bytes([data[at] ^ 1]) + bytes(data[at + 1:]))
        refused = run_node("decode", [changed], "--keys", str(TEST_DATA_KEYS))
        assert refused.returncode == 2 and refused.stdout == ""
        assert "payload under key \"test-1\" does not decrypt: wrong key, or the data was changed" in refused.stderr
    unknown = Payload(metadata={**sealed.metadata, KEY_ID: b"k-elsewhere"}, data=sealed.data)
    refused = run_node("decode", [unknown], "--keys", str(TEST_DATA_KEYS))
    assert refused.returncode == 2 and 'key "k-elsewhere", which this process does not hold' in refused.stderr
    # Python refuses the same changes: the worker marks such a payload undecryptable.
    changed = Payload(metadata=sealed.metadata, data=sealed.data[:-1] + bytes([sealed.data[-1] ^ 1]))
    assert DataCodec(KEYS).decrypt(changed).metadata["encoding"] == UNDECRYPTABLE


def test_node_decodes_under_a_rotated_key_and_encodes_under_the_current_one(tmp_path):
    keys_file = tmp_path / "data.toml"
    old_id, _ = add_key(keys_file, "aes-256-gcm", key_id="k-old")
    new_id, keys = add_key(keys_file, "aes-256-gcm", key_id="k-new")  # written by data_keys.render
    old = DataCodec(keys.model_copy(update={"current": old_id})).encrypt(SAMPLES[0])
    assert answer(run_node("decode", [old], "--keys", str(keys_file))) == [SAMPLES[0]]
    [sealed] = answer(run_node("encode", [SAMPLES[0]], "--keys", str(keys_file)))
    assert sealed.metadata[KEY_ID] == new_id.encode() and DataCodec(keys).decrypt(sealed) == SAMPLES[0]


def test_sm4_gcm_both_ways_where_node_offers_it_else_a_plain_refusal(tmp_path):
    keys_file = tmp_path / "data.toml"
    _, keys = add_key(keys_file, "sm4-gcm", key_id="k-sm4")
    sealed = DataCodec(keys).encrypt(SAMPLES[0])
    assert sealed.metadata[CIPHER] == b"sm4-gcm"
    decoded = run_node("decode", [sealed], "--keys", str(keys_file))
    encoded = run_node("encode", [SAMPLES[0]], "--keys", str(keys_file))
    if node_has("sm4-gcm"):
        assert answer(decoded) == [SAMPLES[0]]
        assert DataCodec(keys).decrypt(answer(encoded)[0]) == SAMPLES[0]
    else:  # Node.js 20's bundled OpenSSL 3.0 (docs/examples/node/README.md)
        for ran in (decoded, encoded):
            assert ran.returncode == 2 and "sm4-gcm: this Node.js's OpenSSL" in ran.stderr and "does not offer it" in ran.stderr


def test_the_codec_server_opens_what_node_sealed(codec_server):
    sealed = answer(run_node("encode", SAMPLES, "--keys", str(TEST_DATA_KEYS)))
    request = urllib.request.Request(
        f"{codec_server.url}/decode", data=json_format.MessageToJson(Payloads(payloads=sealed)).encode(),
        headers={"Authorization": codec_server.auth, "Content-Type": "application/json"}, method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert list(json_format.Parse(response.read(), Payloads()).payloads) == SAMPLES
