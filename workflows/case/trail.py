"""A case's audit trail: each row goes with the case row as it stands then (record_step)."""

from collections.abc import Callable
from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contract.case import Event
    from contract.records import AuditEntry, CaseEvent, CaseSnapshot
    from workflows.trail import Trail


class CaseTrail(Trail):
    def __init__(self, case_no: str, snapshot: Callable[[], CaseSnapshot]) -> None:
        super().__init__("case", case_no)
        self._snapshot = snapshot

    def remember(self, at: datetime, action: str, actor: str, reason: str) -> None:
        self.events.append(Event(at=at, action=action, actor=actor, reason=reason))

    def add(self, entry: AuditEntry) -> None:
        self._step.case_events.append(CaseEvent(audit=entry, case=self._snapshot()))
        self._kick()
