"""Every long-lived workflow stays under a documented history bound whatever happens in time
(docs/reliability.md): a red risk nobody acknowledges, a bad review nobody verifies, a suggestion
nobody answers. Virtual time: 30 days pass in seconds."""

from datetime import datetime, timedelta, timezone

from contract.risk import Acknowledge, Level, Regrade, RiskState, risk_workflow_id
from contract import search
from tests.builders import wait_status
from tests.temporal_fixtures import TEST_EPOCH, failed_tasks, travel_to
from tests.test_rectification import order
from tests.test_risk import report
from tests.test_suggestion import suggestion
from workflows.rectification import RectificationWorkflow
from workflows.risk import RiskWorkflow
from workflows.suggestion import SuggestionWorkflow

# The documented bounds: far above what each needs, far below Temporal's 10,240-event warning.
RISK_BOUND, FEEDBACK_BOUND = 300, 150


async def _events(handle) -> int:
    history = await handle.fetch_history()
    assert not failed_tasks(history)
    return len(history.events)


async def test_an_ignored_red_risk_tells_every_rank_once_then_waits_without_growing(env, hall_worker, sqlite_store):
    async with hall_worker(env.client) as tq:
        r = report("R-IGNORED", 0.9, "high")
        handle = await env.client.start_workflow(
            RiskWorkflow.run, r, id=risk_workflow_id(r.risk_no), task_queue=tq, execution_timeout=timedelta(days=400)
        )
        await wait_status(handle, lambda s: s.due_at is not None, query=RiskWorkflow.status)
        await travel_to(env, TEST_EPOCH + timedelta(days=10))
        ten_days = await _events(handle)
        await travel_to(env, TEST_EPOCH + timedelta(days=30))
        status = await handle.query(RiskWorkflow.status)
        thirty_days = await _events(handle)
        # Still required, and still answerable: acknowledged late, the plan step follows.
        await handle.execute_update(RiskWorkflow.acknowledge, Acknowledge(officer="officer-li", group="g"))
        await wait_status(handle, lambda s: s.entry.state == RiskState.AWAITING_PLAN, query=RiskWorkflow.status)

    told = [n.recipient for n in sqlite_store.notices("R-IGNORED") if n.kind == "risk_escalated"]
    assert told == ["head:market-regulation", "office:deputy-director", "office:director"]
    assert status.overdue and status.entry.state == RiskState.AWAITING_ACKNOWLEDGEMENT
    assert thirty_days == ten_days < RISK_BOUND


async def test_a_regrade_restarts_an_ended_ladder_and_the_history_stays_bounded(env, hall_worker, sqlite_store):
    """docs/integration.md: once every rank has been told, the step stays open with no timer; a
    regrade starts its clock again. The new level's deadline is armed and escalates again, and
    the ladder ends again: the history stays under the bound."""
    async with hall_worker(env.client) as tq:
        r = report("R-REGRADED", 0.9, "high")
        handle = await env.client.start_workflow(
            RiskWorkflow.run, r, id=risk_workflow_id(r.risk_no), task_queue=tq, execution_timeout=timedelta(days=400)
        )
        await wait_status(handle, lambda s: s.due_at is not None, query=RiskWorkflow.status)
        # Red, ignored: told at 2, 4 and 6 hours, then the ladder has ended.
        await travel_to(env, TEST_EPOCH + timedelta(days=10))
        ended = await handle.query(RiskWorkflow.status)
        ended_events = await _events(handle)

        # Thursday 2099-01-15 10:00 +08:00: regraded yellow, whose acknowledgement is due in one
        # working day (Friday 24:00 +08:00).
        regraded = await handle.execute_update(
            RiskWorkflow.regrade, Regrade(level=Level.YELLOW, reason="readers back for now", by="officer-li"))
        yellow_due = datetime(2099, 1, 16, 16, tzinfo=timezone.utc)
        armed = await wait_status(handle, lambda s: s.due_at == yellow_due, query=RiskWorkflow.status)
        armed_search = (await handle.describe()).typed_search_attributes
        told_before = [n.recipient for n in sqlite_store.notices("R-REGRADED") if n.kind == "risk_escalated"]

        # Missed again: escalates (yellow -> red), then red's 2 hours twice more, then ends again.
        await travel_to(env, yellow_due + timedelta(minutes=1))
        again = await wait_status(handle, lambda s: s.entry.escalations == 4, query=RiskWorkflow.status)
        await travel_to(env, TEST_EPOCH + timedelta(days=30))
        later = await handle.query(RiskWorkflow.status)
        later_events = await _events(handle)
        await travel_to(env, TEST_EPOCH + timedelta(days=60))
        much_later_events = await _events(handle)

    assert ended.entry.escalations == 3 and ended.overdue
    assert regraded.entry.level == Level.YELLOW
    assert armed.due_at == yellow_due and armed_search.get(search.STEP_DUE_AT) == yellow_due
    assert told_before == ["head:market-regulation", "office:deputy-director", "office:director"]
    assert again.entry.level == Level.RED and again.overdue
    assert later.entry.escalations == 6 and later.entry.state == RiskState.AWAITING_ACKNOWLEDGEMENT
    missed = [e for e in sqlite_store.audit_trail("risk", "R-REGRADED") if e.action == "step_missed"]
    expected = [yellow_due, yellow_due + timedelta(hours=2), yellow_due + timedelta(hours=4)]
    told = [n.recipient for n in sqlite_store.notices("R-REGRADED") if n.kind == "risk_escalated"]
    assert told == told_before + ["office:director"] * 3  # the chain's last rank stays (data/risk.toml)
    assert len(missed) == 6 and all(abs(e.at - at) < timedelta(seconds=5) for e, at in zip(missed[3:], expected))
    print(f"risk history: {ended_events} events when the ladder ended, {later_events} after a regrade and a second ladder")
    assert ended_events < later_events == much_later_events < RISK_BOUND


async def test_an_ignored_bad_review_and_suggestion_escalate_once_and_stay_bounded(env, hall_worker):
    async with hall_worker(env.client) as tq:
        o = order("BOUND-1")
        rect = await env.client.start_workflow(
            RectificationWorkflow.run, o, id=f"rectification-{o.case_no}", task_queue=tq, execution_timeout=timedelta(days=400)
        )
        s = suggestion("SUG-BOUND")
        sug = await env.client.start_workflow(
            SuggestionWorkflow.run, s, id=f"suggestion-{s.suggestion_no}", task_queue=tq, execution_timeout=timedelta(days=400)
        )
        await wait_status(rect, lambda st: st.due_at is not None, query=RectificationWorkflow.status)
        await wait_status(sug, lambda st: st.due_at is not None, query=SuggestionWorkflow.status)
        await travel_to(env, TEST_EPOCH + timedelta(days=60))
        first = (await _events(rect), await _events(sug))
        await travel_to(env, TEST_EPOCH + timedelta(days=120))
        later = (await _events(rect), await _events(sug))
        assert (await rect.query(RectificationWorkflow.status)).overdue
        assert (await sug.query(SuggestionWorkflow.status)).overdue
    assert later == first and max(later) < FEEDBACK_BOUND
