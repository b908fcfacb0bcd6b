"""Every long-lived workflow stays under a documented history bound whatever happens in time
(docs/reliability.md): a red risk nobody acknowledges, a bad review nobody verifies, a suggestion
nobody answers. Virtual time: 30 days pass in seconds."""

from datetime import timedelta


from contract.risk import Acknowledge
from contract.risk import RiskState, risk_workflow_id
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
