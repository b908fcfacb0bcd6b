"""Who an open workflow waits on, as search attributes (WaitingOn + StepDueAt) for the inbox.

Behind the patch `waiting-on`: runs started before it upserted neither, and replay must not add
the upserts to their histories.
"""

from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contract import search

WAITING_ON_PATCH = "waiting-on"


class Waiting:
    """The last published (who, due); publishes only a change, so history gains no idle upserts."""

    def __init__(self) -> None:
        self.enabled = False
        self._published: tuple[list[str], datetime | None] | None = None

    def start(self) -> None:
        """Call once at the start of the run (the patch decision is made there, for life)."""
        self.enabled = workflow.patched(WAITING_ON_PATCH)

    def publish(self, who: list[str], due: datetime | None = None, *, with_due: bool = False, along=()) -> None:
        """Upsert `along` (the caller's own attributes) and, when it changed, WaitingOn (and,
        `with_due`, StepDueAt: the feedback and risk workflows keep their own), in one upsert:
        one history event, not two."""
        updates = list(along)
        state = (sorted(set(who)), due if who and with_due else None)
        if self.enabled and state != self._published:
            self._published = state
            updates.append(search.WAITING_ON.value_set(state[0]))
            if with_due and state[1] is not None:
                # Not unset when nothing is due: the SDK cannot decode an unset Datetime in
                # describe(); WaitingOn = [] already says nothing is awaited.
                updates.append(search.STEP_DUE_AT.value_set(state[1]))
        if updates:
            workflow.upsert_search_attributes(updates)
