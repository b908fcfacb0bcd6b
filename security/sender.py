"""A client interceptor that signs what a Python client sends: each workflow start, signal and
Update carries a `hallflow-actor` assertion for its actor (docs/security.md).

The payload is encoded here, once, and sent as those very bytes (a RawValue), so the digest the
assertion binds is the digest the worker computes. The actor is the one the message names
(Review.reviewer...); a message that names none (a rating, a suggestion, a risk report) is
sent for `actor`: the applicant, the public, or whoever runs the command.
"""

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.client import (
    Interceptor,
    OutboundInterceptor,
    SignalWorkflowInput,
    StartWorkflowInput,
    StartWorkflowUpdateInput,
    StartWorkflowUpdateWithStartInput,
)
from temporalio.common import RawValue

from contract.assertion import HEADER
from contract.converter import data_converter
from contract.schemas import actor_named
from security.keys import PrivateKey
from security.signing import header_value, sign


class Signer(Interceptor):
    def __init__(self, key: PrivateKey, actor: str | Callable[[Any], str]) -> None:
        self.key = key
        self.actor = actor if callable(actor) else (lambda _value: actor)
        # The server's clock when it is not the wall clock (the time-skipping test server).
        self.clock: Callable[[], Awaitable[datetime]] | None = None

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _Signing(next, self)


def _encoded(args: Sequence[Any]) -> tuple[list[Any], bytes]:
    """The args as the payloads they will be, and the first one's bytes (b"" when none)."""
    if not args:
        return [], b""
    payloads = data_converter.payload_converter.to_payloads(list(args))
    return [RawValue(p) for p in payloads], payloads[0].data


def _header(*values: str) -> Payload:
    data = values[0] if len(values) == 1 else "[" + ",".join(values) + "]"
    return Payload(metadata={"encoding": b"json/plain"}, data=data.encode())


class _Signing(OutboundInterceptor):
    def __init__(self, next: OutboundInterceptor, signer: Signer) -> None:
        super().__init__(next)
        self._signer = signer

    async def _assert(self, workflow_id: str, message: str, args: Sequence[Any]) -> tuple[list[Any], str]:
        value = args[0] if args else None
        actor = actor_named(value) or self._signer.actor(value)
        raw, data = _encoded(args)
        now = await self._signer.clock() if self._signer.clock else None
        assertion = sign(self._signer.key, actor=actor, workflow_id=workflow_id, message=message, payload=data, now=now)
        return raw, header_value(assertion)

    @staticmethod
    def _with(headers: Mapping[str, Payload], *values: str) -> dict[str, Payload]:
        return {**headers, HEADER: _header(*values)}

    async def start_workflow(self, input: StartWorkflowInput) -> Any:
        input.args, start = await self._assert(input.id, input.workflow, input.args)
        values = [start]
        if input.start_signal:  # signal-with-start: one header for both messages
            input.start_signal_args, signal = await self._assert(input.id, input.start_signal, input.start_signal_args)
            values.append(signal)
        input.headers = self._with(input.headers, *values)
        return await super().start_workflow(input)

    async def signal_workflow(self, input: SignalWorkflowInput) -> None:
        input.args, value = await self._assert(input.id, input.signal, input.args)
        input.headers = self._with(input.headers, value)
        return await super().signal_workflow(input)

    async def start_workflow_update(self, input: StartWorkflowUpdateInput) -> Any:
        input.args, value = await self._assert(input.id, input.update, input.args)
        input.headers = self._with(input.headers, value)
        return await super().start_workflow_update(input)

    async def start_update_with_start_workflow(self, input: StartWorkflowUpdateWithStartInput) -> Any:
        start, update = input.start_workflow_input, input.update_workflow_input
        start.args, started = await self._assert(start.id, start.workflow, start.args)
        start.headers = self._with(start.headers, started)
        update.args, updated = await self._assert(start.id, update.update, update.args)
        update.headers = self._with(update.headers, updated)
        return await super().start_update_with_start_workflow(input)
