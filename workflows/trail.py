"""The audit trail and notices of one subject (a case, a rectification, a suggestion, a risk).

Every workflow records through a Trail: each state change is one audit row (who, what, when,
why), written one at a time in workflow order, with a key made from the workflow's deterministic
uuid so an activity retry never writes a second row or sends a second notice.
"""

import asyncio
from datetime import datetime
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contract.records import AuditEntry, Notice
    from workflows import activities as act

SYSTEM = "hallflow"  # the actor of what the workflow does by itself (deadlines, escalations)


def new_key() -> str:
    """Deterministic on replay, unique per record: the idempotency key activities dedupe on."""
    return str(workflow.uuid4())


class Trail:
    """Audit entries and notices about one subject. `events` keeps what was recorded, for `status`."""

    def __init__(self, subject_type: str, subject_id: str) -> None:
        self.subject_type = subject_type
        self.subject_id = subject_id
        self.events: list[Any] = []
        # Handlers and the procedure record concurrently: one at a time keeps the rows in order.
        self._lock = asyncio.Lock()

    async def record(self, action: str, actor: str, reason: str = "", details: dict[str, Any] | None = None) -> None:
        now = workflow.now()
        self.remember(now, action, actor, reason)
        info = workflow.info()
        entry = AuditEntry(
            key=new_key(),
            subject_type=self.subject_type,
            subject_id=self.subject_id,
            action=action,
            actor=actor,
            reason=reason,
            at=now,
            workflow_id=info.workflow_id,
            run_id=info.run_id,
            details=details or {},
            # The key that signed the message this row records (the guard proved it), if any.
            signed_with=getattr(workflow.instance(), "signed", {}).get(actor),
        )
        row = self.row(entry)  # what the subject looks like now, not once the lock is free
        async with self._lock:
            await self.write(row)

    def remember(self, at: datetime, action: str, actor: str, reason: str) -> None:
        self.events.append({"at": at.isoformat(), "action": action, "actor": actor})

    def row(self, entry: AuditEntry) -> Any:
        """What `write` stores for `entry`: the entry itself, or (a case) the entry with its case row."""
        return entry

    async def write(self, row: Any) -> None:
        await act.record_audit(row)

    async def notify(self, recipient: str, kind: str, title: str, body: str) -> None:
        await act.notify(
            Notice(
                key=new_key(),
                recipient=recipient,
                kind=kind,
                subject_type=self.subject_type,
                subject_id=self.subject_id,
                title=title,
                body=body,
                at=workflow.now(),
            )
        )
