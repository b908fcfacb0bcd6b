"""Signal twins end to end: an integrator sends every `<update>_signal`, signed, while no worker
runs (a redeploy); the server keeps them, and once worker.py is back each is applied as its Update
would be, or refused into `status.refused_signals` without harming the workflow.

They go as plain JSON from a signing client (security/sender.py), not the `temporal` CLI: the CLI
(1.9.1) takes `--headers` on `workflow signal` but does not send them (tests/test_e2e_signing.py)."""

import asyncio
import time

import pytest
from temporalio.client import Client

from activities.catalog import load_catalog
from contract.approval import Review
from contract.case import CaseStage, case_workflow_id
from tests.org_fixtures import data_converter
from contract.org import APPLICANT
from contract.rating import Rate, Verify
from contract.risk import Acknowledge, RiskReport, SubmitPlan, risk_workflow_id
from contract.schemas import ACTOR_FIELD
from security.keys import load_private
from security.sender import Signer
from settings import ROOT, get_settings
from tests.builders import application
from workflows.case import CaseWorkflow
from workflows.rectification import RectificationWorkflow
from workflows.risk import RiskWorkflow
from workflows.suggestion import SuggestionWorkflow

pytestmark = pytest.mark.e2e
CATALOG = load_catalog(ROOT / "data" / "matters.toml")


async def until(check, timeout: float = 30.0):
    """Poll an async check until it returns a truthy value (queries fail while a worker is away)."""
    end = time.monotonic() + timeout
    while True:
        try:
            value = await check()
        except Exception:  # noqa: BLE001 - not there yet: no worker, or a query timing out
            value = None
        if value or time.monotonic() > end:
            return value
        await asyncio.sleep(0.2)


ACTOR_KEYS = set(ACTOR_FIELD.values())


def signing_client(dev_server, nobody_named: str = APPLICANT) -> Client:
    """The dev server's client, signing each message with the session's system key for the actor
    it names (a twin's JSON as the worker reads it: ACTOR_FIELD), else for `nobody_named`."""

    def named(value) -> str:
        if isinstance(value, dict):
            return next((value[k] for k in ACTOR_KEYS if k in value), nobody_named)
        return nobody_named

    signer = Signer(load_private(get_settings().signing_key), named)
    plain = dev_server.client
    return Client(plain.service_client, namespace=plain.namespace, data_converter=data_converter, interceptors=[signer])


