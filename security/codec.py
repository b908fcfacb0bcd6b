"""The payload codec: every payload hallflow puts into Temporal is encrypted with the current
data key (security/data_keys.py) and names that key, so a rotated key still decodes old ones.

An encrypted payload: encoding `binary/encrypted`, metadata `encryption-key-id` and
`encryption-cipher`, data = aead.seal(serialized Payload, aad = key id). The same layout in
every language (docs/integration.md has the Node.js codec). Search attributes and headers are
not payloads the codec sees; they hold no personal data (contract/search.py)."""

import dataclasses
from typing import Sequence

from temporalio.api.common.v1 import Payload
from temporalio.converter import DataConverter, PayloadCodec

from security.aead import Undecryptable, open_sealed, seal
from security.data_keys import DataKeys

ENCRYPTED = b"binary/encrypted"
# What a worker hands its converter for a payload it cannot open, so that the message is
# refused (InvalidPayload, with this reason) instead of failing the workflow task for ever.
UNDECRYPTABLE = b"binary/undecryptable"
KEY_ID = "encryption-key-id"
CIPHER = "encryption-cipher"


class DataCodec(PayloadCodec):
    def __init__(self, keys: DataKeys, *, keep_unreadable: bool = False) -> None:
        """keep_unreadable: hand back a payload this process cannot open as it came (the codec
        server: the UI then shows it still encrypted) instead of marking it undecryptable."""
        self.keys = keys
        self.keep_unreadable = keep_unreadable

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        key_id = self.keys.current
        key = self.keys.keys[key_id]
        return Payload(
            metadata={"encoding": ENCRYPTED, KEY_ID: key_id.encode(), CIPHER: key.cipher.encode()},
            data=seal(key, payload.SerializeToString(), key_id.encode()),
        )

    def decrypt(self, payload: Payload) -> Payload:
        # The temporal CLI (1.9.1) encrypts the one header execute-update-with-start shares between
        # its start and its Update twice: open layer by layer, a few at most.
        for layer in range(3):
            if payload.metadata.get("encoding") != ENCRYPTED:
                return payload  # plaintext from an integrator without the codec: read as sent
            opened = self._decrypt_once(payload)
            if opened.metadata.get("encoding") == UNDECRYPTABLE or opened is payload:
                # An inner layer that does not open is what the sender sent: refused as such.
                return opened if layer == 0 else payload
            payload = opened
        return self._unreadable(payload, "payload is encrypted more than 3 times")

    def _decrypt_once(self, payload: Payload) -> Payload:
        key_id = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
        key = self.keys.keys.get(key_id)
        if key is None:
            return self._unreadable(payload, f"payload is encrypted with key {key_id!r}, which this process does not hold")
        try:
            inner = open_sealed(key, payload.data, key_id.encode())
            return Payload.FromString(inner)
        except (Undecryptable, ValueError) as err:
            return self._unreadable(payload, f"payload under key {key_id!r} does not decrypt: {err}")

    def _unreadable(self, payload: Payload, reason: str) -> Payload:
        if self.keep_unreadable:
            return payload
        return Payload(metadata={"encoding": UNDECRYPTABLE}, data=reason.encode())


def encrypted(converter: DataConverter, keys: DataKeys) -> DataConverter:
    """`converter` with every payload encrypted under `keys`."""
    return dataclasses.replace(converter, payload_codec=DataCodec(keys))
