"""Who an open workflow waits on, as search attributes (WaitingOn + StepDueAt) for the inbox."""

from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contract import search
    from workflows import attributes


class Waiting:
    """The last published (who, due); publishes only a change, so history gains no idle upserts."""

    def __init__(self) -> None:
        self._published: tuple[list[str], datetime | None] | None = None

    def publish(self, who: list[str], due: datetime | None = None, *, with_due: bool = False, along=()) -> None:
        """Upsert `along` (the caller's own attributes) and, when it changed, WaitingOn (and,
        `with_due`, StepDueAt: the feedback and risk workflows keep their own), in one upsert:
        one history event, not two."""
        updates = list(along)
        state = (sorted(set(who)), due if who and with_due else None)
        if state != self._published:
            self._published = state
            updates.append(search.WAITING_ON.value_set(state[0]))
            if with_due and state[1] is not None:
                # Not unset when nothing is due: the SDK cannot decode an unset Datetime in
                # describe(); WaitingOn = [] already says nothing is awaited.
                updates.append(search.STEP_DUE_AT.value_set(state[1]))
        if updates:
            attributes.upsert(updates)
