"""The audit trail and notices of one subject (a case, a rectification, a suggestion, a risk).

Every workflow records through a Trail: each state change is one audit row (who, what, when,
why), with a key made from what the row is (step_key), so neither an activity retry nor a replay
writes a second row or sends a second notice. Rows and notices wait in order and go out together: what a
workflow records before it next waits is one `record_step` activity (local first), its rows,
case row and outbox rows one transaction. `settle()` returns once everything recorded is written:
the guard (workflows/guard.py) settles before an Update answers and before a run ends.
"""

import asyncio
import hashlib
from datetime import datetime
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contract.records import AuditEntry, BrokenCommitment, Notice, Step
    from workflows import activities as act
    from workflows.proof import Proven, current_proof

SYSTEM = "hallflow"  # the actor of what the workflow does by itself (deadlines, escalations)


def step_key(*parts: object) -> str:
    """An idempotency key from what a record is, not from when it was made: `<run id>:<parts>`.

    A local activity writes before its workflow task is committed. When the server rejects that
    task (a signal arrived meanwhile) the run replays with the new events in between, so a key
    drawn in sequence (workflow.uuid4()) could come out different and the same row be written twice; the
    n-th `rectified` of a run is the same row whatever came in between."""
    return ":".join([workflow.info().run_id, *map(str, parts)])


def signed_with(actor: str, proof: Proven | None = None) -> str | None:
    """The key that signed the message an audit row of `actor` records, as the guard proved it:

    1. `proof`, the message the workflow kept with the row's cause, when it names `actor`;
    2. else the message whose handler is running (an Update's, a signal's), when it names `actor`;
    3. else, for a row a workflow writes later on someone's behalf without passing `proof`, the key
       of the last message from `actor` that the workflow accepted (`Governed.signed`);
    4. else None: hallflow's own steps, and unsigned messages where assertions are not required.
    """
    if proof is not None:
        return proof.key_id if proof.actor == actor else None
    current = current_proof()
    if current is not None and current.actor == actor:
        return current.key_id
    if actor == SYSTEM:
        return None  # hallflow's own step, unless its own signed message is being handled (above)
    return getattr(workflow.instance(), "signed", {}).get(actor)


class Trail:
    """Audit entries and notices about one subject. `events` keeps what was recorded, for `status`."""

    def __init__(self, subject_type: str, subject_id: str) -> None:
        self.subject_type = subject_type
        self.subject_id = subject_id
        self.events: list[Any] = []
        self._step = Step()
        self._counts: dict[str, int] = {}  # records per action or notice kind, for their keys
        self._writer: asyncio.Task | None = None
        self._failure: BaseException | None = None
        self._queued = 0  # rows, notices and attachments queued so far: the writer waits till it holds still

    async def record(
        self, action: str, actor: str, reason: str = "", details: dict[str, Any] | None = None,
        *, proof: Proven | None = None,
    ) -> None:
        """One audit row. `proof`: the message it records, when the row is written outside that
        message's own handler (the workflow kept it with the message); see `signed_with`."""
        now = workflow.now()
        self.remember(now, action, actor, reason)
        info = workflow.info()
        entry = AuditEntry(
            key=self._next_key("audit", action),
            subject_type=self.subject_type,
            subject_id=self.subject_id,
            action=action,
            actor=actor,
            reason=reason,
            at=now,
            workflow_id=info.workflow_id,
            run_id=info.run_id,
            details=details or {},
            signed_with=signed_with(actor, proof),
        )
        self.add(entry)  # with the subject as it is now, not once the step is written

    def add(self, entry: AuditEntry) -> None:
        """Queue the row `entry` makes (a case's carries its case row: workflows/case/trail.py)."""
        self._step.entries.append(entry)
        self._kick()

    def remember(self, at: datetime, action: str, actor: str, reason: str) -> None:
        self.events.append({"at": at.isoformat(), "action": action, "actor": actor})

    async def notify(self, recipient: str, kind: str, title: str, body: str) -> None:
        self._step.notices.append(
            Notice(
                # The recipient by a digest: keys reach logs, an applicant's id must not.
                key=self._next_key("notice", kind, hashlib.sha256(recipient.encode()).hexdigest()[:16]),
                recipient=recipient,
                kind=kind,
                subject_type=self.subject_type,
                subject_id=self.subject_id,
                title=title,
                body=body,
                at=workflow.now(),
            )
        )
        self._kick()

    def attach(self, **parts: Any) -> None:
        """A registration, rating or broken commitment to write with this step (contract.records.Step)."""
        for name, value in parts.items():
            setattr(self._step, name, value)
        self._kick()

    def broken_commitment(self, applicant_id: str, case_no: str) -> None:
        commitment = BrokenCommitment(key=step_key("broken_commitment"), applicant_id=applicant_id, case_no=case_no, at=workflow.now())
        self.attach(broken_commitment=commitment)

    async def settle(self) -> None:
        """Wait until everything recorded so far is written; raise what stopped the writer."""
        await workflow.wait_condition(lambda: self._writer is None or self._failure is not None)
        if self._failure is not None:
            raise self._failure

    def _next_key(self, *what: str) -> str:
        name = ":".join([self.subject_type, self.subject_id, *what])
        self._counts[name] = self._counts.get(name, 0) + 1
        return step_key(name, self._counts[name])

    def _kick(self) -> None:
        self._queued += 1
        if self._writer is None and self._failure is None:
            # Starts once the code that recorded waits: the rest of this step joins the same write.
            self._writer = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        try:
            while self._pending():
                # What the rest of this step (and a lookup's answer) brings joins the same write.
                await act.quiet(lambda: self._queued)
                step, self._step = self._step, Step()
                actions = [e.audit.action for e in step.case_events] + [e.action for e in step.entries]
                summary = f"audit: {', '.join(actions)}" if actions else f"notify: {', '.join(n.kind for n in step.notices)}"
                await act.record_step(step, summary[:200])
        except BaseException as err:  # noqa: BLE001 - settle() raises it in the workflow's own code
            workflow.logger.error("trail_write_failed", extra={"error": type(err).__name__})
            self._failure = err
        finally:
            self._writer = None

    def _pending(self) -> bool:
        s = self._step
        return bool(s.case_events or s.entries or s.notices or s.registration or s.rating or s.broken_commitment)
