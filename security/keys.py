"""Signing keys and the files that hold them.

A private key file is a small TOML file, mode 0600, one key (`id`, `principal`, `alg`, `private`).
The public keys file (HALLFLOW_KEYS_FILE) is TOML with one `[[key]]` table per key, read by the
worker with the organisation directory; `add_public_key` appends to it and keeps what is there.

Encodings: Ed25519 private = base64 of the 32-byte seed, public = base64 of the 32 raw bytes;
SM2 as gmssl writes them, hex: private 64 digits, public 128 digits (uncompressed x||y, no 04).
"""

import base64
import binascii
import json
import os
import tempfile
import tomllib
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from contract.assertion import ShortLine
from contract.org import PublicKey as DirectoryKey
from security import sm2

Alg = Literal["ed25519", "sm2"]


class KeyFileError(ValueError):
    """A key file that cannot be read or is invalid; the message names the file, entry and field."""


def _raw32(text: str) -> bytes | None:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 32 else None


class PrivateKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: ShortLine  # e.g. hallflow-cli/2026-11-30; a line of the signed text
    principal: ShortLine  # a system id (hallflow-cli) or an officer id (officer-li)
    alg: Alg
    private: str = Field(repr=False)  # never in a log line or a traceback

    @model_validator(mode="after")
    def _well_formed(self) -> "PrivateKey":
        ok = _raw32(self.private) is not None if self.alg == "ed25519" else sm2.valid_private(self.private)
        if not ok:
            raise ValueError(f"private: not an {self.alg} private key ({_ENCODING[self.alg][0]})")
        return self


class PublicKey(DirectoryKey):
    """The directory's key (contract/org.py), its material checked where the crypto lives."""

    @model_validator(mode="after")
    def _well_formed(self) -> "PublicKey":
        ok = _raw32(self.public) is not None if self.alg == "ed25519" else sm2.on_curve(self.public)
        if not ok:
            raise ValueError(f"public: not an {self.alg} public key ({_ENCODING[self.alg][1]})")
        return self


_ENCODING = {
    "ed25519": ("base64 of the 32-byte seed", "base64 of the 32 raw bytes"),
    "sm2": ("64 hex digits, 1 <= d <= n-2", "128 hex digits x||y of a point on the SM2 curve"),
}


def new_key(principal: str, alg: str = "ed25519", key_id: str | None = None) -> tuple[PrivateKey, PublicKey]:
    """A new key pair; its id defaults to `<principal>/<UTC date>` (see unused_key_id)."""
    key_id = key_id or f"{principal}/{datetime.now(timezone.utc):%Y-%m-%d}"
    if alg == "ed25519":
        seed = Ed25519PrivateKey.generate()
        private = base64.b64encode(seed.private_bytes_raw()).decode()
        public = base64.b64encode(seed.public_key().public_bytes_raw()).decode()
    elif alg == "sm2":
        private, public = sm2.generate()
    else:
        raise ValueError(f"unknown algorithm {alg!r} (ed25519 or sm2)")
    fields = {"id": key_id, "principal": principal, "alg": alg}
    return PrivateKey(**fields, private=private), PublicKey(**fields, public=public)


def unused_key_id(principal: str, taken: set[str], today: datetime | None = None) -> str:
    """`<principal>/<UTC date>`, or with `.2`, `.3`… when that id is taken (a second key the same day)."""
    base = f"{principal}/{(today or datetime.now(timezone.utc)).astimezone(timezone.utc):%Y-%m-%d}"
    n = 1
    while (candidate := base if n == 1 else f"{base}.{n}") in taken:
        n += 1
    return candidate


# ---- files -----------------------------------------------------------------------------------


def _toml_str(text: str) -> str:
    # A JSON string is a TOML basic string, but for DEL, which TOML wants escaped.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_table(key: BaseModel) -> str:
    lines = []
    for name, value in key.model_dump(exclude_none=True).items():
        text = value.isoformat() if isinstance(value, datetime) else _toml_str(value)
        lines.append(f"{name} = {text}\n")
    return "".join(lines)


def _read_toml(path: Path) -> dict:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except (OSError, UnicodeDecodeError) as e:
        raise KeyFileError(f"{path}: cannot read: {e}") from e
    except tomllib.TOMLDecodeError as e:
        raise KeyFileError(f"{path}: not valid TOML: {e}") from e


def _problems(path: Path, entry: str, err: ValidationError) -> str:
    """`keys.toml: [[key]] 2 (id 'x'), field public: …`, one part per error."""
    parts = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if not field and ": " in msg:  # a model check names its field at the start of its message
            field, msg = msg.split(": ", 1)
        parts.append(f"{path}: {entry}, field {field or '?'}: {msg}")
    return "; ".join(parts)


def load_private(path: Path) -> PrivateKey:
    data = _read_toml(Path(path))
    try:
        return PrivateKey.model_validate(data)
    except ValidationError as e:
        raise KeyFileError(_problems(Path(path), "private key", e)) from None


def save_private(key: PrivateKey, path: Path, *, overwrite: bool = False) -> None:
    """Write the key to a new file readable by its owner only (0600); an existing file is kept
    unless `overwrite`. Written aside and moved into place, so no reader sees half a key."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (
        "# hallflow private signing key: keep it secret. Its public half is in the public keys file.\n"
        + _toml_table(key)
    )
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".key-")  # created 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if the file exists: atomic, unlike a check then a write
    except FileExistsError:
        raise FileExistsError(f"{path} exists; not overwriting a private key") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_public_keys(path: Path) -> list[PublicKey]:
    """Every `[[key]]` of the file, validated; any problem raises KeyFileError naming the file,
    the entry (its number from 1, and its id when it has one) and the field."""
    path = Path(path)
    data = _read_toml(path)
    problems = [f"{path}: unknown top-level key {k!r} (only [[key]] tables)" for k in data if k != "key"]
    entries = data.get("key", [])
    if not isinstance(entries, list):
        raise KeyFileError(f"{path}: key must be [[key]] tables")
    keys, first_seen = [], {}
    for n, raw in enumerate(entries, start=1):
        name = raw.get("id") if isinstance(raw, dict) else None
        entry = f"[[key]] {n}" + (f" (id {name!r})" if isinstance(name, str) else "")
        try:
            key = PublicKey.model_validate(raw)
        except ValidationError as e:
            problems.append(_problems(path, entry, e))
            continue
        if key.id in first_seen:
            problems.append(f"{path}: {entry}, field id: duplicate of [[key]] {first_seen[key.id]}")
        first_seen.setdefault(key.id, n)
        keys.append(key)
    if problems:
        raise KeyFileError("; ".join(problems))
    return keys


def add_public_key(path: Path, key: PublicKey) -> None:
    """Append `key` as a `[[key]]` table, creating the file; its id must be new to the file."""
    path = Path(path)
    existing = load_public_keys(path) if path.exists() else []
    if any(k.id == key.id for k in existing):
        raise KeyFileError(f"{path}: a key with id {key.id!r} is already there")
    path.parent.mkdir(parents=True, exist_ok=True)
    head = ""
    if path.exists() and path.stat().st_size:
        head = "" if path.read_bytes().endswith(b"\n") else "\n"
        head += "\n"
    with path.open("a", encoding="utf-8") as f:
        f.write(head + "[[key]]\n" + _toml_table(key))