async def test_every_signal_twin_sent_while_the_worker_is_down_is_applied_once_it_is_back(hall, dev_server):
    client = signing_client(dev_server)
    run = time.time_ns()

    async def case(matter: str, without=(), signed=False):
        app = application(CATALOG[matter], without=without, signed=signed)
        handle = await client.start_workflow(CaseWorkflow.run, app, id=case_workflow_id(app.case_no), task_queue="hallflow")
        return app.case_no, handle

    async def stage(handle, wanted):
        return await until(lambda: _has_stage(handle, wanted))

    # ---- with the worker up: one workflow where each twin fits --------------------------------
    deferred_no, deferred = await case("social-insurance-transfer", without=("household-register",), signed=True)
    consulting_no, consulting = await case("real-estate-registration")
    returned_no, returned = await case("social-insurance-transfer")
    panel_no, panel = await case("enterprise-opening")
    leaving_no, leaving = await case("social-insurance-transfer")
    rated_no, rated = await case("housing-fund-withdrawal")
    bad = [await case("housing-fund-withdrawal") for _ in range(3)]
    assert await stage(returned, "awaiting_review")
    await returned.execute_update(
        CaseWorkflow.review, Review(reviewer="officer-huang", decision="return", corrections=["stamp missing"])
    )
    assert await stage(panel, "awaiting_review")
    await panel.execute_update(CaseWorkflow.review, Review(reviewer="officer-li", decision="approve"))
    for _, handle in bad:
        assert await until(lambda: _rated(handle))
    verifying, rectifying, malicious = (client.get_workflow_handle(f"rectification-{no}") for no, _ in bad)
    await until(lambda: rectifying.query(RectificationWorkflow.status))
    await rectifying.execute_update(RectificationWorkflow.verify, Verify(officer="officer-fund-1", finding="slow kiosk"))
    await until(lambda: malicious.query(RectificationWorkflow.status))
    await malicious.execute_update(
        RectificationWorkflow.verify, Verify(officer="officer-fund-1", finding="abusive, unrelated", malicious=True)
    )
    suggestions = [f"TW-{run}-S{n}" for n in (1, 2)]
    for no in suggestions:
        assert hall("feedback", "suggest", "--no", no, "--submitter-id", "c-tw", "--topic", "t", "--content", "c",
                    "--department", "market-regulation").returncode == 0
    risks = [f"TW-{run}-R{n}" for n in (1, 2, 3)]
    reporter = signing_client(dev_server, nobody_named="officer-li")  # an officer registers a risk
    for no in risks:
        report = RiskReport(risk_no=no, source="manual", type="social", title="queue", probability=0.5, impact="medium",
                            responsible_department="market-regulation", owner="officer-li")
        await reporter.start_workflow(RiskWorkflow.run, report, id=risk_workflow_id(no), task_queue="hallflow")
    r1, r2, r3 = (client.get_workflow_handle(f"risk-{no}") for no in risks)
    for handle in (r2, r3):
        await until(lambda: handle.query(RiskWorkflow.status))
        await handle.execute_update(RiskWorkflow.acknowledge, Acknowledge(officer="officer-li", group="g"))
    await until(lambda: _risk_state(r3, "awaiting_plan"))
    await r3.execute_update(
        RiskWorkflow.submit_plan, SubmitPlan(officer="officer-li", plan="marshals", due="2030-01-01T18:00:00+08:00")
    )
    for handle, wanted in ((deferred, "awaiting_review"), (consulting, "consulting"), (returned, "returned"),
                           (panel, "in_panel"), (leaving, "awaiting_review")):
        assert await stage(handle, wanted), wanted
    await until(lambda: _risk_state(r2, "awaiting_plan"))
    await until(lambda: _risk_state(r3, "handling"))
    await until(lambda: suggestion_open(client, suggestions))
    await until(lambda: r1.query(RiskWorkflow.status))
    department = CATALOG["real-estate-registration"].consult[0].department

    # ---- the redeploy: no worker; every twin goes in, signed, as the JSON an integrator sends --
    hall.stop_worker()
    twins = [
        (f"case-{deferred_no}", "supplement_materials_signal", {"materials": ["household-register"], "submitted_by": "clerk-02"}),
        (f"case-{deferred_no}", "transfer_signal", {"by": "officer-huang", "to_reviewer": "officer-lin", "reason": "leave"}),
        (f"case-{deferred_no}", "review_signal", {"reviewer": "officer-lin", "decision": "approve", "opinion": "ok"}),
        # Refused: an officer of another department may not give this one's opinion (Forbidden).
        (f"case-{consulting_no}", "department_opinion_signal", {"department": department, "officer": "officer-li", "agree": False,
                                                                 "opinion": "not ours to say"}),
        (f"case-{consulting_no}", "department_opinion_signal", {"department": department, "officer": "tax-01", "agree": True}),
        (f"case-{returned_no}", "resubmit_signal", {"materials": [], "note": "stamped", "submitted_by": "applicant"}),
        (f"case-{panel_no}", "vote_signal", {"member": "officer-zhao", "choice": "approve"}),
        (f"case-{panel_no}", "vote_signal", {"member": "officer-wang", "choice": "approve"}),  # refused: not on the panel
        (f"case-{panel_no}", "urge_signal", {"by": "hall-central", "note": "asked at the window"}),
        (f"case-{leaving_no}", "withdraw_signal", {"reason": "moved away", "requested_by": "applicant"}),
        (f"case-{rated_no}", "rate_signal", {"score": 5, "channel": "app"}),
        (f"rectification-{bad[0][0]}", "verify_signal", {"officer": "officer-fund-1", "finding": "queue"}),
        (f"rectification-{bad[1][0]}", "rectify_signal", {"officer": "officer-fund-1", "action": "a", "reply": "r"}),
        (f"rectification-{bad[2][0]}", "confirm_set_aside_signal", {"officer": "officer-fund-2", "reason": "abuse"}),
        (f"suggestion-{suggestions[0]}", "reclassify_signal", {"complexity": "complex", "reason": "law", "by": "officer-li"}),
        (f"suggestion-{suggestions[1]}", "respond_signal",
         {"department": "market-regulation", "officer": "officer-li", "adopted": True, "measures": "seats"}),
        (f"risk-{risks[0]}", "acknowledge_signal", {"officer": "officer-li", "group": "g1"}),
        (f"risk-{risks[0]}", "regrade_signal", {"level": "red", "reason": "crowd grew", "by": "officer-li"}),
        (f"risk-{risks[1]}", "submit_plan_signal", {"officer": "officer-li", "plan": "p", "due": "2030-01-01T18:00:00+08:00"}),
        (f"risk-{risks[2]}", "review_signal", {"by": "officer-li", "cause": "c", "what_worked": "w", "what_changes": "x"}),
        (f"risk-{risks[2]}", "resolve_signal", {"officer": "officer-li", "summary": "cleared"}),
    ]
    for workflow_id, name, payload in twins:
        await client.get_workflow_handle(workflow_id).signal(name, payload)
    names = {name.removesuffix("_signal") for _, name, _ in twins}
    assert names == {
        "supplement_materials", "transfer", "review", "department_opinion", "resubmit", "vote", "urge", "withdraw",
        "rate", "verify", "rectify", "confirm_set_aside", "reclassify", "respond", "acknowledge", "regrade",
        "submit_plan", "resolve",
    }  # every Update of every workflow (review: the case's and the risk's)

    # ---- the worker is back: each applied as its Update would be -----------------------------
    hall.start_worker()
    done = await stage(deferred, "approved")
    assert done.reviewer == "officer-lin" and done.missing_materials == []
    opinion = await until(lambda: _check(consulting, lambda s: s.consultations[0].state != "pending"))
    assert [c.state for c in opinion.consultations if c.department == department] == ["agreed"]
    assert [(r.signal, r.error) for r in opinion.refused_signals] == [("department_opinion_signal", "Forbidden")]
    assert "officer-li may not give" in opinion.refused_signals[0].reason
    assert await stage(returned, "awaiting_review")
    voted = await until(lambda: _check(panel, lambda s: s.refused_signals and any(e.action == "urged" for e in s.last_events)))
    assert [v.member for v in voted.votes] == ["officer-zhao"]
    assert [(r.signal, r.error) for r in voted.refused_signals] == [("vote_signal", "NotPanelMember")]
    assert "not on the panel" in voted.refused_signals[0].reason
    assert await stage(leaving, "withdrawn")
    assert (await until(lambda: _check(rated, lambda s: s.rating == 5))).rating == 5
    feedback = {
        verifying: "rectifying", rectifying: "rectified", malicious: "set_aside",
    }
    for handle, wanted in feedback.items():
        assert await until(lambda: _feedback(handle, RectificationWorkflow.status, wanted)), wanted
    s1, s2 = (client.get_workflow_handle(f"suggestion-{no}") for no in suggestions)
    assert await until(lambda: _check(s1, lambda s: s.complexity == "complex", SuggestionWorkflow.status))
    assert await until(lambda: _feedback(s2, SuggestionWorkflow.status, "answered"))
    first = await until(lambda: _check(r1, lambda s: s.entry.level == "red" and s.entry.state == "awaiting_plan", RiskWorkflow.status))
    assert first and first.refused_signals == []
    assert await until(lambda: _risk_state(r2, "handling"))
    assert await until(lambda: _risk_state(r3, "resolved"))
    refusals = [e for e in hall.store.audit_trail("case", panel_no) if e.action == "signal_refused"]
    assert [(e.actor, e.details["error"]) for e in refusals] == [("officer-wang", "NotPanelMember")]
    refusals = [e for e in hall.store.audit_trail("case", consulting_no) if e.action == "signal_refused"]
    assert [(e.actor, e.details["error"]) for e in refusals] == [("officer-li", "Forbidden")]


