"""Keys for the test session: made once per run, written under a temporary folder, and named in
the HALLFLOW_* settings before anything reads them, so that every worker (in-process or
worker.py), every client and starter.py sign and verify as in production: data/org.toml with
these public keys, assertions required."""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

from security.keys import add_public_key, new_key, save_private

KEY_DIR = Path(tempfile.mkdtemp(prefix="hallflow-test-keys-"))
atexit.register(shutil.rmtree, KEY_DIR, True)
PUBLIC_KEYS = KEY_DIR / "public.toml"
CLI_KEY, WORKER_KEY = KEY_DIR / "hallflow-cli.key", KEY_DIR / "hallflow.key"

for principal, path in (("hallflow-cli", CLI_KEY), ("hallflow", WORKER_KEY)):
    private, public = new_key(principal)
    save_private(private, path)
    add_public_key(PUBLIC_KEYS, public)

os.environ["HALLFLOW_KEYS_FILE"] = str(PUBLIC_KEYS)
os.environ["HALLFLOW_SIGNING_KEY"] = str(CLI_KEY)
os.environ["HALLFLOW_WORKER_KEY"] = str(WORKER_KEY)

# Data keys: a fixed test key kept in the repository (tests/keys), so that the recorded replay
# histories, encrypted with it, stay readable. Never a deployment's key.
TEST_DATA_KEYS = Path(__file__).resolve().parent / "keys" / "data-test.toml"
os.environ["HALLFLOW_DATA_KEYS_FILE"] = str(TEST_DATA_KEYS)
os.environ.pop("HALLFLOW_DATA_KEYS", None)
os.environ.pop("HALLFLOW_CIPHER", None)

# Every test client, worker and replayer encrypts and decrypts as production does.
from contract.converter import data_converter as _plain  # noqa: E402
from security.codec import encrypted  # noqa: E402
from security.data_keys import parse  # noqa: E402

data_converter = encrypted(_plain, parse(TEST_DATA_KEYS.read_text(encoding="utf-8"), str(TEST_DATA_KEYS)))
