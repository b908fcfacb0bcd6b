"""The four arms the benchmark alternates, each driving cases as their callers would.

a bare-activity  Temporal's floor: a workflow that runs one activity (bench/bare.py), started and
                 awaited to its result.
b bare-updates   a bare workflow that waits for two Updates: started, then the two Updates one
                 after the other, then its result.
c automatic      hallflow's 秒批: a housing-fund-withdrawal case with every material, started as
                 starter.py starts it; once the applicant is invited to rate, rated 5.
d full           the full path as an integrator drives it: an enterprise-opening case accepted
                 with residence-proof deferred under the signed commitment; once the reviewer is
                 asked, review (officer-li), panel votes (officer-zhao, officer-chen: the majority
                 of three), the deferred material (clerk-02), and once invited, the rating.

hallflow's messages go through the signed, encrypted client (settings.connect), each signed for
the officer it names. "Once asked/invited" is read from the outbox table the worker writes its
notices to, as a notification channel would hand them on: polled every 50 ms (cheap, one query
for every waiting case) instead of a `status` query per case, which would load the server.
A case ends a minute after its rating (RATING_GRACE): an arm stops timing at the rating.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sqlalchemy import create_engine, text
from temporalio.client import Client

from bench.bare import TASK_QUEUE as BARE_QUEUE
from bench.bare import UPDATES, BareActivity, BareUpdates
from cli.calls import start
from contract.approval import Review, Vote
from contract.case import Applicant, CaseApplication, SupplementMaterials, case_workflow_id
from contract.matter import Matter
from contract.rating import Rate
from settings import Settings
from workflows.case import CaseWorkflow

ARMS = {
    "a": "bare 1-activity",
    "b": "bare 2 Updates",
    "c": "automatic + rating",
    "d": "full path",
}
AUTOMATIC, FULL = "housing-fund-withdrawal", "enterprise-opening"
OWED = "residence-proof"  # non-core in enterprise-opening: deferred under the commitment
HALL, CLERK, SUPPLIER = "hall-central", "clerk-01", "clerk-02"
REVIEWER, VOTERS = "officer-li", ("officer-zhao", "officer-chen")


class Outbox:
    """Waits for a case's notice of a kind by polling the outbox table the worker writes."""

    KINDS = ("review_requested", "rating_invited")

    def __init__(self, database_url: str, every: float = 0.05) -> None:
        # A plain engine: make_engine's SQLite BEGIN IMMEDIATE would take the write lock to read.
        self.engine = create_engine(database_url)
        self.every = every
        self.last_id = 0
        self.seen: set[tuple[str, str]] = set()
        self.waiters: dict[tuple[str, str], asyncio.Future] = {}

    async def wait(self, case_no: str, kind: str, timeout: float = 300) -> None:
        key = (case_no, kind)
        if key in self.seen:
            self.seen.discard(key)
            return
        future = self.waiters.setdefault(key, asyncio.get_running_loop().create_future())
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            raise TimeoutError(f"case {case_no}: no {kind} notice within {timeout:.0f} s") from None
        finally:
            self.waiters.pop(key, None)

    def _read(self) -> list[tuple[int, str, str]]:
        kinds = ", ".join(f"'{k}'" for k in self.KINDS)
        query = text(f"SELECT id, subject_id, kind FROM outbox WHERE id > :last AND kind IN ({kinds}) ORDER BY id")
        with self.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(query, {"last": self.last_id})]

    async def run(self) -> None:
        while True:
            if self.waiters:
                for id_, case_no, kind in await asyncio.to_thread(self._read):
                    self.last_id = max(self.last_id, id_)
                    future = self.waiters.get((case_no, kind))
                    if future is None:
                        self.seen.add((case_no, kind))
                    elif not future.done():
                        future.set_result(None)
            await asyncio.sleep(self.every)


@dataclass
class Arm:
    """One arm's run: its wall time, the Update round trips (s) and the workflow ids it made."""

    wall_s: float = 0.0
    updates: list[float] = field(default_factory=list)
    updates_by_name: dict[str, list[float]] = field(default_factory=dict)
    workflow_ids: list[str] = field(default_factory=list)

    async def timed(self, name: str, call: Awaitable):
        began = time.perf_counter()
        result = await call
        took = time.perf_counter() - began
        self.updates.append(took)
        self.updates_by_name.setdefault(name, []).append(took)
        return result


