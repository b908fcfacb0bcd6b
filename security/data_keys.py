"""Data keys: what encrypts payloads in Temporal (security/codec.py) and personal data at rest
(security/sealing.py). Never in the repository: a file under var/keys (HALLFLOW_DATA_KEYS_FILE)
or the same TOML in HALLFLOW_DATA_KEYS (a deployment's secret store).

    current = "k-2026-11-30"          # encrypts everything new; every listed key still decrypts
    lookup = "<base64, 32 bytes>"      # HMAC key of ID-number lookups: stable, not rotated
    [keys.k-2026-11-30]
    cipher = "aes-256-gcm"             # or "sm4-gcm" (GB/T 32907) where 国密 is required
    secret = "<base64: 32 bytes for AES-256, 16 for SM4>"

Rotation (docs/security.md): add a key, make it current, keep the old ones as long as any
history, backup or row may still hold something they encrypted.
"""

import base64
import binascii
import os
import tempfile
import tomllib
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Cipher = Literal["aes-256-gcm", "sm4-gcm"]
SECRET_BYTES = {"aes-256-gcm": 32, "sm4-gcm": 16}


class DataKeyError(ValueError):
    """Keys that cannot be used; the message names the source, the entry and the field."""


def _bytes(text: str, size: int, what: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what}: not base64") from None
    if len(raw) != size:
        raise ValueError(f"{what}: {len(raw)} bytes, expected {size}")
    return raw


class DataKey(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    cipher: Cipher
    secret: str = Field(repr=False)

    @model_validator(mode="after")
    def _sized(self) -> "DataKey":
        _bytes(self.secret, SECRET_BYTES[self.cipher], "secret")
        return self

    @property
    def raw(self) -> bytes:
        return base64.b64decode(self.secret)


class DataKeys(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    current: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    lookup: str = Field(repr=False)
    keys: dict[str, DataKey]

    @field_validator("lookup")
    @classmethod
    def _lookup(cls, value: str) -> str:
        _bytes(value, 32, "lookup")
        return value

    @model_validator(mode="after")
    def _current_listed(self) -> "DataKeys":
        if self.current not in self.keys:
            raise ValueError(f"current: {self.current!r} is not under [keys] (listed: {', '.join(sorted(self.keys))})")
        return self

    @property
    def lookup_raw(self) -> bytes:
        return base64.b64decode(self.lookup)

    def require_cipher(self, cipher: str, source: str) -> "DataKeys":
        have = self.keys[self.current].cipher
        if have != cipher:
            raise DataKeyError(
                f"{source}: current key {self.current!r} is {have}, but HALLFLOW_CIPHER is {cipher}; "
                f"add a {cipher} key and make it current: starter.py admin data-key new --cipher {cipher}"
            )
        return self


def parse(text: str, source: str) -> DataKeys:
    try:
        return DataKeys.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as err:
        raise DataKeyError(f"{source}: not TOML: {err}") from None
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in err.errors(include_url=False))
        raise DataKeyError(f"{source}: {problems}") from None


def load(settings) -> DataKeys:
    """The deployment's data keys: HALLFLOW_DATA_KEYS when set, else HALLFLOW_DATA_KEYS_FILE."""
    if settings.data_keys is not None:
        keys = parse(settings.data_keys.get_secret_value(), "HALLFLOW_DATA_KEYS")
        source = "HALLFLOW_DATA_KEYS"
    else:
        path = Path(settings.data_keys_file)
        if not path.exists():
            raise DataKeyError(
                f"{path}: no data keys (payload and personal-data encryption); `make keys` writes development "
                "ones, `starter.py admin data-key new` a deployment's; or set HALLFLOW_DATA_KEYS"
            )
        keys = parse(path.read_text(encoding="utf-8"), str(path))
        source = str(path)
    return keys.require_cipher(settings.cipher, source)


def render(keys: DataKeys) -> str:
    lines = [
        "# hallflow data keys (docs/security.md): never commit this file.",
        f'current = "{keys.current}"',
        f'lookup = "{keys.lookup}"',
    ]
    for key_id, key in keys.keys.items():
        lines += ["", f'[keys."{key_id}"]', f'cipher = "{key.cipher}"', f'secret = "{key.secret}"']
    return "\n".join(lines) + "\n"


def new_key(cipher: str) -> DataKey:
    return DataKey(cipher=cipher, secret=base64.b64encode(os.urandom(SECRET_BYTES[cipher])).decode())


def add_key(path: Path, cipher: str, key_id: str | None = None, make_current: bool = True) -> tuple[str, DataKeys]:
    """Add a new key to the file (creating it, with a lookup key, if absent); return its id."""
    existing = parse(path.read_text(encoding="utf-8"), str(path)) if path.exists() else None
    key_id = key_id or f"k-{datetime.now(timezone.utc):%Y-%m-%d}"
    if existing and key_id in existing.keys:
        n = 2
        while f"{key_id}.{n}" in existing.keys:
            n += 1
        key_id = f"{key_id}.{n}"
    keys = DataKeys(
        current=key_id if (make_current or existing is None) else existing.current,
        lookup=existing.lookup if existing else base64.b64encode(os.urandom(32)).decode(),
        keys={**(existing.keys if existing else {}), key_id: new_key(cipher)},
    )
    write(path, keys)
    return key_id, keys


def use_key(path: Path, key_id: str) -> DataKeys:
    keys = parse(path.read_text(encoding="utf-8"), str(path))
    if key_id not in keys.keys:
        raise DataKeyError(f"{path}: no key {key_id!r} (listed: {', '.join(sorted(keys.keys))})")
    keys = keys.model_copy(update={"current": key_id})
    write(path, keys)
    return keys


def write(path: Path, keys: DataKeys) -> None:
    """Atomically, mode 0600: a reader never sees half a file, and nobody else reads it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(render(keys))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
