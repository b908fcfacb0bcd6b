"""Signal twins: every Update `x` of a workflow is also accepted as the signal `x_signal`.

An Update needs a worker to answer; an integrator that cannot wait (a queue, a batch, a worker
being redeployed) sends the same JSON as a signal, which the server keeps until a worker takes
it. The twin runs the Update's own validator and handler, so it is applied exactly as the Update
would be. What the validator refuses, or what does not parse, is recorded in the audit trail and
in `status.refused_signals` instead: an integrator's signal can never fail or wedge the workflow.
"""

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from temporalio import workflow
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from contract.common import SIGNAL_TWIN_SUFFIX, RefusedSignal
    from contract.converter import expected, invalid
    from workflows.proof import Proven, current_proof

KEEP_REFUSED = 20
UNPROVEN = "signal"  # the actor of a refused twin whose sender was not proven
# Each audited refusal costs history events; past this many in one run a sender gone wrong is
# counted in status instead, so a flood of bad signals cannot grow the history without bound.
AUDIT_REFUSALS = 100


class SignalTwins:
    """Mixin: declare `SIGNAL_TWINS = {update name: (input model, validator)}`; refusals are audited
    through the workflow's `self._trail` (workflows/trail.py)."""

    SIGNAL_TWINS: ClassVar[dict[str, tuple[type[BaseModel], Callable[[Any, Any], None]]]] = {}

    # Kept here, not in each workflow's __init__: the lists start empty on first use.
    @property
    def refused_signals(self) -> list[RefusedSignal]:
        if not hasattr(self, "_refused_signals"):
            self._refused_signals: list[RefusedSignal] = []
        return self._refused_signals

    @property
    def refused_signal_count(self) -> int:
        return getattr(self, "_refused_signal_count", 0)

    @workflow.signal(dynamic=True)
    async def _signal_twin(self, name: str, args: Sequence[RawValue]) -> None:
        update = name.removesuffix(SIGNAL_TWIN_SUFFIX)
        try:
            if not name.endswith(SIGNAL_TWIN_SUFFIX) or update not in self.SIGNAL_TWINS:
                twins = sorted(u + SIGNAL_TWIN_SUFFIX for u in self.SIGNAL_TWINS)
                raise ApplicationError(f"no signal named {name}; signal twins here: {twins}", type="UnknownSignal")
            model, validator = self.SIGNAL_TWINS[update]
            request = _parse(model, args)
            validator(self, request)
            proof = current_proof()  # the guard proved it: the last message its actor had accepted
            if proof is not None and proof.key_id is not None:
                self.signed = {**getattr(self, "signed", {}), proof.actor: proof.key_id}
        except ApplicationError as refusal:
            await self._refuse(name, str(refusal.message), refusal.type or "Refused")
            return
        except Exception as failure:  # noqa: BLE001 - a validator's slip refuses the Update; so here
            await self._refuse(name, f"refused: {failure}", type(failure).__name__)
            return
        handler = workflow.get_update_handler(update)
        assert handler is not None
        try:
            await handler(request)
        except Exception as failure:  # noqa: BLE001 - the Update would fail; the workflow must not
            await self._refuse(name, f"accepted but failed while applied: {failure}", type(failure).__name__)

    async def _refuse(self, name: str, reason: str, error: str, proof: Proven | None = None) -> None:
        """Record a refused twin. `proof`: who sent it and with which key, when the guard proved
        that before refusing it (else the twin's own proof, if proven; else the actor is `signal`)."""
        proof = proof or current_proof()
        # The sender chose the signal's name and the payload's field names, which the reason may
        # quote: keep them storable (no NUL) and short.
        name, reason = _storable(name, 200), _storable(reason, 2000)
        refusal = RefusedSignal(signal=name, reason=reason, error=error, at=workflow.now())
        self.refused_signals.append(refusal)
        del self.refused_signals[:-KEEP_REFUSED]
        self._refused_signal_count = self.refused_signal_count + 1
        if self.refused_signal_count > AUDIT_REFUSALS:
            return
        workflow.logger.warning("signal_refused", extra={"signal": name, "error": error})
        if self.refused_signal_count == AUDIT_REFUSALS:
            refusal = refusal.model_copy(
                update={"reason": f"{reason} (refusal {AUDIT_REFUSALS}: later ones are only counted in status)"}
            )
        details = {"signal": refusal.signal, "error": refusal.error}
        actor = proof.actor if proof is not None else UNPROVEN
        await self._trail.record("signal_refused", actor, refusal.reason, details, proof=proof)  # type: ignore[attr-defined]


def _storable(text: str, limit: int) -> str:
    text = text.replace("\x00", "\\u0000")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _parse(model: type[BaseModel], args: Sequence[RawValue]) -> BaseModel:
    """The signal's one JSON argument as the Update's input model; InvalidPayload as the Update says it."""
    if len(args) != 1:
        raise invalid(f"invalid {model.__name__}: got {len(args)} arguments; expected {expected(model)}")
    try:
        # The contract's converter refuses a mismatch with the same InvalidPayload message as the Update.
        return workflow.payload_converter().from_payload(args[0].payload, model)
    except ApplicationError:
        raise
    except Exception as err:  # noqa: BLE001 - any undecodable payload is the sender's mistake
        raise invalid(f"invalid {model.__name__}: not a JSON object ({err}); expected {expected(model)}") from None
