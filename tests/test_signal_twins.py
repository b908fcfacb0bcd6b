"""Signal twins: `<update>_signal` applies the Update's payload exactly as the Update would, and an
invalid one is refused into the audit trail and `status`, never failing the workflow."""

from temporalio.client import WorkflowExecutionStatus

from contract.approval import Review, Vote
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
        # The row is written by an activity a moment after the stage shows: wait while the worker runs.
        reviewed = await eventually(lambda: [e for e in sqlite_store.audit_trail("case", app.case_no) if e.action == "reviewed"])

    assert status.stage == CaseStage.APPROVED
    assert status.refused_signals == []
    assert [(e.actor, e.reason) for e in reviewed] == [(matter.reviewers[0], "材料齐全")]


async def test_invalid_twins_are_refused_recorded_and_the_case_goes_on(env, hall_worker, catalog, sqlite_store):
    matter = catalog["social-insurance-transfer"]
    app = application(matter)
    async with hall_worker(env.client) as tq:
        handle = await start_case(env.client, app, tq)
        await wait_status(handle, lambda s: s.stage == CaseStage.AWAITING_REVIEW)
        # officer-lin may review this matter, but the case is assigned to officer-huang.
        await handle.signal("review_signal", Review(reviewer="officer-lin", decision="approve"))
        await handle.signal("review_signal", {"reviewer": matter.reviewers[0], "decision": "maybe"})
        await handle.signal("review_signal", "approve")
        await handle.signal("approve_signal", {"reviewer": matter.reviewers[0]})
        # A panel member the directory knows, voting while the case awaits its review.
        await handle.signal("vote_signal", Vote(member="officer-zhao", choice="approve"))
        # Someone the directory does not know: refused before the reviewer is looked at.
        await handle.signal("review_signal", Review(reviewer="officer-nobody", decision="approve"))
        status = await wait_status(handle, lambda s: len(s.refused_signals) == 6)
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
        ("review_signal", "UnknownActor"),
    }
    reasons = [r.reason for r in status.refused_signals]
    assert f"assigned to {matter.reviewers[0]}" in reasons[0]
    assert "decision" in reasons[1] and "invalid Review" in reasons[1]
    assert "review_signal" in reasons[3] and "signal twins here" in reasons[3]
    assert "officer-nobody is not in the organisation directory" in reasons[5]
    assert status.stage == CaseStage.APPROVED
    assert described.status == WorkflowExecutionStatus.RUNNING  # open for its rating, not failed
    audit = await eventually(
        lambda: [e for e in sqlite_store.audit_trail("case", app.case_no) if e.action == "signal_refused"]
    )
    assert [(e.actor, e.details["signal"], e.details["error"]) for e in audit][:2] == [
        ("officer-lin", "review_signal", "NotReviewer"),  # the proven sender
        ("applicant", "review_signal", "InvalidPayload"),
    ]
    assert len(audit) == 6


async def test_a_flood_of_bad_twins_is_counted_not_audited_without_end(env, hall_worker, catalog, sqlite_store):
    from workflows.twins import AUDIT_REFUSALS

    app = application(catalog["social-insurance-transfer"])
    async with hall_worker(env.client) as tq:
        handle = await start_case(env.client, app, tq)
        await wait_status(handle, lambda s: s.stage == CaseStage.AWAITING_REVIEW)
        members = ["officer-zhao", "officer-chen", "officer-sun", "officer-zheng", "officer-feng", "officer-he"]
        for n in range(AUDIT_REFUSALS + 20):
            # Known panel members (so each gets past who-may-act), voting at the wrong stage.
            await handle.signal("vote_signal", Vote(member=members[n % len(members)], choice="approve"))
        status = await wait_status(handle, lambda s: s.refused_signal_count == AUDIT_REFUSALS + 20, timeout=60)

        def refusals():
            return [e for e in sqlite_store.audit_trail("case", app.case_no) if e.action == "signal_refused"]

        audited = await eventually(lambda: len(refusals()) >= AUDIT_REFUSALS and refusals(), timeout=60)

    assert status.refused_signal_count == AUDIT_REFUSALS + 20
    assert len(status.refused_signals) == 20 and status.refused_signals[-1].reason.startswith("case")
    assert len(audited) == AUDIT_REFUSALS
    assert "later ones are only counted" in audited[-1].reason
