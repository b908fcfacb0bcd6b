"""The actor assertion: who sends a state-changing message (a workflow start, an Update, a signal),
signed by a key the organisation directory knows, carried in the Temporal header `hallflow-actor`.

It binds the actor to one message: the workflow id, the message name and the SHA-256 of the
argument's payload bytes exactly as sent, for at most five minutes. The signed text is lines of
plain text, not JSON, so any language can build it without a canonical JSON encoder; that is why
no field may hold a line break (or any control character): each field is one line of it.

Pure pydantic and hashlib, no crypto library: the worker's interceptor and workflows read this
inside the sandbox. Signing and checking signatures live in security/signing.py.
"""

import hashlib
import re
from datetime import datetime, timedelta, timezone
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints, field_validator

HEADER = "hallflow-actor"
MAX_LIFETIME = timedelta(minutes=5)
CLOCK_SKEW = timedelta(minutes=1)
SIGNED_TEXT_PREFIX = "hallflow-actor/v1\n"

_INSTANT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")


def _one_line(text: str) -> str:
    # A line break would let two different assertions share one signed text; a lone surrogate
    # (possible from JSON's \ud800) has no UTF-8 form to sign.
    if any(c < " " or c == "\x7f" or "\ud800" <= c <= "\udfff" for c in text):
        raise ValueError("must not contain control characters, line breaks or lone surrogates")
    return text


# One line of the signed text: a name, an id or a workflow id (Temporal allows 1000 characters).
OneLine = Annotated[str, StringConstraints(min_length=1, max_length=1000), AfterValidator(_one_line)]
# A key id or a principal (as contract/org.py's PublicKey allows).
ShortLine = Annotated[OneLine, StringConstraints(max_length=200)]


def parse_instant(text: str) -> datetime:
    """`2026-11-30T12:00:00Z` as an aware UTC datetime; anything else raises ValueError."""
    if not isinstance(text, str) or not _INSTANT.fullmatch(text):
        raise ValueError(f"not an RFC 3339 UTC instant like 2026-11-30T12:00:00Z: {text!r}")
    # By hand rather than strptime: no locale, nothing the workflow sandbox would have to import.
    y, mo, d, h, mi, s = (int(text[i:j]) for i, j in ((0, 4), (5, 7), (8, 10), (11, 13), (14, 16), (17, 19)))
    return datetime(y, mo, d, h, mi, s, tzinfo=timezone.utc)  # raises ValueError on 2026-02-30


def format_instant(at: datetime) -> str:
    """The inverse of parse_instant, for an aware datetime (fractions of a second dropped)."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("an instant must be timezone-aware")
    u = at.astimezone(timezone.utc)
    return f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}Z"


def _instant(text: str) -> str:
    parse_instant(text)
    return text


Instant = Annotated[str, AfterValidator(_instant)]


class ActorAssertion(BaseModel):
    """The value of the `hallflow-actor` header (as JSON)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    v: Literal[1] = 1
    actor: OneLine
    workflow_id: OneLine
    # The Update name, the signal name exactly as sent (`review_signal`), or for a workflow start
    # the workflow type (`CaseWorkflow`).
    message: OneLine
    # Lowercase hex SHA-256 of the argument's payload data as sent: for the temporal CLI the
    # --input string's UTF-8 bytes verbatim; b"" for a message without an argument.
    payload_sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    issued_at: Instant
    expires_at: Instant
    key_id: ShortLine
    alg: Literal["ed25519", "sm2"]
    # Standard base64 with padding: Ed25519's 64 bytes; SM2's DER SEQUENCE {r, s} (GM/T 0009).
    signature: Annotated[
        str,
        StringConstraints(
            min_length=4, max_length=400, pattern=r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
        ),
    ]

    @field_validator("v", mode="before")
    @classmethod
    def _version_is_the_integer_1(cls, value: object) -> object:
        # Literal[1] alone takes true and 1.0 (they equal 1); strict means the integer itself.
        if type(value) is not int:
            raise ValueError("v must be the integer 1")
        return value


def signed_text(a: ActorAssertion) -> bytes:
    """What the signature covers: a version line, then one field per line, in this order."""
    fields = (a.actor, a.workflow_id, a.message, a.payload_sha256, a.issued_at, a.expires_at, a.key_id, a.alg)
    return (SIGNED_TEXT_PREFIX + "\n".join(fields)).encode("utf-8")


def payload_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