async def _check(handle, check, query=CaseWorkflow.status):
    status = await handle.query(query)
    return status if check(status) else None


async def _has_stage(handle, wanted):
    return await _check(handle, lambda s: s.stage == wanted)


async def _rated(handle):
    status = await handle.query(CaseWorkflow.status)
    if status.rating is None and status.rating_open_until is not None:
        await handle.execute_update(CaseWorkflow.rate, Rate(score=1, channel="app"))
        return True
    return status.rating is not None


async def _feedback(handle, query, wanted):
    return await _check(handle, lambda s: s.stage == wanted, query)


async def _risk_state(handle, wanted):
    return await _check(handle, lambda s: s.entry.state == wanted, RiskWorkflow.status)


async def suggestion_open(client, numbers):
    for no in numbers:
        status = await client.get_workflow_handle(f"suggestion-{no}").query(SuggestionWorkflow.status)
        if status.due_at is None:
            return False
    return True


async def test_every_history_this_dev_server_holds_replays_under_todays_code(dev_server, hall):
    """The recorded baseline comes from the time-skipping server; this replays what a real dev
    server wrote (update-with-start, twins, children, summaries) for every workflow type here."""
    from temporalio.worker import Replayer

    from worker import INTERCEPTORS, WORKFLOWS

    client = dev_server.client
    types = set()
    async for wf in client.list_workflows():
        types.add(wf.workflow_type)
    assert {"CaseWorkflow", "RectificationWorkflow", "SuggestionWorkflow", "RiskWorkflow"} <= types
    # The guard loads the directory (a local activity) and proves each message: replay runs it too.
    replayer = Replayer(workflows=WORKFLOWS, data_converter=data_converter, interceptors=INTERCEPTORS)
    results = await replayer.replay_workflows(client.list_workflows().map_histories(), raise_on_replay_failure=False)
    assert results.replay_failures == {}
