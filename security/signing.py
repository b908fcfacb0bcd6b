"""Sign and verify actor assertions (contract/assertion.py), and carry them in the header.

`verify` checks the signature only; expiry, workflow id, message and payload digest are the
worker interceptor's to check. It is pure (no clock, no I/O, no module state), so a workflow may
call it inside the sandbox when this module is imported under
`workflow.unsafe.imports_passed_through()`.
"""

import base64
import binascii
from datetime import datetime, timedelta, timezone

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from contract.assertion import MAX_LIFETIME, ActorAssertion, format_instant, payload_digest, signed_text
from security import sm2
from security.keys import PrivateKey, PublicKey


def sign(
    key: PrivateKey,
    *,
    actor: str,
    workflow_id: str,
    message: str,
    payload: bytes,
    now: datetime | None = None,
    lifetime: timedelta = MAX_LIFETIME,
) -> ActorAssertion:
    """An assertion that `actor` sends `message` with this payload to `workflow_id`, valid from
    `now` (whole seconds) for `lifetime` (at most MAX_LIFETIME)."""
    if not timedelta(seconds=1) <= lifetime <= MAX_LIFETIME:
        raise ValueError(f"lifetime must be between 1 second and {MAX_LIFETIME}")
    now = now or datetime.now(timezone.utc)
    fields = {
        "actor": actor,
        "workflow_id": workflow_id,
        "message": message,
        "payload_sha256": payload_digest(payload),
        "issued_at": format_instant(now),
        "expires_at": format_instant(now.replace(microsecond=0) + lifetime),
        "key_id": key.id,
        "alg": key.alg,
    }
    draft = ActorAssertion.model_construct(**fields, signature="")  # validated below, signed here
    text = signed_text(draft)
    if key.alg == "ed25519":
        seed = base64.b64decode(key.private, validate=True)
        raw = Ed25519PrivateKey.from_private_bytes(seed).sign(text)
    else:
        raw = sm2.sign(key.private, text)
    return ActorAssertion.model_validate({**fields, "signature": base64.b64encode(raw).decode()})


def verify(assertion: ActorAssertion, key: PublicKey) -> bool:
    """Whether `key` (the one the assertion names: same id, same algorithm) signed the assertion.
    False, never an exception, for a bad signature or a malformed key."""
    if assertion.alg != key.alg or assertion.key_id != key.id:
        return False
    try:
        text = signed_text(assertion)
        signature = base64.b64decode(assertion.signature, validate=True)
        if key.alg == "ed25519":
            public = Ed25519PublicKey.from_public_bytes(base64.b64decode(key.public, validate=True))
            public.verify(signature, text)
            return True
        if key.alg == "sm2":
            return sm2.verify(key.public, text, signature)
    except (InvalidSignature, binascii.Error, ValueError, TypeError):
        return False
    return False


def _raise_a_refusal_once() -> None:
    """cryptography's Rust core looks up InvalidSignature the first time it raises it. Inside the
    workflow sandbox that lookup fails and aborts the worker process (a panic at the FFI boundary):
    one forged signature would stop every worker it reached. Raised once here, when this module is
    imported outside the sandbox, the lookup is done and kept. A fixed key: no randomness."""
    public = Ed25519PrivateKey.from_private_bytes(bytes(range(32))).public_key()
    try:
        public.verify(bytes(64), b"hallflow")
    except InvalidSignature:
        return


_raise_a_refusal_once()


def header_value(a: ActorAssertion) -> str:
    """The assertion as compact JSON: the value after `hallflow-actor=` in the temporal CLI's
    --headers, and the data of the header's json/plain payload."""
    return a.model_dump_json()


def from_header_json(text: str | bytes) -> ActorAssertion:
    """The assertion in a header value; raises pydantic.ValidationError when it is not one.
    Parse, never compare bytes: the temporal CLI re-encodes the JSON (its keys sorted)."""
    return ActorAssertion.model_validate_json(text)
