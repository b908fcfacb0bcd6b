"""The satisfaction watch: a bad-review rate over 5% (on enough ratings) starts one red risk."""

import tomllib
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio.worker import Worker

from activities.calendar import Calendar, CalendarActivities
from activities.catalog import CatalogActivities
from activities.risk import RiskActivities
from activities.watch import WatchDelivery
from contract.rating import Rating
from contract.risk import Level, RiskPolicy
from settings import ROOT
from tests.builders import eventually, wait_status
from tests.temporal_fixtures import TEST_CALENDAR
from worker import INTERCEPTORS, WORKFLOWS, hallflow_activities
from workflows.satisfaction import SatisfactionWatchWorkflow, watch_workflow_id

DEPARTMENT = "taxation"


def policy(**satisfaction) -> RiskPolicy:
    data = tomllib.loads((ROOT / "data" / "risk.toml").read_text(encoding="utf-8"))
    data["satisfaction"] = {**data["satisfaction"], **satisfaction}
    return RiskPolicy.model_validate(data)


class Hall:
    """A worker with the watch, and a way to rate cases of DEPARTMENT as CaseWorkflow does."""

    def __init__(self, env, store, catalog, risk_policy: RiskPolicy) -> None:
        self.env, self.store, self.catalog, self.policy = env, store, catalog, risk_policy
        self.task_queue = f"watch-{uuid.uuid4()}"
        self.delivery = WatchDelivery(env.client, self.task_queue)
        self.count = 0

    async def __aenter__(self):
        self.executor = ThreadPoolExecutor(max_workers=8)
        activities = hallflow_activities(
            self.store,
            CalendarActivities(Calendar.load(TEST_CALENDAR), TEST_CALENDAR),
            CatalogActivities(self.catalog),
            risks=RiskActivities(self.store.engine, self.policy),
            watch=self.delivery,
        )
        self.worker = Worker(
            self.env.client, task_queue=self.task_queue, workflows=WORKFLOWS, interceptors=INTERCEPTORS, activities=activities,
            activity_executor=self.executor,
        )
        await self.worker.__aenter__()
        return self

    async def __aexit__(self, *exc):
        await self.worker.__aexit__(*exc)
        self.executor.shutdown()

    async def rate(self, *scores: int) -> None:
        for score in scores:
            self.count += 1
            await self.delivery.send_rating_to_watch(self.rating(f"W-{self.count}", score))

    def rating(self, case_no: str, score: int) -> Rating:
        return Rating(
            case_no=case_no, matter_code="x", department=DEPARTMENT, hall="h", score=score, channel="app",
            at=self.now,
        )

    async def status(self, check=lambda s: True):
        handle = self.env.client.get_workflow_handle(watch_workflow_id(DEPARTMENT))
        return await wait_status(handle, check, query=SatisfactionWatchWorkflow.status)


def _actions(store) -> list[str]:
    return [e.action for e in store.audit_trail("satisfaction", DEPARTMENT)]


async def test_over_five_percent_on_enough_ratings_starts_one_red_risk_and_records_the_recovery(
    env, sqlite_store, catalog
):
    async with Hall(env, sqlite_store, catalog, policy()) as hall:
        hall.now = await env.get_current_time()
        await hall.rate(1, *[5] * 18)  # 1 bad of 19: 5.3%, but too few ratings to judge
        small = await hall.status(lambda s: s.ratings == 19)
        await hall.rate(5)  # 1 of 20: exactly 5%, not over
        at_line = await hall.status(lambda s: s.ratings == 20)
        await hall.rate(2)  # 2 of 21: 9.5%
        over = await hall.status(lambda s: s.open_risk is not None)
        await hall.rate(1)  # still over: no second risk while one is open
        await hall.rate(*[5] * 30)  # 3 of 52: 5.8% ... then under
        await hall.rate(*[5] * 10)  # 3 of 62: 4.8%
        back = await hall.status(lambda s: s.ratings == 62 and not s.over_line)
        await eventually(lambda: "rate_back_below_line" in _actions(sqlite_store))
        register = RiskActivities(sqlite_store.engine, None).register(department=DEPARTMENT)

    assert small.bad_share is None and not small.over_line
    assert at_line.bad_share == 0.05 and not at_line.over_line
    assert over.over_line and over.open_risk.startswith("satisfaction-taxation-")
    assert [(r.source, r.level) for r in register] == [("satisfaction", Level.RED)]
    assert _actions(sqlite_store) == ["rate_over_line", "emergency_started", "rate_back_below_line"]
    assert back.bad == 3


