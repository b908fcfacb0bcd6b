"""好差评: one rating per case within the window after its end; a bad review starts its rectification."""

from datetime import datetime, timedelta, timezone

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError

from contract.case import CaseStage
from contract.rating import Rate
from tests.builders import application, eventually, start_case, wait_status
from tests.temporal_fixtures import TEST_EPOCH, travel_to
from workflows.case import CaseWorkflow

# Automatic matter: approved at TEST_EPOCH (Mon 2099-01-05); the 5-working-day rating window
# (the default policy) runs Tue 01-06 .. Mon 01-12 and closes at 24:00 +08:00 that day.
WINDOW_CLOSES = datetime(2099, 1, 12, 16, tzinfo=timezone.utc)


async def _ended(env, hall_worker_tq, catalog):
    app = application(catalog["housing-fund-withdrawal"])
    handle = await start_case(env.client, app, hall_worker_tq)
    status = await wait_status(handle, lambda s: s.rating_open_until is not None)
    return app, handle, status


async def _refusal(handle, rate: Rate) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await handle.execute_update(CaseWorkflow.rate, rate)
    return str(err.value.cause)


async def test_a_good_rating_is_recorded_once_without_the_raters_identity(env, hall_worker, catalog, sqlite_store):
    async with hall_worker(env.client) as tq:
        app, handle, ended = await _ended(env, tq, catalog)
        rated = await handle.execute_update(CaseWorkflow.rate, Rate(score=5, comment="很快", channel="app"))
        outcome = await handle.result()
        # Rated: the case has nothing left to do and has completed; a second rating finds it closed.
        with pytest.raises((WorkflowUpdateFailedError, RPCError)):
            await handle.execute_update(CaseWorkflow.rate, Rate(score=1, channel="app"))
        desc = await handle.describe()

    assert ended.stage == CaseStage.APPROVED and ended.rating_open_until == WINDOW_CLOSES
    invites = [n for n in sqlite_store.notices(app.case_no) if n.kind == "rating_invited"]
    assert [n.recipient for n in invites] == [f"applicant:{app.applicant.applicant_id}"]
    assert rated.rating == 5 and outcome.rating == 5
    (rating,) = sqlite_store.ratings()
    assert (rating.case_no, rating.score, rating.department, rating.channel) == (
        app.case_no, 5, "housing-fund-center", "app"
    )
    assert app.applicant.applicant_id not in rating.model_dump_json()
    assert app.applicant.applicant_id not in str(desc.typed_search_attributes)
    (entry,) = [e for e in sqlite_store.audit_trail("case", app.case_no) if e.action == "rated"]
    assert entry.details == {"score": 5, "bad": False, "channel": "app"}
    # A good rating needs no rectification; the case completes at the end of its window.
    assert abs(outcome.closed_at - TEST_EPOCH) < timedelta(seconds=5)
    with pytest.raises(RPCError):
        await env.client.get_workflow_handle(f"rectification-{app.case_no}").describe()


async def test_a_bad_rating_starts_the_rectification_of_the_department_that_handled_the_case(
    env, hall_worker, catalog, sqlite_store
):
    async with hall_worker(env.client) as tq:
        app, handle, _ = await _ended(env, tq, catalog)
        rated = await handle.execute_update(CaseWorkflow.rate, Rate(score=2, comment="等了很久", channel="window"))
        await eventually(lambda: "rectification_started" in [e.action for e in sqlite_store.audit_trail("case", app.case_no)])
        rectification = await env.client.get_workflow_handle(f"rectification-{app.case_no}").describe()

    assert rated.rating == 2
    assert rectification.workflow_type == "RectificationWorkflow"
    (rating,) = sqlite_store.ratings(department=catalog["housing-fund-withdrawal"].lead_department)
    assert rating.bad


async def test_no_rating_before_the_end_or_after_the_window(env, hall_worker, catalog, sqlite_store):
    async with hall_worker(env.client) as tq:
        open_case = await start_case(env.client, application(catalog["enterprise-opening"]), tq)
        await wait_status(open_case, lambda s: s.stage == CaseStage.AWAITING_REVIEW)
        too_early = await _refusal(open_case, Rate(score=4, channel="web"))

        app, handle, _ = await _ended(env, tq, catalog)
        await travel_to(env, WINDOW_CLOSES - timedelta(minutes=1))
        still_open = await handle.query(CaseWorkflow.status)
        await travel_to(env, WINDOW_CLOSES + timedelta(minutes=1))
        outcome = await handle.result()
        with pytest.raises(RPCError):  # the window closed and the case completed
            await handle.execute_update(CaseWorkflow.rate, Rate(score=4, channel="web"))

    assert too_early.startswith("RatingClosed") and "its rating window opens once it has ended" in too_early
    assert still_open.rating_open_until == WINDOW_CLOSES
    assert outcome.rating is None
    trail = sqlite_store.audit_trail("case", app.case_no)
    assert trail[-1].action == "rating_window_closed" and abs(trail[-1].at - WINDOW_CLOSES) < timedelta(seconds=1)


async def test_malformed_ratings_are_refused_with_the_field_named(env, hall_worker, catalog):
    async with hall_worker(env.client) as tq:
        _, handle, _ = await _ended(env, tq, catalog)
        with pytest.raises(WorkflowUpdateFailedError) as score:
            await handle.execute_update("rate", {"score": 6, "channel": "app"})
        with pytest.raises(WorkflowUpdateFailedError) as channel:
            await handle.execute_update("rate", {"score": 3})
        accepted = await handle.execute_update(CaseWorkflow.rate, Rate(score=3, channel="kiosk"))

    assert "score" in str(score.value.cause) and "channel" in str(channel.value.cause)
    assert accepted.rating == 3


async def test_a_rectification_already_started_by_hand_does_not_fail_the_case(env, hall_worker, catalog, sqlite_store):
    from tests.test_rectification import order
    from workflows.rectification import RectificationWorkflow

    async with hall_worker(env.client) as tq:
        app, handle, _ = await _ended(env, tq, catalog)
        await env.client.start_workflow(
            RectificationWorkflow.run, order(app.case_no), id=f"rectification-{app.case_no}", task_queue=tq
        )
        await handle.execute_update(CaseWorkflow.rate, Rate(score=1, channel="web"))
        outcome = await handle.result()

    assert outcome.stage == CaseStage.APPROVED and outcome.rating == 1
    assert "rectification_already_open" in [e.action for e in sqlite_store.audit_trail("case", app.case_no)]
