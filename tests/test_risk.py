"""风险清单 and escalation: each level's timers met and missed, the chain, regrade, review before resolve."""

from datetime import datetime, timedelta, timezone

import pytest
from temporalio.client import WorkflowUpdateFailedError

from activities.risk import RiskActivities
from contract import search
from contract.risk import (
    Acknowledge,
    Level,
    Regrade,
    Resolve,
    RiskReport,
    RiskReviewRecord,
    RiskState,
    SubmitPlan,
    risk_workflow_id,
)
from tests.builders import eventually, wait_status
from tests.temporal_fixtures import TEST_EPOCH, travel_to
from workflows.risk import RiskWorkflow

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
# Reported Mon 2099-01-05 10:00 +08:00. Yellow: acknowledge within 1 working day (Tue 24:00).
YELLOW_ACK_DUE = datetime(2099, 1, 6, 16, tzinfo=timezone.utc)


def report(no: str, probability: float, impact: str, level: Level | None = None) -> RiskReport:
    return RiskReport(
        risk_no=no,
        type="execution",
        title="window queue over 2 hours",
        probability=probability,
        impact=impact,
        responsible_department="market-regulation",
        owner="officer-li",
        level=level,
    )


async def _start(env, tq, r: RiskReport):
    handle = await env.client.start_workflow(
        RiskWorkflow.run, r, id=risk_workflow_id(r.risk_no), task_queue=tq, execution_timeout=timedelta(days=400)
    )
    status = await wait_status(handle, lambda s: s.due_at is not None, query=RiskWorkflow.status)
    return handle, status


def _near(instant: datetime | None, expected: datetime) -> bool:
    return instant is not None and abs(instant - expected) < timedelta(seconds=5)


def _actions(store, no: str) -> list[str]:
    return [e.action for e in store.audit_trail("risk", no)]


def _escalations(store, no: str) -> list:
    return [n for n in store.notices(no) if n.kind == "risk_escalated"]


async def test_red_steps_met_in_time_then_review_and_resolve(env, hall_worker, sqlite_store):
    async with hall_worker(env.client) as tq:
        handle, opened = await _start(env, tq, report("R-RED-1", 0.6, "high"))
        await travel_to(env, TEST_EPOCH + HOUR)
        await handle.execute_update(RiskWorkflow.acknowledge, Acknowledge(officer="officer-li", group="emergency-group-1"))
        planning = await wait_status(handle, lambda s: s.entry.state == RiskState.AWAITING_PLAN and s.due_at is not None, query=RiskWorkflow.status)
        await handle.execute_update(
            RiskWorkflow.submit_plan,
            SubmitPlan(officer="officer-li", plan="open two more windows", due=TEST_EPOCH + timedelta(days=2)),
        )
        await wait_status(handle, lambda s: s.entry.state == RiskState.HANDLING, query=RiskWorkflow.status)
        with pytest.raises(WorkflowUpdateFailedError) as unreviewed:
            await handle.execute_update(RiskWorkflow.resolve, Resolve(officer="officer-li", summary="queue back to normal"))
        await handle.execute_update(
            RiskWorkflow.review,
            RiskReviewRecord(by="officer-li", cause="staff leave", what_worked="extra windows", what_changes="leave rota"),
        )
        resolved = await handle.execute_update(RiskWorkflow.resolve, Resolve(officer="officer-li", summary="normal"))
        desc = await handle.describe()

    assert opened.entry.level == Level.RED and _near(opened.due_at, TEST_EPOCH + 2 * HOUR)
    # The plan is due 24 hours after the report, whenever the group convened.
    assert _near(planning.due_at, TEST_EPOCH + 24 * HOUR)
    assert "only after its review" in str(unreviewed.value.cause)
    assert resolved.entry.state == RiskState.RESOLVED and resolved.entry.escalations == 0
    assert _actions(sqlite_store, "R-RED-1") == ["reported", "acknowledged", "plan_submitted", "reviewed", "resolved"]
    (row,) = RiskActivities(sqlite_store.engine, None).register(department="market-regulation")
    assert (row.level, row.state) == (Level.RED, RiskState.RESOLVED) and row.acknowledged_at is not None
    assert desc.typed_search_attributes.get(search.RISK_LEVEL) == "red"


