"""Search attributes, changed as one upsert per step: every change a workflow makes before it next
waits goes out together, one history event instead of one per call."""

import asyncio

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate

with workflow.unsafe.imports_passed_through():
    from workflows import activities as act


class _Pending:
    def __init__(self) -> None:
        self.updates: dict[str, SearchAttributeUpdate] = {}
        self.task: asyncio.Task | None = None
        self.changes = 0


def upsert(updates: list[SearchAttributeUpdate]) -> None:
    """Set these attributes with the others of this step (a later value of a key wins)."""
    if not updates:
        return
    instance = workflow.instance()
    pending = instance.__dict__.setdefault("_attributes_pending", _Pending())
    for update in updates:
        pending.updates[update.key.name] = update
        pending.changes += 1
    if pending.task is None:
        # Runs once the code that made the change waits: by then the step's changes are all in.
        pending.task = asyncio.get_running_loop().create_task(_apply(pending))


async def _apply(pending: _Pending) -> None:
    await act.quiet(lambda: pending.changes)  # the rest of the step, and what follows a lookup, join these
    updates, pending.updates, pending.task = list(pending.updates.values()), {}, None
    workflow.upsert_search_attributes(updates)
