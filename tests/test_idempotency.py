"""Retried activities write once: no second audit row, no second notification.

A worker can lose an activity's answer after the write committed (crash, network cut, timeout),
and a notification gateway can fail a send; Temporal then runs the activity again. The store
dedupes on the key the workflow made, so the retry finds the first write and adds nothing.
The faults below are real objects on a real worker; nothing is mocked.
"""

import asyncio
from datetime import timedelta
from collections import Counter

from sqlalchemy import Engine
from temporalio import activity
from temporalio.client import WorkflowUpdateStage

from activities.notify import Channel
from activities.store import Store
from contract.case import CaseStage, Withdraw
from contract.records import Notice, Step
from tests.builders import application, start_case
from workflows.case import CaseWorkflow


class AnswerLost(ConnectionResetError):
    """The write committed but the worker never reported it: Temporal retries the activity."""


class StoreThatLosesFirstAnswers(Store):
    """The first attempt of each record that gets through the write loses its answer.

    Once per key, so a store that did write twice shows up as a duplicate row, not as a hang.
    """

    def __init__(self, engine: Engine, channel: Channel) -> None:
        super().__init__(engine, channel)
        self.lost: dict[str, int] = {}  # key -> the attempt whose answer was thrown away

    def _lose_first_answer(self, key: str) -> None:
        if key not in self.lost:
            self.lost[key] = activity.info().attempt
            raise AnswerLost(f"answer for {key} lost after the write")

    @activity.defn(name="record_step")
    def record_step(self, step: Step) -> int:
        written = super().record_step(step)
        # Keyed by the step's first row (or notice): each step written once, answered late.
        self._lose_first_answer(next(iter([e.audit.key for e in step.case_events] + [n.key for n in step.notices])))
        return written


class GatewayFailingFirstSends:
    """A notification channel whose first send of each notice fails, as an SMS gateway times out."""

    name = "flaky-gateway"

    def __init__(self) -> None:
        self.refused: list[str] = []
        self.delivered: list[Notice] = []

    def send(self, notice: Notice) -> None:
        if notice.key not in self.refused:
            self.refused.append(notice.key)
            raise ConnectionError(f"gateway timeout for {notice.key}")
        self.delivered.append(notice)


async def _tick_until(env, done, limit: int = 60) -> bool:
    for _ in range(limit):
        if done():
            return True
        # A local activity retries in real time inside its workflow task: let the clock run no
        # faster than that, or the task times out on the server's (skipped) clock meanwhile.
        await asyncio.sleep(0.5)
        await env.sleep(timedelta(seconds=0.5))
    return done()


async def test_retried_activities_record_each_step_and_send_each_notice_once(env, hall_worker, catalog, sqlite_store):
    gateway = GatewayFailingFirstSends()
    store = StoreThatLosesFirstAnswers(sqlite_store.engine, gateway)
    app = application(catalog["enterprise-opening"])
    async with hall_worker(env.client, store=store) as tq:
        handle = await start_case(env.client, app, tq)
        # Retry back-offs (1 s, 2 s...) are server timers: move the clock in small steps so they
        # pass at once, far from the case's own deadlines (awaiting the result instead would skip
        # straight to them, and past them to the execution timeout).
        assert await _tick_until(env, lambda: len(sqlite_store.notices(app.case_no)) >= 2)
        update = await handle.start_update(
            CaseWorkflow.withdraw,
            Withdraw(reason="changed plans", requested_by="applicant"),
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
        )
        assert await _tick_until(env, lambda: len(sqlite_store.notices(app.case_no)) >= 3)
        withdrawn = await update.result()
        outcome = await handle.result()
        # The workflow ends only after its activities did: nothing trails the result.
        trail = sqlite_store.audit_trail("case", app.case_no)
        outbox = sqlite_store.notices(app.case_no)
        case_row = sqlite_store.case_row(app.case_no)

    assert withdrawn.stage == outcome.stage == CaseStage.WITHDRAWN
    assert case_row["stage"] == "withdrawn"
    # Every fault fired: each step's write lost its answer once (its rows were in, the retry found
    # them), and the gateway refused each notice's first send.
    assert len(store.lost) >= 4 and set(store.lost) <= {e.key for e in trail} | {n.key for n in outbox}
    assert sorted(gateway.refused) == sorted(n.key for n in outbox)

    # (awaiting the result runs the clock through the unused rating window)
    assert [e.action for e in trail] == ["received", "accepted", "review_requested", "withdrawn", "rating_window_closed"]
    assert all(count == 1 for count in Counter(e.key for e in trail).values())
    assert [n.kind for n in outbox] == ["accepted", "review_requested", "case_withdrawn", "rating_invited"]
    assert all(count == 1 for count in Counter(n.key for n in outbox).values())
    # Delivered exactly once each: not lost with the failed send, not resent by the retry.
    assert sorted(n.key for n in gateway.delivered) == sorted(n.key for n in outbox)