async def test_a_missed_red_step_goes_up_the_chain_one_level_each_time_and_stays_required(env, hall_worker, sqlite_store):
    async with hall_worker(env.client) as tq:
        handle, _ = await _start(env, tq, report("R-RED-2", 0.9, "high"))
        await travel_to(env, TEST_EPOCH + 2 * HOUR - MINUTE)
        before = await handle.query(RiskWorkflow.status)
        await travel_to(env, TEST_EPOCH + 2 * HOUR + MINUTE)
        first = await wait_status(handle, lambda s: s.entry.escalations == 1, query=RiskWorkflow.status)
        await travel_to(env, TEST_EPOCH + 4 * HOUR + MINUTE)
        second = await wait_status(handle, lambda s: s.entry.escalations == 2, query=RiskWorkflow.status)
        await eventually(lambda: len(_escalations(sqlite_store, "R-RED-2")) == 2)
        # Still required: acknowledged late, the plan step follows.
        await handle.execute_update(RiskWorkflow.acknowledge, Acknowledge(officer="officer-li", group="g"))
        planning = await wait_status(handle, lambda s: s.entry.state == RiskState.AWAITING_PLAN and s.due_at is not None, query=RiskWorkflow.status)

    assert before.entry.escalations == 0 and not before.overdue
    # The step's clock restarts at the escalation: the next one up is told 2 hours later.
    assert first.overdue and first.entry.level == Level.RED and _near(first.due_at, TEST_EPOCH + 4 * HOUR)
    assert second.entry.escalations == 2
    told = _escalations(sqlite_store, "R-RED-2")
    assert [n.recipient for n in told] == ["head:market-regulation", "office:deputy-director"]
    assert abs(told[0].at - (TEST_EPOCH + 2 * HOUR)) < timedelta(seconds=5)
    missed = [e for e in sqlite_store.audit_trail("risk", "R-RED-2") if e.action == "step_missed"]
    assert missed[0].details["step"] == "acknowledge" and missed[0].details["escalated_to"] == "head:market-regulation"
    assert planning.entry.state == RiskState.AWAITING_PLAN


async def test_a_missed_yellow_step_raises_the_risk_to_red_with_red_timers(env, hall_worker, sqlite_store):
    async with hall_worker(env.client) as tq:
        handle, opened = await _start(env, tq, report("R-YEL-1", 0.5, "medium"))
        await travel_to(env, YELLOW_ACK_DUE + MINUTE)
        raised = await wait_status(handle, lambda s: s.entry.level == Level.RED, query=RiskWorkflow.status)
        desc = await handle.describe()

    assert opened.entry.level == Level.YELLOW and opened.due_at == YELLOW_ACK_DUE
    # Now red: the group must convene within 2 hours of the escalation.
    assert abs(raised.due_at - (YELLOW_ACK_DUE + 2 * HOUR)) < timedelta(seconds=5)
    assert desc.typed_search_attributes.get(search.RISK_LEVEL) == "red"
    assert desc.typed_search_attributes.get(search.STEP_OVERDUE) is True


async def test_blue_counts_working_days_and_regrade_restarts_the_open_step_under_the_new_level(env, hall_worker, sqlite_store):
    async with hall_worker(env.client) as tq:
        handle, opened = await _start(env, tq, report("R-BLU-1", 0.2, "low"))
        await travel_to(env, TEST_EPOCH + 3 * HOUR)
        regraded = await handle.execute_update(
            RiskWorkflow.regrade, Regrade(level=Level.RED, reason="queue reached the street", by="officer-zhao")
        )
        red = await wait_status(handle, lambda s: s.due_at and s.due_at < opened.due_at, query=RiskWorkflow.status)
        with pytest.raises(WorkflowUpdateFailedError) as unchanged:
            await handle.execute_update(RiskWorkflow.regrade, Regrade(level=Level.RED, reason="again", by="officer-li"))

    # Blue: acknowledge within 3 working days: Tue, Wed, Thu 01-08 24:00.
    assert opened.entry.level == Level.BLUE and opened.due_at == datetime(2099, 1, 8, 16, tzinfo=timezone.utc)
    assert regraded.entry.level == Level.RED
    assert abs(red.due_at - (TEST_EPOCH + 5 * HOUR)) < timedelta(seconds=5)
    assert "already red" in str(unchanged.value.cause)
    (entry,) = [e for e in sqlite_store.audit_trail("risk", "R-BLU-1") if e.action == "regraded"]
    assert entry.details == {"from": "blue", "to": "red"} and entry.reason == "queue reached the street"


