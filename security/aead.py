"""Authenticated encryption with a data key: AES-256-GCM or SM4-GCM, one layout for both.

A sealed blob is nonce (12 bytes) || ciphertext || tag (16 bytes). `aad` binds the blob to where
it belongs (the key id, and for a column its table and row), so a blob moved elsewhere fails."""

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from security.data_keys import DataKey

NONCE = 12
TAG = 16


class Undecryptable(ValueError):
    """A blob that this key does not open: wrong key, or changed since it was sealed."""


def seal(key: DataKey, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE)
    if key.cipher == "aes-256-gcm":
        return nonce + AESGCM(key.raw).encrypt(nonce, plaintext, aad)
    encryptor = Cipher(algorithms.SM4(key.raw), modes.GCM(nonce)).encryptor()
    encryptor.authenticate_additional_data(aad)
    body = encryptor.update(plaintext) + encryptor.finalize()
    return nonce + body + encryptor.tag


def open_sealed(key: DataKey, blob: bytes, aad: bytes) -> bytes:
    if len(blob) < NONCE + TAG:
        raise Undecryptable("too short to be sealed")
    nonce, body = blob[:NONCE], blob[NONCE:]
    try:
        if key.cipher == "aes-256-gcm":
            return AESGCM(key.raw).decrypt(nonce, body, aad)
        decryptor = Cipher(algorithms.SM4(key.raw), modes.GCM(nonce, body[-TAG:])).decryptor()
        decryptor.authenticate_additional_data(aad)
        return decryptor.update(body[:-TAG]) + decryptor.finalize()
    except InvalidTag:
        raise Undecryptable("authentication failed: wrong key, or the data was changed") from None
