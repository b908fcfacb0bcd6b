"""A case number names one case: a second workflow run under the same number fails cleanly and
leaves the first one's case as it was (the store's unique case number, tests/test_store.py)."""

import asyncio

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError

from contract.case import CaseStage
from tests.builders import TUESDAY_BEFORE_NATIONAL_DAY, application, start_case, wait_status
from tests.temporal_fixtures import travel_to


async def test_a_second_run_under_a_registered_case_number_fails_and_the_case_stays_the_first_runs(
    env, hall_worker, catalog, sqlite_store
):
    await travel_to(env, TUESDAY_BEFORE_NATIONAL_DAY)
    app = application(catalog["enterprise-opening"])
    async with hall_worker(env.client) as tq:
        first = await start_case(env.client, app, tq)
        await wait_status(first, lambda s: s.stage == CaseStage.AWAITING_REVIEW)
        # Someone ends the run by hand and starts the number again (the id reuse policy allows it).
        await first.terminate("operator error")
        second = await start_case(env.client, app.model_copy(update={"clerk": "clerk-02"}), tq)
        with pytest.raises(WorkflowFailureError) as failed:
            await asyncio.wait_for(second.result(), timeout=30)  # before the fix: a second case ran on

    # The run fails with the store's refusal (through the activity that was refused, or as is).
    refusal = failed.value.cause.cause if isinstance(failed.value.cause, ActivityError) else failed.value.cause
    assert isinstance(refusal, ApplicationError) and refusal.type == "CaseNumberTaken" and refusal.non_retryable
    assert app.case_no in refusal.message
    row = sqlite_store.case_row(app.case_no)
    assert (row["run_id"], row["clerk"], row["stage"]) == (first.result_run_id, "clerk-01", "awaiting_review")
    assert [e.action for e in sqlite_store.audit_trail("case", app.case_no)] == [
        "received", "accepted", "review_requested"
    ]
