"""Personal data at rest: a column value sealed with the current data key, and the keyed hash
that finds an ID number without storing it.

A sealed value is text, `<key id>:<base64 of aead.seal(...)>`: it names its key, so a rotated
key still opens old rows (security/data_keys.py keeps every key listed). The AAD binds the value
to its table, column and row: copied to another row or column, it no longer opens.

The lookup is HMAC-SHA256 under the data keys' `lookup` key, which is never rotated, so a hash
written years ago still matches today's (个人信息保护法 §51: de-identified, yet findable).
"""

import base64
import binascii
import hashlib
import hmac
import math
import unicodedata

from security.aead import NONCE, TAG, Undecryptable, open_sealed, seal
from security.data_keys import DataKeys

KEY_ID_MAX = 64  # DataKeys.current's limit: only the current key ever seals
LOOKUP_HEX = 64  # an HMAC-SHA256 in hex
_LOOKUP_DOMAIN = b"hallflow id_number v1\x00"  # the same key could one day hash another kind of value


def sealed_length(max_chars: int) -> int:
    """The longest sealed text for a value of up to `max_chars` characters (4 UTF-8 bytes each)."""
    return KEY_ID_MAX + 1 + 4 * math.ceil((4 * max_chars + NONCE + TAG) / 3)


def normalise_id_number(value: str) -> str:
    """One spelling per ID number: full-width digits (NFKC), spaces and dashes typed at a
    window, and the check character's `x` (ID card) or a credit code's letters in lower case
    all name the same person or enterprise."""
    folded = unicodedata.normalize("NFKC", value)
    return "".join(c for c in folded if not c.isspace() and c != "-").upper()


class Sealer:
    """Seals and opens column values with a deployment's data keys."""

    def __init__(self, keys: DataKeys) -> None:
        self.keys = keys

    def seal(self, value: str, table: str, column: str, row: str) -> str:
        key_id = self.keys.current
        blob = seal(self.keys.keys[key_id], value.encode("utf-8"), _aad(key_id, table, column, row))
        return f"{key_id}:{base64.b64encode(blob).decode('ascii')}"

    def open(self, sealed: str, table: str, column: str, row: str) -> str:
        """The value; Undecryptable (naming the key id, never the value) when it cannot be opened."""
        key_id, _, body = sealed.partition(":")
        key = self.keys.keys.get(key_id)
        if key is None:
            raise Undecryptable(f"{table}.{column} of {row} is sealed with key {key_id!r}, which is not held here")
        try:
            blob = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise Undecryptable(f"{table}.{column} of {row} is not a sealed value") from None
        try:
            return open_sealed(key, blob, _aad(key_id, table, column, row)).decode("utf-8")
        except Undecryptable as err:
            raise Undecryptable(f"{table}.{column} of {row} under key {key_id!r}: {err}") from None

    def lookup(self, id_number: str) -> str:
        """The keyed hash an ID number is found by (hex)."""
        message = _LOOKUP_DOMAIN + normalise_id_number(id_number).encode("utf-8")
        return hmac.new(self.keys.lookup_raw, message, hashlib.sha256).hexdigest()


def _aad(key_id: str, table: str, column: str, row: str) -> bytes:
    return "\x1f".join(("hallflow-sealed-v1", key_id, table, column, row)).encode("utf-8")
