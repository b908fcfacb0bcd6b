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

Who sent a message comes next (docs/security.md). Before the workflow runs, the guard gives it
the organisation directory (a local activity, so it is in history) and proves the start
(`self.start_proof`); before each validator, it proves the Update or signal (workflows/proof.py)
and tells the workflow who is acting (`self.sender`). The handler then runs with that message's
proof (`workflows.proof.current_proof()`), so each audit row it records names the key that
signed this very message (workflows/trail.py). Refusals of who may act are written to the audit
trail with the actor and key proven, if any: a twin's by the twin, an Update's (which leaves no
history) through the worker's refusal sink (activities/lent.py).
"""

from typing import Any, Callable, Sequence, TypeVar

from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError
from temporalio.workflow import ContinueAsNewError
from temporalio.worker import (
    ExecuteWorkflowInput,
    HandleQueryInput,
    HandleSignalInput,
    HandleUpdateInput,
    Interceptor,
    SignalExternalWorkflowInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

with workflow.unsafe.imports_passed_through():
    from activities.lent import lent_to
    from contract.assertion import HEADER, payload_digest
    from contract.converter import Unreadable, digest_read, expected, invalid
    from contract.org import APPLICANT, SYSTEM_ACTOR, Role
    from contract.records import AuditEntry
    from contract.schemas import actor_named
    from security.signing import header_value, sign
    from workflows import activities as act
    from workflows.authority import refuse_unless, require_active
    from workflows.proof import SIGNAL_GRACE, Proven, handling, prove

# Refusals of who may act: recorded in the audit trail (the rest only answer the sender).
WHO_MAY = {"Unauthenticated", "Forbidden", "UnknownActor", "NotReviewer", "NotPanelMember"}
# Typed signals refused per run that are audited; past this a flood is only logged (as for twins).
AUDIT_DROPPED = 100

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


def _instance() -> Any:
    return workflow.instance()


def _subject(inst: Any) -> tuple[str, str]:
    trail = getattr(inst, "_trail", None)
    if trail is not None:
        return trail.subject_type, trail.subject_id
    return workflow.info().workflow_type, workflow.info().workflow_id


def _audit_refusal(inst: Any, key: str, message: str, actor: str | None, refusal: ApplicationError,
                   proven: Proven | None = None) -> AuditEntry:
    """The `refused` row: the actor and key proven for the message, else the actor it claimed
    (signed_with None: not proven)."""
    if proven is not None:
        actor = proven.actor
    subject_type, subject_id = _subject(inst)
    info = workflow.info()
    return AuditEntry(
        key=key,
        subject_type=subject_type,
        subject_id=subject_id,
        action="refused",
        actor=(actor or "unknown")[:200] or "unknown",
        reason=str(refusal.message)[:2000],
        at=workflow.now(),
        workflow_id=info.workflow_id,
        run_id=info.run_id,
        details={"message": message[:200], "error": refusal.type or "Refused"},
        signed_with=proven.key_id if proven is not None else None,
    )


def _prove_message(inst: Any, message: str, value: Any, digest: str | None, headers: Any, *, grace=None) -> Proven:
    """Prove `message`, tell the workflow who acts (`sender`), and refuse an actor the directory
    does not know or the workflow's rule for it does not allow. A refusal after the proof leaves
    it in `inst.proving`, so the refusal is recorded with the actor and key proven."""
    inst.sender = inst.proving = None  # never the last message's
    proven = prove(inst.org, headers, message, digest, actor_named(value), now=workflow.now(),
                   **({"grace": grace} if grace is not None else {}))
    inst.sender, inst.proving = proven.actor, proven
    step = message.removesuffix("_signal") if message != workflow.info().workflow_type else "start"
    if step == "directory_changed":  # the same rule in every workflow
        rule = inst.org.with_role(Role.DIRECTORY_ADMIN, workflow.now()), "send a directory change"
    else:
        rule = inst.who_may(step, value) if hasattr(inst, "who_may") and value is not None else None
    if rule is not None:
        allowed, what = rule
        refuse_unless(inst.org, workflow.now(), proven.actor, allowed, what)
    elif proven.actor not in (APPLICANT, SYSTEM_ACTOR) and not inst.org.is_hall(proven.actor):
        require_active(inst.org, workflow.now(), proven.actor, f"send {step}")
    if step == "start" and value is not None and hasattr(inst, "check_start"):
        inst.check_start(value)  # what the input names (a risk's owner, a suggestion's department)
    return proven


def _accepted(inst: Any, proven: Proven | None) -> None:
    """A message past its checks: its handler runs with its proof, and it is the last one `actor`
    sent that the workflow accepted (the key for rows recorded later on their behalf)."""
    handling(proven)
    if proven is not None and proven.key_id is not None:
        inst.signed = {**getattr(inst, "signed", {}), proven.actor: proven.key_id}


async def _settle(inst: Any) -> None:
    """Wait until the workflow's trail (workflows/trail.py) has written what it recorded."""
    trail = getattr(inst, "_trail", None)
    if trail is not None:
        await trail.settle()