async def test_too_few_ratings_are_never_judged(env, sqlite_store, catalog):
    async with Hall(env, sqlite_store, catalog, policy()) as hall:
        hall.now = await env.get_current_time()
        await hall.rate(1, 1, 1)
        status = await hall.status(lambda s: s.ratings == 3)

    assert status.bad == 3 and status.bad_share is None and status.open_risk is None
    assert _actions(sqlite_store) == []


async def test_a_rating_delivered_twice_counts_once(env, sqlite_store, catalog):
    async with Hall(env, sqlite_store, catalog, policy()) as hall:
        hall.now = await env.get_current_time()
        twice = hall.rating("W-SAME", 1)
        await hall.delivery.send_rating_to_watch(twice)
        await hall.delivery.send_rating_to_watch(twice)
        await hall.rate(5)
        status = await hall.status(lambda s: s.ratings >= 2)

    assert (status.ratings, status.bad) == (2, 1)


async def test_old_ratings_leave_the_window(env, sqlite_store, catalog):
    async with Hall(env, sqlite_store, catalog, policy()) as hall:
        hall.now = await env.get_current_time()
        await hall.rate(5, 5, 1)
        before = await hall.status(lambda s: s.ratings == 3)
        await env.sleep(timedelta(days=31))
        hall.now = await env.get_current_time()
        await hall.rate(1)
        after = await hall.status(lambda s: s.bad == 1 and s.ratings == 1)

    assert (before.ratings, before.bad) == (3, 1)
    # A month later only the new rating is in the 30-day window.
    assert (after.ratings, after.bad) == (1, 1)


async def test_continue_as_new_keeps_the_window(dev_server, sqlite_store, catalog):
    # On the dev server: the time-skipping test server can lose the next run's first task when a
    # signal lands on a run that is continuing as new ("Task not found when completing").
    env = dev_server
    async with Hall(env, sqlite_store, catalog, policy(ratings_per_run=10, min_ratings=5)) as hall:
        hall.now = await env.get_current_time()
        for n in range(1, 26):
            await hall.rate(1 if n in (3, 17) else 5)
            await hall.status(lambda s, n=n: s.ratings == n)
        carried = await hall.status(lambda s: s.ratings == 25)
        desc = await env.client.get_workflow_handle(watch_workflow_id(DEPARTMENT)).describe()

    # 25 ratings at 10 per run: a later run holds all 25, the bad ones of the first runs included.
    assert desc.run_id != desc.raw_description.workflow_execution_info.first_run_id
    assert (carried.ratings, carried.bad) == (25, 2)


def test_the_carried_window_stays_small_whatever_the_rating_rate():
    """The watch continues as new with its window. Carried rating by rating (about 54 bytes each),
    ~38,800 ratings in 30 days would pass Temporal's 2 MiB payload limit and the watch could not
    continue; per-day counts and a bounded list of recent case numbers stay small, and count the same."""
    from datetime import datetime, timezone

    from contract.risk import RECENT_CASES, WatchState
    from workflows.satisfaction import count_rating

    start = datetime(2099, 1, 5, 2, tzinfo=timezone.utc)
    state = WatchState(department=DEPARTMENT)
    total, bad, per_day = 45_000, 0, 1_500
    for n in range(total):
        at = start + timedelta(days=n // per_day, seconds=n % per_day)
        is_bad = n % 20 == 7  # 5%
        bad += is_bad
        rating = Rating(case_no=f"CASE-{n:06d}", matter_code="x", department=DEPARTMENT, hall="h",
                        score=1 if is_bad else 5, channel="app", at=at)
        assert count_rating(state, rating, at, window_days=30)
    carried = len(state.model_dump_json().encode())

    assert (sum(d.ratings for d in state.days), sum(d.bad for d in state.days)) == (total, bad)  # 30 days, all in
    assert len(state.days) == 30 and len(state.recent) == RECENT_CASES
    assert carried < 200_000, carried
    # A retried delivery of a recent rating counts once; the window moves on by day.
    again = Rating(case_no=f"CASE-{total - 1:06d}", matter_code="x", department=DEPARTMENT, hall="h", score=1,
                   channel="app", at=at)
    assert not count_rating(state, again, at, window_days=30)
    later = at + timedelta(days=10)
    fresh = Rating(case_no="CASE-LATER", matter_code="x", department=DEPARTMENT, hall="h", score=5, channel="app",
                   at=later)
    assert count_rating(state, fresh, later, window_days=30)
    assert [d.day for d in state.days][0] == (later + timedelta(hours=8)).date() - timedelta(days=29)
    # Sent back into a new run as it would be: the state is a valid input of the watch.
    assert WatchState.model_validate_json(state.model_dump_json()) == state
