"""Proof of who sent a message: the signed actor assertion in its `hallflow-actor` header.

Checked before any validator, from the message and the directory copy the workflow holds, with
the workflow's clock: a decision that replays the same. The assertion must be for this workflow,
this message and these payload bytes, unexpired, signed by a key the directory knows and still
trusts, whose principal may speak for the actor, and the actor must be the one the message names.
"""

import json
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from contract.assertion import CLOCK_SKEW, HEADER, MAX_LIFETIME, ActorAssertion, parse_instant
    from contract.org import Directory
    from security.signing import verify

# The server keeps a signal while no worker runs (a redeploy); a signal twin's assertion is
# therefore honoured this long past its expiry. An Update is answered at once: no grace.
SIGNAL_GRACE = timedelta(hours=1)


@dataclass(frozen=True)
class Proven:
    actor: str
    key_id: str | None  # None: the directory does not require assertions and none was sent


# The proof of the message whose handler is running: the guard sets it in the task that runs an
# Update's or a signal's handler, so each row that handler records names the key that signed
# this very message, whatever other messages arrive while it waits (workflows/trail.py).
_CURRENT: ContextVar["Proven | None"] = ContextVar("hallflow_proof", default=None)


def current_proof() -> "Proven | None":
    """The proof of the message being handled in this task, or None (the workflow's own steps)."""
    return _CURRENT.get()


def handling(proven: "Proven | None") -> None:
    """Mark the rest of this task (an Update's or a signal's handler) as handling `proven`'s message."""
    _CURRENT.set(proven)


def _unauthenticated(message: str) -> ApplicationError:
    return ApplicationError(message + " (docs/security.md)", type="Unauthenticated", non_retryable=True)


def _assertions(header: Payload) -> list[ActorAssertion]:
    """One assertion, or a list (signal-with-start shares one header between two messages)."""
    try:
        value = json.loads(header.data)
        items = value if isinstance(value, list) else [value]
        return [ActorAssertion.model_validate(item) for item in items]
    except Exception as err:  # noqa: BLE001 - whatever the sender put there, it proves nothing
        raise _unauthenticated(f"the {HEADER} header is not an actor assertion: {str(err)[:300]}") from None


def prove(
    org: Directory,
    headers: Mapping[str, Payload],
    message: str,
    digest: str | None,
    named: str | None,
    *,
    now: datetime,
    grace: timedelta = timedelta(0),
) -> Proven:
    """Who sent `message` (the payload named `named` as its actor, if it names one), or raise
    Unauthenticated (no valid proof) / Forbidden (proven, but the key may not speak for them)."""
    header = headers.get(HEADER)
    if header is None:
        if not org.require_assertions:
            return Proven(actor=named or "unsigned", key_id=None)
        raise _unauthenticated(f"{message} carries no {HEADER} header: sign it with your system's key")
    candidates = [a for a in _assertions(header) if a.message == message]
    if not candidates:
        raise _unauthenticated(f"the {HEADER} assertion is not for {message}")
    a = candidates[0]
    wid = workflow.info().workflow_id
    if a.workflow_id != wid:
        raise _unauthenticated(f"the assertion is for workflow {a.workflow_id}, not {wid}")
    if digest is None or a.payload_sha256 != digest:
        raise _unauthenticated("the assertion's payload_sha256 is not the SHA-256 of the payload sent")
    try:
        issued, expires = parse_instant(a.issued_at), parse_instant(a.expires_at)
    except ValueError as err:
        raise _unauthenticated(f"the assertion's times are not RFC 3339 UTC: {err}") from None
    if expires - issued > MAX_LIFETIME or expires < issued:
        raise _unauthenticated(f"an assertion may live at most {MAX_LIFETIME}; this one {expires - issued}")
    if now > expires + CLOCK_SKEW + grace:
        raise _unauthenticated(f"the assertion expired at {a.expires_at}: sign the message again")
    if now < issued - CLOCK_SKEW:
        raise _unauthenticated(f"the assertion is issued in the future ({a.issued_at}): check the sender's clock")
    key = org.key(a.key_id)
    if key is None:
        raise _unauthenticated(f"key {a.key_id} is not in the directory (version {org.version})")
    if key.not_after is not None and now > key.not_after:
        raise _unauthenticated(f"key {a.key_id} was retired at {key.not_after.isoformat()}")
    if key.alg != a.alg or not verify(a, key):
        raise _unauthenticated(f"the signature does not verify with key {a.key_id}")
    if named is not None and named != a.actor:
        raise ApplicationError(
            f"the assertion speaks for {a.actor}, but the message names {named}", type="Forbidden", non_retryable=True
        )
    if not org.speaks_for(key.principal, a.actor, now):
        raise ApplicationError(
            f"key {a.key_id} of {key.principal} may not speak for {a.actor}", type="Forbidden", non_retryable=True
        )
    return Proven(actor=a.actor, key_id=key.id)
