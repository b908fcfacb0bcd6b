"""Signal twins: `<update>_signal` applies the Update's payload exactly as the Update would, and an
invalid one is refused into the audit trail and `status`, never failing the workflow."""

from temporalio.client import WorkflowExecutionStatus

from contract.approval import Review
from contract.case import CaseStage
from tests.builders import application, eventually, start_case, wait_status
from workflows.case import CaseWorkflow


async def test_a_valid_twin_is_applied_like_the_update(env, hall_worker, catalog, sqlite_store):
    matter = catalog["social-insurance-transfer"]
    app = application(matter)
    async with hall_worker(env.client) as tq:
        handle = await start_case(env.client, app, tq)
        await wait_status(handle, lambda s: s.stage == CaseStage.AWAITING_REVIEW)
        review = Review(reviewer=matter.reviewers[0], decision="approve", opinion="材料齐全")
        await handle.signal("review_signal", review)
        status = await wait_status(handle, lambda s: s.stage.is_final)

    assert status.stage == CaseStage.APPROVED
    assert status.refused_signals == []
    reviewed = [e for e in sqlite_store.audit_trail("case", app.case_no) if e.action == "reviewed"]
    assert [(e.actor, e.reason) for e in reviewed] == [(matter.reviewers[0], "材料齐全")]


async def test_invalid_twins_are_refused_recorded_and_the_case_goes_on(env, hall_worker, catalog, sqlite_store):
    matter = catalog["social-insurance-transfer"]
    app = application(matter)
    async with hall_worker(env.client) as tq:
        handle = await start_case(env.client, app, tq)
        await wait_status(handle, lambda s: s.stage == CaseStage.AWAITING_REVIEW)
        await handle.signal("review_signal", Review(reviewer="someone-else", decision="approve"))
        await handle.signal("review_signal", {"reviewer": matter.reviewers[0], "decision": "maybe"})
        await handle.signal("review_signal", "approve")
        await handle.signal("approve_signal", {"reviewer": matter.reviewers[0]})
        await handle.signal("vote_signal", {"member": "m1", "choice": "approve"})
        status = await wait_status(handle, lambda s: len(s.refused_signals) == 5)
        # Nothing was applied, and the Update still works afterwards.
        assert status.stage == CaseStage.AWAITING_REVIEW
        await handle.execute_update(CaseWorkflow.review, Review(reviewer=matter.reviewers[0], decision="approve"))
        status = await wait_status(handle, lambda s: s.stage.is_final)
        described = await handle.describe()

    refused = {(r.signal, r.error) for r in status.refused_signals}
    assert refused == {
        ("review_signal", "NotReviewer"),
        ("review_signal", "InvalidPayload"),
        ("approve_signal", "UnknownSignal"),
        ("vote_signal", "WrongStage"),
    }
    reasons = [r.reason for r in status.refused_signals]
    assert f"assigned to {matter.reviewers[0]}" in reasons[0]
    assert "decision" in reasons[1] and "invalid Review" in reasons[1]
    assert "review_signal" in reasons[3] and "signal twins here" in reasons[3]
    assert status.stage == CaseStage.APPROVED
    assert described.status == WorkflowExecutionStatus.RUNNING  # open for its rating, not failed
    audit = await eventually(
        lambda: [e for e in sqlite_store.audit_trail("case", app.case_no) if e.action == "signal_refused"]
    )
    assert [(e.actor, e.details["signal"], e.details["error"]) for e in audit][:2] == [
        ("signal", "review_signal", "NotReviewer"),
        ("signal", "review_signal", "InvalidPayload"),
    ]
    assert len(audit) == 5


async def test_a_flood_of_bad_twins_is_counted_not_audited_without_end(env, hall_worker, catalog, sqlite_store):
    from workflows.twins import AUDIT_REFUSALS

    app = application(catalog["social-insurance-transfer"])
    async with hall_worker(env.client) as tq:
        handle = await start_case(env.client, app, tq)
        await wait_status(handle, lambda s: s.stage == CaseStage.AWAITING_REVIEW)
        for n in range(AUDIT_REFUSALS + 20):
            await handle.signal("vote_signal", {"member": f"m{n}", "choice": "approve"})
        status = await wait_status(handle, lambda s: s.refused_signal_count == AUDIT_REFUSALS + 20, timeout=60)

        def refusals():
            return [e for e in sqlite_store.audit_trail("case", app.case_no) if e.action == "signal_refused"]

        audited = await eventually(lambda: len(refusals()) >= AUDIT_REFUSALS and refusals(), timeout=60)

    assert status.refused_signal_count == AUDIT_REFUSALS + 20
    assert len(status.refused_signals) == 20 and status.refused_signals[-1].reason.startswith("case")
    assert len(audited) == AUDIT_REFUSALS
    assert "later ones are only counted" in audited[-1].reason
