"""Every workflow input, Update and typed signal is exactly one value of its contract model.

The data converter refuses a payload that is not the model's JSON (contract/converter.py), but
the SDK skips type hints when the count of arguments is wrong: no argument, or two, reach the
handler as nothing or as plain dicts. This worker interceptor refuses such an Update before its
validator with the same InvalidPayload as a bad payload, and drops such a signal with a warning
(a signal cannot be refused; signal twins do their own checks and audit their refusals).
It runs on replay too, so a dropped signal stays dropped: the Replayer must use it as well.

A workflow input that is missing, unreadable or for another workflow id is refused by the
workflow's `__init__` (`refuse_input`), which keeps the refusal instead of raising it: the
workflow object must always be built, or every query of that run fails with an SDK error. The
guard then fails the run with it at once, and answers every query, Update and signal with it.
"""

from typing import Any, Callable, Sequence, TypeVar

from temporalio import workflow
from temporalio.worker import (
    ExecuteWorkflowInput,
    HandleQueryInput,
    HandleSignalInput,
    HandleUpdateInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from contract.converter import Unreadable, expected, invalid

M = TypeVar("M")


def refuse_input(value: M | Unreadable | None, model: type[M], workflow_id_of: Callable[[M], str]) -> ApplicationError | None:
    """Why a workflow may not run on `value`, or None. Keep the answer as `self.refused_input`
    first thing in __init__, and return at once when there is one (the guard does the rest).
    The id check keeps one subject to one workflow: `case-FOO` may not run case BAR."""
    if value is None:
        return invalid(f"invalid workflow input: none given; expected {expected(model)}")
    if isinstance(value, Unreadable):
        return value.refusal(model)
    given, wanted = workflow.info().workflow_id, workflow_id_of(value)  # type: ignore[arg-type]
    if given != wanted:
        return ApplicationError(
            f"workflow id {given!r} does not match its input: this one must run as {wanted!r}",
            type="WorkflowIdMismatch",
            non_retryable=True,
        )
    return None


def _refused_input() -> ApplicationError | None:
    return getattr(workflow.instance(), "refused_input", None)


def _arg_types(kind: str, name: str) -> list[Any] | None:
    """The declared argument types of the workflow's Update or signal `name` (None: dynamic)."""
    defn = workflow._Definition.must_from_class(type(workflow.instance()))
    handler = (defn.updates if kind == "Update" else defn.signals).get(name)
    return handler.arg_types if handler is not None and handler.name is not None else None


def check_arguments(kind: str, name: str, args: Sequence[Any]) -> None:
    """Raise InvalidPayload unless `args` is one value of the message's declared model."""
    types = _arg_types(kind, name)
    if not types or len(types) != 1:
        return  # dynamic (signal twins check their own), or not a one-model message
    (model,) = types
    if len(args) != 1:
        raise invalid(f"invalid {kind} {name}: got {len(args)} arguments; expected {expected(model)}")
    if isinstance(args[0], Unreadable):
        raise invalid(f"invalid {kind} {name}: {args[0].problem}; expected {expected(model)}")
    if isinstance(model, type) and not isinstance(args[0], model):
        raise invalid(f"invalid {kind} {name}: got {type(args[0]).__name__}; expected {expected(model)}")


class _Inbound(WorkflowInboundInterceptor):
    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        refused = _refused_input()
        if refused is not None:
            raise refused  # fails the run at once: a clear failure in the Web UI, no task retried
        return await super().execute_workflow(input)

    async def handle_query(self, input: HandleQueryInput) -> Any:
        refused = _refused_input()
        if refused is not None:
            raise refused  # this run never started: say why, as the run's failure says
        return await super().handle_query(input)

    def handle_update_validator(self, input: HandleUpdateInput) -> None:
        refused = _refused_input()
        if refused is not None:
            raise refused
        check_arguments("Update", input.update, input.args)
        try:
            super().handle_update_validator(input)
        except ApplicationError as refusal:
            if refusal.non_retryable:
                raise
            # A refusal stands until the case changes: an SDK's retry must not resend it as is.
            raise ApplicationError(refusal.message, *refusal.details, type=refusal.type, non_retryable=True) from None

    async def handle_signal(self, input: HandleSignalInput) -> None:
        try:
            if _refused_input() is not None:
                raise _refused_input()  # type: ignore[misc]
            check_arguments("signal", input.signal, input.args)
        except Exception as refusal:  # noqa: BLE001 - never fail the workflow over a signal
            workflow.logger.warning("signal_dropped", extra={"signal": input.signal, "reason": str(refusal)})
            return
        await super().handle_signal(input)


class ContractGuard(Interceptor):
    def workflow_interceptor_class(self, input: WorkflowInterceptorClassInput) -> type[WorkflowInboundInterceptor]:
        return _Inbound


INTERCEPTORS = [ContractGuard()]
