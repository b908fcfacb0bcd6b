"""A case's audit trail: each row goes with the case row as it stands then (record_case_event)."""

from collections.abc import Callable
from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contract.case import Event
    from contract.records import AuditEntry, CaseEvent, CaseSnapshot
    from workflows import activities as act
    from workflows.trail import Trail


class CaseTrail(Trail):
    def __init__(self, case_no: str, snapshot: Callable[[], CaseSnapshot]) -> None:
        super().__init__("case", case_no)
        self._snapshot = snapshot

    def remember(self, at: datetime, action: str, actor: str, reason: str) -> None:
        self.events.append(Event(at=at, action=action, actor=actor, reason=reason))

    def row(self, entry: AuditEntry) -> CaseEvent:
        return CaseEvent(audit=entry, case=self._snapshot())

    async def write(self, row: CaseEvent) -> None:
        await act.record_case_event(row)
