"""SatisfactionWatchWorkflow: one per department (`satisfaction-<department>`), fed every rating.

The bad-review rate over the last `window_days`, judged on at least `min_ratings` ratings: over
`max_bad_share` (5%) starts an emergency response — a red RiskWorkflow for the department, at most
one open at a time — and it records when the rate falls back below the line. Continues as new
before its history grows large, carrying the window: a count of ratings and bad ones per
Asia/Shanghai day, and the last RECENT_CASES case numbers (so a rating delivered twice counts
once), a state of bounded size whatever the rating rate.
"""

from datetime import datetime, timedelta

from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contract.converter import Unreadable
    from contract.rating import Rating
    from contract.risk import (
        RECENT_CASES,
        Level,
        RatingDay,
        RiskPolicy,
        RiskReport,
        WatchState,
        WatchStatus,
        risk_workflow_id,
    )
    from workflows.clock import local_date
    from workflows import activities as act
    from workflows.detached import start_detached
    from contract.org import SYSTEM_ACTOR
    from workflows.governed import Governed
    from workflows.guard import refuse_input
    from workflows.trail import SYSTEM, Trail


def watch_workflow_id(department: str) -> str:
    return f"satisfaction-{department}"


def count_rating(state: WatchState, rating: Rating, now: datetime, window_days: int) -> bool:
    """Fold `rating` into the window of `state` as it stands at `now`: the days before the last
    `window_days` Asia/Shanghai days (today included) leave it; the rating counts on its own day.
    False, and nothing counted, for a case already counted (a retried delivery). A rating whose
    day has already left the window is remembered but not counted."""
    first = local_date(now) - timedelta(days=window_days - 1)
    state.days = [d for d in state.days if d.day >= first]
    if rating.case_no in state.recent:
        return False
    state.recent.append(rating.case_no)
    del state.recent[:-RECENT_CASES]
    day = local_date(rating.at)
    if day < first:
        return True
    counted = next((d for d in state.days if d.day == day), None)
    if counted is None:
        counted = RatingDay(day=day, ratings=1, bad=0)
        state.days.append(counted)
        state.days.sort(key=lambda d: d.day)
    else:
        counted.ratings += 1
    counted.bad += rating.bad
    return True


@workflow.defn(name="SatisfactionWatchWorkflow")
class SatisfactionWatchWorkflow(Governed):
    @workflow.init
    def __init__(self, state: WatchState | Unreadable | None = None) -> None:
        self.refused_input = refuse_input(state, WatchState, lambda w: watch_workflow_id(w.department))
        if self.refused_input is not None:
            return  # the guard fails the run with it (workflows/guard.py)
        assert isinstance(state, WatchState)
        self._state = state
        self._inbox: list[Rating] = []
        self._received = 0
        self._policy: RiskPolicy | None = None

    @workflow.run
    async def run(self, state: WatchState | Unreadable | None = None) -> None:
        policy = self._policy = await act.risk_policy()
        watch = policy.satisfaction
        trail = Trail("satisfaction", state.department)
        while True:
            await workflow.wait_condition(lambda: bool(self._inbox) or self._should_continue(watch.ratings_per_run))
            while self._inbox:
                await self._take(self._inbox.pop(0), trail)
            workflow.set_current_details(self._details_line())
            if self._should_continue(watch.ratings_per_run) and not self._inbox:
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self._state)

    def _should_continue(self, per_run: int) -> bool:
        return self._received >= per_run or workflow.info().is_continue_as_new_suggested()

    async def _take(self, rating: Rating, trail: Trail) -> None:
        assert self._policy is not None
        watch, state = self._policy.satisfaction, self._state
        if not count_rating(state, rating, workflow.now(), watch.window_days):
            return  # the same rating delivered twice (a retried delivery)
        status = self.status()
        if status.bad_share is None:
            return
        over = status.bad_share > watch.max_bad_share
        details = {"ratings": status.ratings, "bad": status.bad, "bad_share": round(status.bad_share, 4)}
        if over and not state.over_line:
            state.over_line = True
            await trail.record("rate_over_line", SYSTEM, details=details)
        elif not over and state.over_line:
            state.over_line = False
            await trail.record("rate_back_below_line", SYSTEM, details=details)
        if over and state.open_risk is None:
            await self._emergency(details, trail)

    async def _emergency(self, details: dict, trail: Trail) -> None:
        state = self._state
        state.risks_raised += 1
        risk_no = f"satisfaction-{state.department}-{workflow.now():%Y%m%d}-{state.risks_raised}"
        report = RiskReport(
            risk_no=risk_no,
            source="satisfaction",
            type="execution",
            title=f"bad-review rate {details['bad_share']:.1%} over the last {self._policy.satisfaction.window_days} days",
            probability=1.0,
            impact="high",
            responsible_department=state.department,
            owner=f"head:{state.department}",
            level=Level.RED,  # domain.md: over 5% starts an emergency response
        )
        await start_detached(
            "RiskWorkflow",
            report,
            risk_workflow_id(risk_no),
            f"satisfaction emergency · {state.department}",
            f"Red risk: `{state.department}`'s {report.title}; started by `satisfaction-{state.department}`.",
        )
        state.open_risk = risk_no
        await trail.record("emergency_started", SYSTEM, details={**details, "risk_no": risk_no})

    def who_may(self, message: str, req: Any) -> tuple[list[str], str] | None:
        # Ratings come from cases, risk closures from risks: hallflow's own messages only.
        return [SYSTEM_ACTOR], f"send {message} to the satisfaction watch (hallflow does)"

    @workflow.signal(name="rating")
    def rating(self, rating: Rating) -> None:
        # A signal: each case hands its rating over and goes on; the watch takes them in order.
        self._received += 1
        self._inbox.append(rating)

    @workflow.signal(name="risk_closed")
    def risk_closed(self, risk_no: str) -> None:
        if self._state.open_risk == risk_no:
            self._state.open_risk = None

    def _details_line(self) -> str:
        s = self.status()
        share = f"{s.bad_share:.1%}" if s.bad_share is not None else "not enough ratings yet"
        parts = ["**over the line**" if s.over_line else "**below the line**", s.department, f"{s.bad}/{s.ratings} bad ({share})"]
        if s.open_risk:
            parts.append(f"risk {s.open_risk} open")
        return " · ".join(parts)

    @workflow.query(name="status")
    def status(self) -> WatchStatus:
        ratings = sum(d.ratings for d in self._state.days)
        bad = sum(d.bad for d in self._state.days)
        enough = self._policy is not None and ratings >= self._policy.satisfaction.min_ratings
        return WatchStatus(
            department=self._state.department,
            ratings=ratings,
            bad=bad,
            bad_share=bad / ratings if enough else None,
            over_line=self._state.over_line,
            open_risk=self._state.open_risk,
        )