async def test_the_register_lists_risks_by_department_and_level(env, hall_worker, sqlite_store):
    async with hall_worker(env.client) as tq:
        await _start(env, tq, report("R-REG-1", 0.9, "high"))
        await _start(env, tq, report("R-REG-2", 0.1, "low"))
        await _start(env, tq, report("R-REG-3", 0.1, "low", level=Level.YELLOW))

    register = RiskActivities(sqlite_store.engine, None)
    assert [r.risk_no for r in register.register(level="red")] == ["R-REG-1"]
    assert [r.risk_no for r in register.register(department="market-regulation", level="yellow")] == ["R-REG-3"]
    assert len(register.register(department="market-regulation")) == 3


async def test_an_overdue_case_raises_one_risk_for_its_department(env, hall_worker, catalog, sqlite_store):
    from tests.builders import application, start_case
    from workflows.case import CaseWorkflow

    app = application(catalog["enterprise-opening"])
    async with hall_worker(env.client) as tq:
        case = await start_case(env.client, app, tq)
        await wait_status(case, lambda s: s.reviewer is not None)
        # Promised 1 working day: due Tue 01-06 24:00; nobody reviews it.
        await travel_to(env, datetime(2099, 1, 6, 16, 1, tzinfo=timezone.utc))
        await eventually(lambda: "risk_raised" in [e.action for e in sqlite_store.audit_trail("case", app.case_no)])
        risk = env.client.get_workflow_handle(risk_workflow_id(f"case-{app.case_no}"))
        status = await wait_status(risk, lambda s: s.due_at is not None, query=RiskWorkflow.status)
        await travel_to(env, datetime(2099, 1, 9, 2, tzinfo=timezone.utc))
        await case.query(CaseWorkflow.status)

    assert status.entry.source == "overdue_case" and status.entry.case_no == app.case_no
    assert status.entry.level == Level.YELLOW and status.entry.responsible_department == "market-regulation"
    actions = [e.action for e in sqlite_store.audit_trail("case", app.case_no)]
    assert actions.count("risk_raised") == 1 and actions.count("deadline_red") == 1
    assert [r.case_no for r in RiskActivities(sqlite_store.engine, None).register()] == [app.case_no]


@pytest.mark.parametrize(
    ("probability", "impact", "level", "ack_due", "plan_due"),
    [
        # Yellow: 1 and 5 working days from Mon 01-05 -> Tue 01-06 and Mon 01-12, 24:00.
        (0.5, "medium", Level.YELLOW, datetime(2099, 1, 6, 16, tzinfo=timezone.utc), datetime(2099, 1, 12, 16, tzinfo=timezone.utc)),
        # Blue: 3 and 10 working days -> Thu 01-08 and Mon 01-19, 24:00.
        (0.2, "low", Level.BLUE, datetime(2099, 1, 8, 16, tzinfo=timezone.utc), datetime(2099, 1, 19, 16, tzinfo=timezone.utc)),
    ],
)
async def test_yellow_and_blue_steps_met_on_the_last_working_day_do_not_escalate(
    env, hall_worker, sqlite_store, probability, impact, level, ack_due, plan_due
):
    no = f"R-{level.value}-MET"
    async with hall_worker(env.client) as tq:
        handle, opened = await _start(env, tq, report(no, probability, impact))
        await travel_to(env, ack_due - HOUR)
        await handle.execute_update(RiskWorkflow.acknowledge, Acknowledge(officer="officer-li", group="g"))
        planning = await wait_status(
            handle, lambda s: s.entry.state == RiskState.AWAITING_PLAN and s.due_at is not None, query=RiskWorkflow.status
        )
        await travel_to(env, plan_due - HOUR)
        await handle.execute_update(
            RiskWorkflow.submit_plan, SubmitPlan(officer="officer-li", plan="p", due=plan_due + timedelta(days=5))
        )
        handling = await wait_status(handle, lambda s: s.entry.state == RiskState.HANDLING, query=RiskWorkflow.status)

    assert opened.entry.level == level and opened.due_at == ack_due
    assert planning.due_at == plan_due
    assert handling.entry.level == level and handling.entry.escalations == 0
    assert "step_missed" not in _actions(sqlite_store, no)