@dataclass
class Driver:
    hallflow: Client  # signed and encrypted, as starter.py's
    bare: Client  # plain pydantic JSON
    settings: Settings
    outbox: Outbox
    catalog: dict[str, Matter]
    run: str  # keeps workflow ids unique across rounds and runs

    def application(self, case_no: str, matter: str, owed: tuple[str, ...] = ()) -> CaseApplication:
        codes = [m.code for m in self.catalog[matter].materials if m.code not in owed]
        return CaseApplication(
            case_no=case_no, matter_code=matter, hall=HALL, clerk=CLERK,
            # Personal details as a hall takes them (sealed in the database), made up.
            applicant=Applicant(applicant_id=f"app-{case_no}", name="测试申请人", id_number="TEST-ID-0000", phone="00000000000"),
            materials=codes, commitment_signed=bool(owed),
        )  # fmt: skip

    async def bare_activity(self, arm: Arm, wid: str) -> None:
        await self.bare.execute_workflow(BareActivity.run, 1, id=wid, task_queue=BARE_QUEUE)

    async def bare_updates(self, arm: Arm, wid: str) -> None:
        handle = await self.bare.start_workflow(BareUpdates.run, 1, id=wid, task_queue=BARE_QUEUE)
        for n in range(UPDATES):
            await arm.timed("step", handle.execute_update(BareUpdates.step, n))
        await handle.result()

    async def automatic(self, arm: Arm, wid: str, rate: bool = True) -> None:
        case_no = wid.removeprefix("case-")
        await start(self.hallflow, self.settings, self.application(case_no, AUTOMATIC))
        await self.outbox.wait(case_no, "rating_invited")
        if not rate:
            return
        await arm.timed("rate", self.hallflow.get_workflow_handle(wid).execute_update(
            CaseWorkflow.rate, Rate(score=5, channel="window")))  # fmt: skip

    async def full(self, arm: Arm, wid: str, rate: bool = True) -> None:
        case_no = wid.removeprefix("case-")
        await start(self.hallflow, self.settings, self.application(case_no, FULL, owed=(OWED,)))
        handle = self.hallflow.get_workflow_handle(wid)
        await self.outbox.wait(case_no, "review_requested")
        # Each Update answers once its step is in the audit trail and the case has moved on.
        await arm.timed("review", handle.execute_update(
            CaseWorkflow.review, Review(reviewer=REVIEWER, decision="approve", opinion="lawful")))  # fmt: skip
        for member in VOTERS:
            await arm.timed("vote", handle.execute_update(CaseWorkflow.vote, Vote(member=member, choice="approve")))
        done = await arm.timed("supplement_materials", handle.execute_update(
            CaseWorkflow.supplement_materials, SupplementMaterials(materials=[OWED], submitted_by=SUPPLIER)))  # fmt: skip
        assert done.complete, done
        await self.outbox.wait(case_no, "rating_invited")
        if not rate:
            return
        await arm.timed("rate", handle.execute_update(CaseWorkflow.rate, Rate(score=5, channel="window")))

    async def open_case(self, arm: Arm, wid: str) -> None:
        """A case that stays open: accepted with residence-proof deferred, waiting for its review
        and, on timers, for its deferral deadline and its limits."""
        case_no = wid.removeprefix("case-")
        await start(self.hallflow, self.settings, self.application(case_no, FULL, owed=(OWED,)))
        await self.outbox.wait(case_no, "review_requested")

    def work(self, key: str) -> Callable[..., Awaitable[None]]:
        return {"a": self.bare_activity, "b": self.bare_updates, "c": self.automatic, "d": self.full,
                "open": self.open_case}[key]  # fmt: skip

    def ids(self, key: str, label: str, n: int) -> list[str]:
        """Workflow ids: `case-BENCH-<run>-…` for the measured hallflow cases (the drain counts them)."""
        if key in ("a", "b"):
            prefix = "bare"
        elif key == "open":
            prefix = "case-OPEN"
        else:
            prefix = "case-WARM" if label == "warm" else "case-BENCH"
        return [f"{prefix}-{self.run}-{key.upper()}{label}-{i:05d}" for i in range(n)]

    async def arm(self, key: str, label: str, n: int, concurrency: int, **options) -> Arm:
        """n cases of arm `key`, at most `concurrency` in flight; `label` names the round."""
        arm, work, gate = Arm(), self.work(key), asyncio.Semaphore(concurrency)
        arm.workflow_ids = self.ids(key, label, n)

        async def one(wid: str) -> None:
            async with gate:
                await work(arm, wid, **options)

        began = time.perf_counter()
        try:
            async with asyncio.TaskGroup() as group:
                for wid in arm.workflow_ids:
                    group.create_task(one(wid))
        except ExceptionGroup as failed:
            raise failed.exceptions[0]  # the first failure says why; the others were cancelled
        arm.wall_s = time.perf_counter() - began
        return arm
