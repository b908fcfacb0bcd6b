"""Hands each rating to its department's satisfaction watch (the first rating of a department
starts its watch). A retry may deliver twice; the watch drops the repeat.

A start that finds the watch running, then a signal: two calls, each simple to retry on its own
(signal-with-start through an SDK would carry the request's header to the signal as well).
"""

from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy

from contract.rating import Rating
from contract.risk import WatchState


class WatchDelivery:
    def __init__(self, client: Client, task_queue: str) -> None:
        self.client = client
        self.task_queue = task_queue

    @activity.defn(name="send_rating_to_watch")
    async def send_rating_to_watch(self, rating: Rating) -> None:
        watch = await self.client.start_workflow(
            "SatisfactionWatchWorkflow",
            WatchState(department=rating.department),
            id=f"satisfaction-{rating.department}",
            task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            static_summary=f"satisfaction watch · {rating.department}",
            static_details=f"The bad-review rate of `{rating.department}` over a sliding window; query `status`.",
        )
        await watch.signal("rating", rating)
