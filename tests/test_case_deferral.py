"""容缺受理 + 告知承诺: deferred materials, their working-day deadline, reminder and termination."""

from datetime import datetime, timedelta, timezone

from contract.case import CaseStage, SupplementMaterials
from tests.builders import WEDNESDAY_BEFORE_NATIONAL_DAY, application, eventually, start_case, wait_status
from tests.temporal_fixtures import travel_to
from workflows.case import CaseWorkflow

# Real-estate registration: deferral 3 working days, promised 5. Accepted Wed 09-30 (test 2099
# calendar = 2026's arrangement): 10-01..10-07 are off, 10-08, 10-09 and the make-up Saturday
# 10-10 are working days 1..3, then 10-12, 10-13.
DEFERRED = ("cadastral-survey-report", "marital-status-proof")
DEFERRAL_DUE = datetime(2099, 10, 10, 16, tzinfo=timezone.utc)  # Sat 10-10 24:00 +08:00
REMIND_AT = datetime(2099, 10, 9, 16, tzinfo=timezone.utc)  # one working day before
PROMISED_DUE = datetime(2099, 10, 13, 16, tzinfo=timezone.utc)


async def _wait_deferral(handle):
    """Accepted with deferral: the route has started and materials are still owed."""
    return await wait_status(handle, lambda s: s.missing_materials and s.stage not in (CaseStage.RECEIVED, CaseStage.ACCEPTED))


async def test_deferral_deadline_counts_working_days_across_national_day(env, hall_worker, catalog, sqlite_store):
    await travel_to(env, WEDNESDAY_BEFORE_NATIONAL_DAY)
    app = application(catalog["real-estate-registration"], without=DEFERRED, signed=True)
    async with hall_worker(env.client) as tq:
        handle = await start_case(env.client, app, tq)
        status = await _wait_deferral(handle)
        notice = (await eventually(lambda: sqlite_store.notices(app.case_no)))[0]

    assert status.deferral_due_at == DEFERRAL_DUE
    assert status.promised_due_at == PROMISED_DUE
    assert status.missing_materials == sorted(DEFERRED)
    assert notice.kind == "deferral_accepted" and "2099-10-10" in notice.body


async def test_supplemented_materials_let_the_case_proceed(env, hall_worker, catalog, sqlite_store):
    await travel_to(env, WEDNESDAY_BEFORE_NATIONAL_DAY)
    app = application(catalog["real-estate-registration"], without=DEFERRED, signed=True)
    async with hall_worker(env.client) as tq:
        handle = await start_case(env.client, app, tq)
        await _wait_deferral(handle)
        first = await handle.execute_update(
            CaseWorkflow.supplement_materials,
            SupplementMaterials(materials=["marital-status-proof"], submitted_by="clerk-02"),
        )
        assert first.still_missing == ["cadastral-survey-report"] and not first.complete
        second = await handle.execute_update(
            CaseWorkflow.supplement_materials,
            SupplementMaterials(materials=["cadastral-survey-report"], submitted_by="clerk-02"),
        )
        assert second.complete
        # Past the deadline nothing happens any more: the commitment was kept.
        await env.sleep(DEFERRAL_DUE - await env.get_current_time() + timedelta(days=1))
        status = await handle.query(CaseWorkflow.status)

    # Still with the departments consulted in parallel (taxation), not terminated.
    assert status.stage == CaseStage.CONSULTING and status.missing_materials == []
    actions = [e.action for e in sqlite_store.audit_trail("case", app.case_no)]
    assert actions.count("materials_supplemented") == 2
    assert "materials_complete" in actions and "terminated" not in actions


async def test_reminder_goes_out_one_working_day_before_the_deadline(env, hall_worker, catalog, sqlite_store):
    await travel_to(env, WEDNESDAY_BEFORE_NATIONAL_DAY)
    app = application(catalog["real-estate-registration"], without=DEFERRED, signed=True)
    async with hall_worker(env.client) as tq:
        handle = await start_case(env.client, app, tq)
        await _wait_deferral(handle)
        await travel_to(env, REMIND_AT - timedelta(minutes=1))
        await handle.query(CaseWorkflow.status)
        before = [n.kind for n in sqlite_store.notices(app.case_no)]
        await travel_to(env, REMIND_AT + timedelta(minutes=1))
        status = await handle.query(CaseWorkflow.status)
        while "deferral_reminded" not in [e.action for e in status.last_events]:
            status = await handle.query(CaseWorkflow.status)

    assert "deferral_reminder" not in before
    reminders = [n for n in sqlite_store.notices(app.case_no) if n.kind == "deferral_reminder"]
    assert len(reminders) == 1
    assert abs(reminders[0].at - REMIND_AT) < timedelta(seconds=1)


async def test_missed_deferral_deadline_terminates_case_and_blocks_future_deferral(env, hall_worker, catalog, sqlite_store):
    await travel_to(env, WEDNESDAY_BEFORE_NATIONAL_DAY)
    matter = catalog["real-estate-registration"]
    app = application(matter, without=DEFERRED, signed=True)
    async with hall_worker(env.client) as tq:
        handle = await start_case(env.client, app, tq)
        await _wait_deferral(handle)
        await handle.execute_update(
            CaseWorkflow.supplement_materials,
            SupplementMaterials(materials=["marital-status-proof"], submitted_by="clerk-02"),
        )
        outcome = await handle.result()
        assert outcome.stage == CaseStage.TERMINATED
        assert abs(outcome.closed_at - DEFERRAL_DUE) < timedelta(seconds=1)
        assert outcome.missing_materials == ["cadastral-survey-report"]
        assert sqlite_store.has_broken_commitment(app.applicant.applicant_id)

        # The same applicant comes back: deferral is refused, with the reason in the notice.
        again = application(matter, without=DEFERRED, signed=True, applicant_id=app.applicant.applicant_id)
        second = await (await start_case(env.client, again, tq)).result()

    assert second.stage == CaseStage.NOT_ACCEPTED and "broken commitment" in second.reason
    kinds = [n.kind for n in sqlite_store.notices(app.case_no)]
    assert kinds.count("case_terminated") == 2  # applicant and lead department
    assert "承诺失信" in sqlite_store.notices(again.case_no)[0].body


async def test_enterprise_opening_deferral_is_due_the_next_working_day(env, hall_worker, catalog):
    # Accepted Wed 09-30 before National Day: 1 working day runs to Thu 10-08 24:00.
    await travel_to(env, WEDNESDAY_BEFORE_NATIONAL_DAY)
    app = application(catalog["enterprise-opening"], without=("residence-proof",), signed=True)
    async with hall_worker(env.client) as tq:
        handle = await start_case(env.client, app, tq)
        status = await _wait_deferral(handle)
        # An hour at a time, not handle.result(): the time-skipping server cannot see a local
        # activity, and skipping freely it could fire a later timer while the termination is being
        # written (the step's writes run inside the workflow task; a real clock never jumps).
        for _ in range(24 * 10):
            ended = await handle.query(CaseWorkflow.status)
            if ended.stage.is_final:
                break
            await env.sleep(timedelta(hours=1))

    assert status.deferral_due_at == datetime(2099, 10, 8, 16, tzinfo=timezone.utc)
    assert ended.stage == CaseStage.TERMINATED