class _Inbound(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_Outbound(outbound))

    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        refused = _refused_input()
        if refused is not None:
            raise refused  # fails the run at once: a clear failure in the Web UI, no task retried
        inst = _instance()
        value = input.args[0] if input.args else None
        digest = digest_read(value)  # now: the bytes it was read from are gone after an await
        inst.org = await act.org_directory()
        info = workflow.info()
        if info.parent is not None or info.continued_run_id is not None:
            # Started by a hallflow workflow, or continued from this one: the server says so.
            inst.sender = SYSTEM_ACTOR
        else:
            try:
                inst.start_proof = _prove_message(inst, info.workflow_type, value, digest, input.headers)
            except ApplicationError as refusal:
                if refusal.type in WHO_MAY:
                    # Before anything else is written: the refusal is the run's only row.
                    await act.record_audit(_audit_refusal(inst, f"refused-start:{info.run_id}", info.workflow_type,
                                                          actor_named(value), refusal, getattr(inst, "proving", None)))
                raise
            # Not made the run's current proof (run() records for others too): a row of the start
            # passes `start_proof`; rows recorded for its actor later fall back to `signed`.
            if inst.start_proof.key_id is not None:
                inst.signed = {**getattr(inst, "signed", {}), inst.start_proof.actor: inst.start_proof.key_id}
        try:
            result = await super().execute_workflow(input)
        except ContinueAsNewError:
            await _settle(inst)  # the next run starts with this one's trail written
            raise
        await _settle(inst)  # a run ends with its last rows written
        return result

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
        inst = _instance()
        if getattr(inst, "org", None) is None:
            return  # sent with the start (update-with-start): proven once the directory is in
        self._admit(inst, input)

    def _admit(self, inst: Any, input: HandleUpdateInput, digest: str | None = None) -> None:
        value = input.args[0] if input.args else None
        try:
            proven = _prove_message(inst, input.update, value, digest or digest_read(value), input.headers)
            super().handle_update_validator(input)
            # Kept for the handler (the validator's task is the handler's, but the SDK may not run
            # the validator again on replay: the handler proves it again then).
            inst._update_proofs = {**getattr(inst, "_update_proofs", {}), input.id: proven}
        except ApplicationError as refusal:
            if refusal.type in WHO_MAY and not workflow.unsafe.is_replaying():
                lent = lent_to(workflow.info().task_queue)
                if lent is not None:
                    lent.record(_audit_refusal(inst, f"refused-update:{workflow.info().workflow_id}:{input.id}",
                                               input.update, actor_named(value), refusal, getattr(inst, "proving", None)))
            if refusal.non_retryable:
                raise
            # A refusal stands until the case changes: an SDK's retry must not resend it as is.
            raise ApplicationError(refusal.message, *refusal.details, type=refusal.type, non_retryable=True) from None

    async def handle_update_handler(self, input: HandleUpdateInput) -> Any:
        inst = _instance()
        if getattr(inst, "org", None) is None:
            # Accepted with the start, before the directory was in: proven and validated now
            # (a refusal fails this Update). Replay reaches the same point with the same state.
            digest = digest_read(input.args[0] if input.args else None)  # before the await, as a start's
            await workflow.wait_condition(lambda: getattr(inst, "org", None) is not None)
            self._admit(inst, input, digest)
        proofs = getattr(inst, "_update_proofs", {})
        proven = proofs.get(input.id)
        if proven is not None:
            inst._update_proofs = {k: v for k, v in proofs.items() if k != input.id}
        else:
            proven = self._reprove(inst, input)
        _accepted(inst, proven)  # this handler's rows carry this Update's key
        result = await super().handle_update_handler(input)
        await _settle(inst)  # an Update answers once what it changed is in the audit trail
        return result

    @staticmethod
    def _reprove(inst: Any, input: HandleUpdateInput) -> Proven | None:
        """An Update's proof when its validator did not run here (a replay): the same check on the
        same message, directory and clock decides the same. None if it does not hold (it did when
        the Update was accepted: the directory copy is the one it had then)."""
        value = input.args[0] if input.args else None
        try:
            return prove(inst.org, input.headers, input.update, digest_read(value), actor_named(value), now=workflow.now())
        except ApplicationError:
            return None

    async def handle_signal(self, input: HandleSignalInput) -> None:
        inst = _instance()
        twin = getattr(inst, "SIGNAL_TWINS", {}).get(input.signal.removesuffix("_signal"))
        proving: Proven | None = None
        try:
            if _refused_input() is not None:
                raise _refused_input()  # type: ignore[misc]
            check_arguments("signal", input.signal, input.args)
            value, digest = self._signal_payload(input, twin)  # now: the bytes it was read from go with an await
            await workflow.wait_condition(lambda: getattr(inst, "org", None) is not None)
            try:
                proven = _prove_message(inst, input.signal, value, digest, input.headers, grace=SIGNAL_GRACE)
            finally:
                proving = getattr(inst, "proving", None)  # the actor and key, if proven before a refusal
        except ApplicationError as refusal:
            if twin is not None and hasattr(inst, "_refuse"):
                # Recorded like any refused twin: status.refused_signals and the audit trail.
                await inst._refuse(input.signal, str(refusal.message), refusal.type or "Refused", proving)
            else:
                workflow.logger.warning("signal_dropped", extra={"signal": input.signal, "error": refusal.type,
                                                                 "reason": str(refusal.message)[:300]})
                self._audit_dropped(inst, input.signal, refusal, proving)
            return
        except Exception as refusal:  # noqa: BLE001 - never fail the workflow over a signal
            workflow.logger.warning("signal_dropped", extra={"signal": input.signal, "reason": str(refusal)})
            return
        # A twin's validator may still refuse it: the twin records that with this proof too, and
        # only a twin it applies counts as accepted (workflows/twins.py).
        if twin is None:
            _accepted(inst, proven)
        else:
            handling(proven)
        await super().handle_signal(input)

    @staticmethod
    def _audit_dropped(inst: Any, signal: str, refusal: ApplicationError, proving: Proven | None) -> None:
        """A typed signal refused for who sent it (a rating, a directory change) goes to the audit
        trail through the refusal sink, as a refused Update does: the first AUDIT_DROPPED of a run."""
        if refusal.type not in WHO_MAY:
            return
        inst._dropped_signals = getattr(inst, "_dropped_signals", 0) + 1  # workflow state: replays alike
        key = f"refused-signal:{workflow.info().run_id}:{inst._dropped_signals}"
        lent = lent_to(workflow.info().task_queue)
        if inst._dropped_signals <= AUDIT_DROPPED and lent is not None and not workflow.unsafe.is_replaying():
            lent.record(_audit_refusal(inst, key, signal, None, refusal, proving))

    @staticmethod
    def _signal_payload(input: HandleSignalInput, twin: Any) -> tuple[Any, str | None]:
        """The signal's value (its actor's source) and the SHA-256 of the bytes it came in."""
        args = input.args
        if len(args) == 2 and isinstance(args[0], str) and isinstance(args[1], (list, tuple)):
            # A dynamic handler (a twin): the raw payloads are at hand; the actor is in the JSON.
            raws = args[1]
            first = raws[0].payload if raws and isinstance(raws[0], RawValue) else None
            try:
                value = workflow.payload_converter().from_payload(first, twin[0]) if twin and first else None
            except Exception:  # noqa: BLE001 - the twin refuses it as InvalidPayload itself
                value = None
            return value, payload_digest(first.data if first is not None else b"")
        value = args[0] if args else None
        return value, (digest_read(value) if args else payload_digest(b""))


class _Outbound(WorkflowOutboundInterceptor):
    def signal_external_workflow(self, input: SignalExternalWorkflowInput):  # type: ignore[override]
        # What one workflow tells another is signed with the worker's key, as any sender's is.
        lent = lent_to(workflow.info().task_queue)
        if lent is not None and lent.key is not None:
            payloads = workflow.payload_converter().to_payloads(list(input.args))
            data = payloads[0].data if payloads else b""
            assertion = sign(lent.key, actor=SYSTEM_ACTOR, workflow_id=input.workflow_id, message=input.signal,
                             payload=data, now=workflow.now())
            header = Payload(metadata={"encoding": b"json/plain"}, data=header_value(assertion).encode())
            input.headers = {**input.headers, HEADER: header}
        return super().signal_external_workflow(input)


class ContractGuard(Interceptor):
    def workflow_interceptor_class(self, input: WorkflowInterceptorClassInput) -> type[WorkflowInboundInterceptor]:
        return _Inbound


INTERCEPTORS = [ContractGuard()]
