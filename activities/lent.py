"""What a worker lends the workflows it runs, outside their history, per task queue.

- A sink for refused Updates. A validator's refusal leaves nothing in history (that is its
  point), so no activity can record it; the guard hands the audit entry here instead, and a
  thread writes it. Its key is made from the Update's id, so a second delivery of the same
  refused Update (a retried task) finds the row already written.
- The worker's own signing key, with which one workflow signs what it sends another (the
  satisfaction watch trusts only signed messages, like every workflow).
Nothing here changes what a workflow decides, so replay never depends on it.
"""

import queue
import threading
from dataclasses import dataclass, field
from typing import Any

import structlog

from contract.records import AuditEntry

log = structlog.get_logger()


@dataclass
class Lent:
    store: Any = None  # activities.store.Store
    key: Any = None  # security.keys.PrivateKey of the worker's system ("hallflow")
    _queue: "queue.SimpleQueue[AuditEntry | None]" = field(default_factory=queue.SimpleQueue)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._drain, name="refusal-recorder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def record(self, entry: AuditEntry) -> None:
        self._queue.put(entry)  # never blocks the workflow thread

    def _drain(self) -> None:
        while (entry := self._queue.get()) is not None:
            for attempt in range(5):
                try:
                    self.store.record_audit(entry)
                    break
                except Exception as err:  # noqa: BLE001 - the database may be away: try again, then say so
                    log.warning("refusal_not_recorded", key=entry.key, attempt=attempt + 1, error=type(err).__name__)
                    threading.Event().wait(2**attempt)


_LENT: dict[str, Lent] = {}


def lend(task_queue: str, lent: Lent) -> Lent:
    _LENT[task_queue] = lent
    lent.start()
    return lent


def take_back(task_queue: str) -> None:
    lent = _LENT.pop(task_queue, None)
    if lent is not None:
        lent.stop()


def lent_to(task_queue: str) -> Lent | None:
    return _LENT.get(task_queue)
