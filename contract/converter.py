"""The data converter every hallflow client and worker uses: pydantic models as plain JSON.

Three changes to temporalio's pydantic converter, so that what an outsider sends is refused
with one documented error (ApplicationError type InvalidPayload, non-retryable) that names the
expected schema, and never reaches a handler as something else:
- a contract model is read only from JSON (`json/plain`): `null` (`binary/null`), raw bytes
  (`binary/plain`), protobuf or a payload with no encoding is refused, not handed on as None;
- JSON is validated strictly: `true` is not 1, `"5"` is not 5, `0` or `"yes"` is not a boolean;
- a mismatch names each bad field. Inside a workflow the SDK passes this failure through, so an
  Update is rejected with that message instead of a bare "Failed decoding arguments".

A workflow input is the one place where a refusal must not be raised while decoding: the SDK
would then have no input to build the workflow from, and every later query of that run would
fail with an SDK error. A workflow declares its input as `Model | Unreadable`; a bad one arrives
as an `Unreadable` holding the reason, and the workflow refuses it itself (workflows/guard.py).
"""

import hashlib
import threading
import types
import typing
from collections import deque
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Sequence

from pydantic import BaseModel, TypeAdapter, ValidationError
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter
from temporalio.converter import CompositePayloadConverter, DataConverter, DefaultPayloadConverter, JSONPlainPayloadConverter
from temporalio.exceptions import ApplicationError

from contract.schemas import CONTRACT

JSON = b"json/plain"
UNDECRYPTABLE = b"binary/undecryptable"  # security/codec.py


def describe(err: ValidationError) -> str:
    problems = []
    for e in err.errors(include_url=False):
        where = ".".join(str(part) for part in e["loc"]) or "payload"
        problems.append(f"{where}: {e['msg']}")
    return "; ".join(problems)


def expected(model: type) -> str:
    """Where an integrator finds the schema a payload must match."""
    names = [name for name, m in CONTRACT.items() if m is model and not name.endswith(".result")]
    where = f"docs/schemas/{names[0]}.json" if names else "docs/integration.md"
    return f"one JSON object matching {getattr(model, '__name__', model)} ({where})"


def invalid(message: str) -> ApplicationError:
    """The one refusal for a payload that is not what the contract says (docs/integration.md)."""
    return ApplicationError(message, type="InvalidPayload", non_retryable=True)


def refusal(model: Any, problem: str) -> ApplicationError:
    return invalid(f"invalid {getattr(model, '__name__', model)}: {problem}; expected {expected(model)}")


class _Problem(Exception):
    """What is wrong with one payload, before the refusal names the model it was read as."""


@dataclass(frozen=True)
class Unreadable:
    """A workflow input that could not be read as its model: what was wrong with it."""

    problem: str

    def refusal(self, model: type) -> ApplicationError:
        return refusal(model, self.problem)


def lenient_model(hint: Any) -> type | None:
    """The model of an input declared `Model | Unreadable`, or None for any other hint."""
    if typing.get_origin(hint) not in (typing.Union, types.UnionType):
        return None
    members = [m for m in typing.get_args(hint) if m is not Unreadable and m is not type(None)]
    return members[0] if len(members) == 1 and Unreadable in typing.get_args(hint) else None


@lru_cache(maxsize=512)
def _adapter(hint: Any) -> TypeAdapter:
    return TypeAdapter(hint)


def _is_model(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, BaseModel)


class _ContractJSON(PydanticJSONPlainPayloadConverter):
    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        try:
            return self.read(payload, type_hint)
        except _Problem as problem:
            raise refusal(type_hint, str(problem)) from None

    def read(self, payload: Payload, type_hint: type | None) -> Any:
        hint = type_hint if type_hint is not None else Any
        try:
            adapter = _adapter(hint)
        except TypeError:  # an unhashable hint: no cache
            adapter = TypeAdapter(hint)
        try:
            value = adapter.validate_json(payload.data, strict=True)
        except ValidationError as err:
            raise _Problem(describe(err)) from None
        where = _nul_at(value, "")
        if where is not None:
            # Legal JSON, but PostgreSQL cannot store it: refused here, never retried forever later.
            raise _Problem(f"{where or 'payload'}: text holds a NUL character (\\u0000); remove it")
        _remember(value, payload.data)
        return value


# The SHA-256 of the JSON each recent model was read from, by identity, per thread: a signed
# actor assertion binds the payload's bytes as sent, and only the converter ever sees them. A
# workflow activation decodes a message and runs its guard on one thread with nothing between.
_read = threading.local()


def _remember(value: Any, data: bytes) -> None:
    ring = getattr(_read, "ring", None)
    if ring is None:
        ring = _read.ring = deque(maxlen=64)
    ring.append((value, hashlib.sha256(data).hexdigest()))


def digest_read(value: Any) -> str | None:
    """The SHA-256 (hex) of the payload `value` was just decoded from, or None."""
    for seen, digest in reversed(getattr(_read, "ring", ())):
        if seen is value:
            return digest
    return None


def _nul_at(value: Any, path: str) -> str | None:
    """Where in `value` a string holds U+0000, or None."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, BaseModel):
        items: Any = ((name, getattr(value, name)) for name in type(value).model_fields)
    elif isinstance(value, dict):
        if any(isinstance(k, str) and "\x00" in k for k in value):
            return path
        items = ((str(k), v) for k, v in value.items())
    elif isinstance(value, (list, tuple, set)):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _nul_at(item, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


class ContractPayloadConverter(CompositePayloadConverter):
    def __init__(self) -> None:
        converters = [
            _ContractJSON() if isinstance(c, JSONPlainPayloadConverter) else c
            for c in DefaultPayloadConverter.default_encoding_payload_converters
        ]
        super().__init__(*converters)
        self._json = next(c for c in converters if isinstance(c, _ContractJSON))

    def from_payloads(self, payloads: Sequence[Payload], type_hints: list[type] | None = None) -> list[Any]:
        if type_hints is None and len(payloads) > 1:
            # The SDK drops the type hints when the count is wrong: every hallflow message and
            # workflow input is one JSON object. Handed on as one Unreadable, so that the guard
            # (workflows/guard.py) refuses it naming the model the message or workflow expects.
            return [Unreadable(f"got {len(payloads)} arguments")]
        values = []
        for index, payload in enumerate(payloads):
            hint = type_hints[index] if type_hints and index < len(type_hints) else None
            model = lenient_model(hint)
            try:
                values.append(self._one(payload, model or hint))
            except _Problem as problem:
                if model is None:
                    raise refusal(hint, str(problem)) from None
                values.append(Unreadable(str(problem)))
        return values

    def _one(self, payload: Payload, hint: Any) -> Any:
        encoding = payload.metadata.get("encoding", b"")
        if encoding == UNDECRYPTABLE:  # security/codec.py: encrypted with a key not held here
            raise _Problem(payload.data.decode(errors="replace"))
        if _is_model(hint):
            if encoding != JSON:
                shown = encoding.decode(errors="replace") or "no encoding"
                raise _Problem(f"payload is {shown}, not json/plain")
            return self._json.read(payload, hint)
        return super().from_payloads([payload], [hint] if hint is not None else None)[0]


data_converter = DataConverter(payload_converter_class=ContractPayloadConverter)
