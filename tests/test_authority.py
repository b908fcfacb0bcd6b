"""Who may act, through a real worker: the directory's rule for each step, the proof of who sent a
message, directory changes reaching a running case, and each refusal in the audit trail."""

import base64
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, OutboundInterceptor, StartWorkflowUpdateInput, WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.client import Interceptor as ClientInterceptor
from temporalio.common import RawValue
from temporalio.worker import Replayer

from activities.org import DirectoryError, load_directory
from contract.approval import DepartmentOpinion, Review, Transfer, Urge
from contract.assertion import HEADER, MAX_LIFETIME, ActorAssertion, format_instant, payload_digest, signed_text
from contract.schemas import actor_named
from tests.temporal_fixtures import TEST_EPOCH
from contract.case import CaseStage, case_workflow_id
from tests.org_fixtures import data_converter
from contract.org import DirectoryChange
from contract.rating import ConfirmSetAside, RectificationStage, Rectify, Verify
from contract.risk import Acknowledge, Level, Regrade, Resolve, RiskReviewRecord, RiskState, SubmitPlan, risk_workflow_id
from contract.suggestion import Reclassify, Respond
from security.keys import add_public_key, load_private, new_key
from security.sender import Signer
from security.signing import header_value, sign
from settings import ROOT, get_settings
from tests.builders import application, eventually, start_case, wait_status
from tests.org_fixtures import PUBLIC_KEYS
from worker import INTERCEPTORS, WORKFLOWS
from workflows.case import CaseWorkflow
from workflows.rectification import RectificationWorkflow
from workflows.risk import RiskWorkflow
from workflows.suggestion import SuggestionWorkflow


async def refusal(call) -> tuple[str, str]:
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await call
    return err.value.cause.type, err.value.cause.message


def client_with(env, *interceptors) -> Client:
    return Client(env.client.service_client, namespace=env.client.namespace, data_converter=data_converter,
                  interceptors=list(interceptors))


def refused_rows(store, subject_type: str, subject_id: str) -> list[tuple[str, str]]:
    return [(e.actor, e.details.get("error")) for e in store.audit_trail(subject_type, subject_id) if e.action == "refused"]


def refused_keys(store, subject_type: str, subject_id: str) -> list[str | None]:
    """Which key signed each refused message, as its `refused` row says (None: not proven)."""
    return [e.signed_with for e in store.audit_trail(subject_type, subject_id) if e.action == "refused"]


CLI_KEY_ID = load_private(get_settings().signing_key).id  # the test system key (tests/org_fixtures.py)


def signed_as(env, actor: str, key=None) -> Client:
    """A client whose every message is signed for `actor` (with the test system key, or `key`)."""
    signer = Signer(key or load_private(get_settings().signing_key), actor)
    signer.clock = env.get_current_time
    return client_with(env, signer)


async def case_awaiting_review(env, tq, catalog, matter="enterprise-opening"):
    app = application(catalog[matter])
    handle = await start_case(env.client, app, tq)
    await wait_status(handle, lambda s: s.stage in (CaseStage.AWAITING_REVIEW, CaseStage.CONSULTING))
    return app, handle


# ---- the directory file ---------------------------------------------------------------------------


def test_the_shipped_directory_covers_the_catalog(catalog):
    directory = load_directory(ROOT / "data" / "org.toml", None, catalog)
    assert directory.require_assertions
    assert {o.id for o in directory.officers} >= {r for m in catalog.values() for r in m.reviewers}


def test_a_bad_directory_names_the_file_the_entry_and_the_field(tmp_path: Path, catalog):
    text = (ROOT / "data" / "org.toml").read_text(encoding="utf-8")
    text = text.replace('id = "tax-01"\ndepartment = "taxation"\nroles = ["department_officer"]',
                        'id = "tax-01"\ndepartment = "taxation"\nroles = ["tax_collector"]')
    text = text.replace('id = "officer-wang"\ndepartment = "market-regulation"', 'id = "officer-wang"\ndepartment = "market"')
    bad = tmp_path / "org.toml"
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(DirectoryError) as err:
        load_directory(bad, None, catalog)
    said = str(err.value)
    assert f"{bad}: officer 'tax-01', field roles.0" in said
    # Shape first: a cross check (no such department, the catalog's reviewer) waits for a valid file.
    text = text.replace('roles = ["tax_collector"]', 'roles = ["department_officer"]')
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(DirectoryError) as err:
        load_directory(bad, None, catalog)
    assert f"{bad}: officer 'officer-wang', field department: no department 'market'" in str(err.value)


def test_every_escalation_rank_of_risk_toml_has_a_holder(tmp_path: Path, catalog):
    """data/risk.toml's chains name ranks; a missed risk step tells the next one. A rank nobody in
    post holds would tell nobody: the directory check names the file, the entry and the field."""
    org, risk = ROOT / "data" / "org.toml", ROOT / "data" / "risk.toml"
    load_directory(org, None, catalog, risk)  # the shipped files agree
    text = risk.read_text(encoding="utf-8").replace(
        'chain = ["head:{department}", "office:deputy-director", "office:director"]',
        'chain = ["head:{department}", "office:vice-mayor", "office:director"]\n'
        '[chains]\ntaxation = ["head:taxation", "office:tax-bureau-director"]\nmarket = ["office:director"]')
    bad_risk = tmp_path / "risk.toml"
    bad_risk.write_text(text, encoding="utf-8")
    bad_org = tmp_path / "org.toml"  # the taxation head has left: no head:taxation
    bad_org.write_text(org.read_text(encoding="utf-8").replace(
        'id = "tax-head"\ndepartment = "taxation"\nroles = ["department_head"]',
        'id = "tax-head"\ndepartment = "taxation"\nroles = ["department_head"]\nleft_after = 2020-01-01'), encoding="utf-8")
    with pytest.raises(DirectoryError) as err:
        load_directory(bad_org, None, catalog, bad_risk)
    assert err.value.problems == [
        f"{bad_risk}: chains.market: department 'market' is not in {bad_org}",
        f"{bad_risk}: chain[1] 'office:vice-mayor': no officer in post lists it in the field ranks (nor has it as id) in {bad_org}",
        f"{bad_risk}: chains.taxation[0] 'head:taxation': no officer of 'taxation' in post has the role department_head in {bad_org}",
        f"{bad_risk}: chains.taxation[1] 'office:tax-bureau-director': no officer in post lists it in the field ranks "
        f"(nor has it as id) in {bad_org}",
    ]
    # Without the rank the default chain's first entry names, per department.
    without_head = org.read_text(encoding="utf-8").replace(
        'id = "cad-01"\ndepartment = "civil-air-defense"\nroles = ["department_officer", "department_head"]',
        'id = "cad-01"\ndepartment = "civil-air-defense"\nroles = ["department_officer"]')
    bad_org.write_text(without_head, encoding="utf-8")
    with pytest.raises(DirectoryError) as err:
        load_directory(bad_org, None, catalog, risk)
    assert err.value.problems == [
        f"{risk}: chain[0] 'head:{{department}}' ('head:civil-air-defense' for department 'civil-air-defense'): "
        f"no officer of 'civil-air-defense' in post has the role department_head in {bad_org}"]


def test_the_worker_does_not_start_when_a_rank_has_no_holder(tmp_path: Path):
    import os
    import subprocess
    import sys

    bad = tmp_path / "risk.toml"
    bad.write_text((ROOT / "data" / "risk.toml").read_text(encoding="utf-8").replace(
        '"office:deputy-director"', '"office:vice-mayor"'), encoding="utf-8")
    env = {**os.environ, "HALLFLOW_RISK_FILE": str(bad), "HALLFLOW_DATABASE_URL": f"sqlite:///{tmp_path / 'h.db'}"}
    ran = subprocess.run([sys.executable, "worker.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 1
    assert f"{bad}: chain[1] 'office:vice-mayor': no officer in post lists it in the field ranks" in ran.stderr


# ---- each step's rule ------------------------------------------------------------------------------


async def test_a_clerk_of_another_hall_cannot_accept_a_case(env, hall_worker, catalog, sqlite_store):
    app = application(catalog["social-insurance-transfer"]).model_copy(update={"clerk": "clerk-north-01"})
    async with hall_worker(env.client) as tq:
        handle = await start_case(env.client, app, tq)
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
    assert failed.value.cause.type == "Forbidden"
    assert "clerk-01" in failed.value.cause.message  # who may: hall-central's clerks
    assert refused_rows(sqlite_store, "case", app.case_no) == [("clerk-north-01", "Forbidden")]
    assert sqlite_store.case_row(app.case_no) is None  # nothing else written


async def test_an_opinion_comes_from_the_consulted_department_only(env, hall_worker, catalog, sqlite_store):
    async with hall_worker(env.client) as tq:
        app, handle = await case_awaiting_review(env, tq, catalog, "real-estate-registration")
        other = handle.execute_update(CaseWorkflow.department_opinion,
                                      DepartmentOpinion(department="taxation", officer="officer-zhou", agree=True))
        kind, said = await refusal(other)
        assert kind == "Forbidden" and "tax-01" in said
        stranger = handle.execute_update(CaseWorkflow.department_opinion,
                                         DepartmentOpinion(department="taxation", officer="officer-nobody", agree=True))
        assert (await refusal(stranger))[0] == "UnknownActor"
        await handle.execute_update(CaseWorkflow.department_opinion,
                                    DepartmentOpinion(department="taxation", officer="tax-01", agree=True))
        await eventually(lambda: len(refused_rows(sqlite_store, "case", app.case_no)) == 2)
    assert sorted(refused_rows(sqlite_store, "case", app.case_no)) == [
        ("officer-nobody", "UnknownActor"), ("officer-zhou", "Forbidden")]
    opinion = next(e for e in sqlite_store.audit_trail("case", app.case_no) if e.action == "department_opinion")
    assert opinion.actor == "tax-01" and opinion.signed_with.startswith("hallflow-cli/")


async def test_urge_comes_from_the_applicant_the_hall_or_a_supervisor(env, hall_worker, catalog):
    async with hall_worker(env.client) as tq:
        _, handle = await case_awaiting_review(env, tq, catalog, "social-insurance-transfer")
        kind, said = await refusal(handle.execute_update(CaseWorkflow.urge, Urge(by="officer-zhou")))
        assert kind == "Forbidden" and "applicant" in said and "hall-supervisor" in said
        await handle.execute_update(CaseWorkflow.urge, Urge(by="hall-supervisor"))


async def test_a_rectification_is_the_responsible_departments(env, hall_worker, sqlite_store):
    from tests.test_rectification import order

    o = order(f"AUTH-{uuid.uuid4().hex[:6]}")
    async with hall_worker(env.client) as tq:
        handle = await env.client.start_workflow(RectificationWorkflow.run, o, id=f"rectification-{o.case_no}",
                                                 task_queue=tq, execution_timeout=timedelta(days=60))
        await wait_status(handle, lambda s: s.due_at is not None, query=RectificationWorkflow.status)
        kind, _ = await refusal(handle.execute_update(RectificationWorkflow.verify, Verify(officer="officer-zhou", finding="x")))
        assert kind == "Forbidden"
        await handle.execute_update(RectificationWorkflow.verify,
                                    Verify(officer="officer-li", finding="same text on 30 cases", malicious=True))
        kind, _ = await refusal(handle.execute_update(RectificationWorkflow.confirm_set_aside,
                                                      ConfirmSetAside(officer="tax-01", reason="x")))
        assert kind == "Forbidden"
        kind, _ = await refusal(handle.execute_update(RectificationWorkflow.confirm_set_aside,
                                                      ConfirmSetAside(officer="officer-li", reason="x")))
        assert kind == "SameOfficer"  # the set-aside needs a second officer
        await handle.execute_update(RectificationWorkflow.confirm_set_aside,
                                    ConfirmSetAside(officer="officer-wang", reason="call log checked"))
        # Who may not act is in the audit trail, with the key that signed; SameOfficer is no who-may refusal.
        await eventually(lambda: len(refused_rows(sqlite_store, "rectification", o.case_no)) == 2)
    assert refused_rows(sqlite_store, "rectification", o.case_no) == [("officer-zhou", "Forbidden"), ("tax-01", "Forbidden")]
    assert refused_keys(sqlite_store, "rectification", o.case_no) == [CLI_KEY_ID, CLI_KEY_ID]


async def test_a_rectification_is_rectified_by_the_responsible_department_only(env, hall_worker, sqlite_store):
    from tests.test_rectification import order

    o = order(f"AUTH-{uuid.uuid4().hex[:6]}")
    async with hall_worker(env.client) as tq:
        handle = await env.client.start_workflow(RectificationWorkflow.run, o, id=f"rectification-{o.case_no}",
                                                 task_queue=tq, execution_timeout=timedelta(days=60))
        await wait_status(handle, lambda s: s.due_at is not None, query=RectificationWorkflow.status)
        await handle.execute_update(RectificationWorkflow.verify, Verify(officer="officer-li", finding="queue too long"))
        fix = dict(action="a second window at noon", reply="we opened a second window")
        kind, said = await refusal(handle.execute_update(RectificationWorkflow.rectify, Rectify(officer="tax-01", **fix)))
        assert kind == "Forbidden" and "officer-li" in said and "tax-01 may not" in said
        kind, _ = await refusal(handle.execute_update(RectificationWorkflow.rectify, Rectify(officer="officer-nobody", **fix)))
        assert kind == "UnknownActor"
        assert (await handle.query(RectificationWorkflow.status)).stage == RectificationStage.RECTIFYING
        status = await handle.execute_update(RectificationWorkflow.rectify, Rectify(officer="officer-wang", **fix))
        assert status.stage == RectificationStage.RECTIFIED
        await eventually(lambda: len(refused_rows(sqlite_store, "rectification", o.case_no)) == 2)
    assert refused_rows(sqlite_store, "rectification", o.case_no) == [("tax-01", "Forbidden"), ("officer-nobody", "UnknownActor")]
    assert refused_keys(sqlite_store, "rectification", o.case_no) == [CLI_KEY_ID, CLI_KEY_ID]
    rectified = next(e for e in sqlite_store.audit_trail("rectification", o.case_no) if e.action == "rectified")
    assert (rectified.actor, rectified.signed_with) == ("officer-wang", CLI_KEY_ID)


async def test_a_suggestion_is_answered_and_reclassified_by_its_department(env, hall_worker, sqlite_store):
    from tests.test_suggestion import suggestion

    s = suggestion(f"SA-{uuid.uuid4().hex[:6]}")
    async with hall_worker(env.client) as tq:
        handle = await env.client.start_workflow(SuggestionWorkflow.run, s, id=f"suggestion-{s.suggestion_no}",
                                                 task_queue=tq, execution_timeout=timedelta(days=90))
        await wait_status(handle, lambda st: st.due_at is not None, query=SuggestionWorkflow.status)
        kind, _ = await refusal(handle.execute_update(
            SuggestionWorkflow.reclassify, Reclassify(complexity="complex", reason="study", by="officer-li")))
        assert kind == "Forbidden"
        await handle.execute_update(SuggestionWorkflow.reclassify,
                                    Reclassify(complexity="complex", reason="study", by="coordinator-1"))
        kind, _ = await refusal(handle.execute_update(
            SuggestionWorkflow.respond, Respond(department="natural-resources", officer="tax-01", adopted=True)))
        assert kind == "Forbidden"
        kind, _ = await refusal(handle.execute_update(
            SuggestionWorkflow.respond, Respond(department="natural-resources", officer="officer-nobody", adopted=True)))
        assert kind == "UnknownActor"
        await eventually(lambda: len(refused_rows(sqlite_store, "suggestion", s.suggestion_no)) == 3)
    assert refused_rows(sqlite_store, "suggestion", s.suggestion_no) == [
        ("officer-li", "Forbidden"), ("tax-01", "Forbidden"), ("officer-nobody", "UnknownActor")]
    assert refused_keys(sqlite_store, "suggestion", s.suggestion_no) == [CLI_KEY_ID] * 3
    rows = {e.action: e for e in sqlite_store.audit_trail("suggestion", s.suggestion_no)}
    # The submitter as proven (the public, vouched for by the test system), and who reclassified.
    assert (rows["submitted"].actor, rows["submitted"].signed_with) == ("applicant", CLI_KEY_ID)
    assert (rows["reclassified"].actor, rows["reclassified"].signed_with) == ("coordinator-1", CLI_KEY_ID)


async def test_a_suggestion_is_for_a_department_of_the_directory(env, hall_worker, sqlite_store):
    from tests.test_suggestion import suggestion

    s = suggestion(f"SD-{uuid.uuid4().hex[:6]}").model_copy(update={"department": "no-such-department"})
    async with hall_worker(env.client) as tq:
        handle = await env.client.start_workflow(SuggestionWorkflow.run, s, id=f"suggestion-{s.suggestion_no}",
                                                 task_queue=tq, execution_timeout=timedelta(days=90))
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
    assert failed.value.cause.type == "UnknownActor"
    assert "no-such-department, which is not in the organisation directory" in failed.value.cause.message
    assert refused_rows(sqlite_store, "suggestion", s.suggestion_no) == [("applicant", "UnknownActor")]
    assert refused_keys(sqlite_store, "suggestion", s.suggestion_no) == [CLI_KEY_ID]


async def test_a_risk_is_acted_on_by_its_owner_their_head_or_whom_it_reached(env, hall_worker, sqlite_store):
    from tests.test_risk import report

    r = report(f"RA-{uuid.uuid4().hex[:6]}", 0.6, "high")  # red, owner officer-li of market-regulation
    async with hall_worker(env.client) as tq:
        handle = await env.client.start_workflow(RiskWorkflow.run, r, id=f"risk-{r.risk_no}", task_queue=tq,
                                                 execution_timeout=timedelta(days=90))
        await wait_status(handle, lambda s: s.due_at is not None, query=RiskWorkflow.status)
        kind, said = await refusal(handle.execute_update(RiskWorkflow.acknowledge, Acknowledge(officer="officer-zhou", group="g")))
        assert kind == "Forbidden" and "officer-li" in said and "officer-zhao" in said
        assert (await refusal(handle.execute_update(RiskWorkflow.acknowledge, Acknowledge(officer="officer-nobody", group="g"))))[0] == "UnknownActor"
        # Two missed steps: the head, then the deputy director, are told; the deputy may now act.
        await env.sleep(timedelta(hours=4, minutes=30))
        await wait_status(handle, lambda s: s.entry.escalations >= 2, query=RiskWorkflow.status)
        await handle.execute_update(RiskWorkflow.acknowledge, Acknowledge(officer="deputy-director-1", group="g"))
        await eventually(lambda: len(refused_rows(sqlite_store, "risk", r.risk_no)) == 2)
    assert refused_rows(sqlite_store, "risk", r.risk_no) == [("officer-zhou", "Forbidden"), ("officer-nobody", "UnknownActor")]
    assert refused_keys(sqlite_store, "risk", r.risk_no) == [CLI_KEY_ID, CLI_KEY_ID]


async def test_a_risk_is_handled_by_no_stranger_and_each_refusal_is_audited(env, hall_worker, sqlite_store):
    from tests.test_risk import report

    r = report(f"RS-{uuid.uuid4().hex[:6]}", 0.6, "high")  # red, owner officer-li of market-regulation
    async with hall_worker(env.client) as tq:
        handle = await env.client.start_workflow(RiskWorkflow.run, r, id=risk_workflow_id(r.risk_no), task_queue=tq,
                                                 execution_timeout=timedelta(days=90))
        status = await wait_status(handle, lambda s: s.due_at is not None, query=RiskWorkflow.status)
        plan = SubmitPlan(officer="officer-wang", plan="p", due=status.due_at + timedelta(days=3))
        strangers = [  # (Update, request, error): officer-wang is of the department, but neither owner nor head
            (RiskWorkflow.regrade, Regrade(level=Level.YELLOW, reason="r", by="officer-zhou"), "Forbidden"),
            (RiskWorkflow.regrade, Regrade(level=Level.YELLOW, reason="r", by="officer-nobody"), "UnknownActor"),
            (RiskWorkflow.submit_plan, plan, "Forbidden"),
            (RiskWorkflow.submit_plan, plan.model_copy(update={"officer": "officer-nobody"}), "UnknownActor"),
            (RiskWorkflow.review, RiskReviewRecord(by="tax-01", cause="c", what_worked="w", what_changes="x"), "Forbidden"),
            (RiskWorkflow.review, RiskReviewRecord(by="officer-nobody", cause="c", what_worked="w", what_changes="x"),
             "UnknownActor"),
            (RiskWorkflow.resolve, Resolve(officer="officer-chen", summary="s"), "Forbidden"),
            (RiskWorkflow.resolve, Resolve(officer="officer-nobody", summary="s"), "UnknownActor"),
        ]
        for update, request, error in strangers:
            kind, said = await refusal(handle.execute_update(update, request))
            assert kind == error, (update, said)
            assert error == "UnknownActor" or "officer-li" in said  # who may: the owner, first
        assert (await handle.query(RiskWorkflow.status)).entry.state == RiskState.AWAITING_ACKNOWLEDGEMENT
        await eventually(lambda: len(refused_rows(sqlite_store, "risk", r.risk_no)) == len(strangers))
    assert refused_rows(sqlite_store, "risk", r.risk_no) == [(actor_named(q), error) for _, q, error in strangers]
    assert refused_keys(sqlite_store, "risk", r.risk_no) == [CLI_KEY_ID] * len(strangers)


async def test_a_risk_names_a_department_and_an_owner_the_directory_allows(env, hall_worker, sqlite_store):
    """issue 13: a risk reported with the owner officer-nobody, then acknowledged by officer-nobody.
    Now the report is refused; the reporter, not the owner, is who the audit trail names."""
    from tests.test_risk import report

    wang = signed_as(env, "officer-wang")  # an officer in post reports it
    refused = {
        # owner or department: (error, what the refusal says)
        "officer-nobody": ("UnknownActor", "the owner officer-nobody is not in the organisation directory"),
        "officer-zhou": ("Forbidden", "the owner officer-zhou may not own a risk of market-regulation"),  # another department
        "officer-wang": ("Forbidden", "the owner officer-wang may not own a risk of market-regulation"),  # not risk_owner
        "office:nowhere": ("UnknownActor", "nobody in the organisation directory (version"),
        "head:no-such-department": ("UnknownActor", "holds that rank"),
        "department no-such-department": ("UnknownActor", "the responsible department no-such-department is not"),
    }
    async with hall_worker(env.client) as tq:
        for owner, (error, says) in refused.items():
            change = ({"responsible_department": owner.removeprefix("department ")} if owner.startswith("department ")
                      else {"owner": owner})
            r = report(f"RO-{uuid.uuid4().hex[:6]}", 0.6, "high").model_copy(update=change)
            handle = await wang.start_workflow(RiskWorkflow.run, r, id=risk_workflow_id(r.risk_no), task_queue=tq,
                                               execution_timeout=timedelta(days=90))
            with pytest.raises(WorkflowFailureError) as failed:
                await handle.result()
            assert (failed.value.cause.type, says in failed.value.cause.message) == (error, True), failed.value.cause.message
            assert refused_rows(sqlite_store, "risk", r.risk_no) == [("officer-wang", error)]
            assert refused_keys(sqlite_store, "risk", r.risk_no) == [CLI_KEY_ID]
            assert sqlite_store.audit_trail("risk", r.risk_no)[-1].action == "refused"  # nothing else written
        # A risk owner of the department, or a rank someone holds, may own it.
        for owner in ("officer-li", "head:market-regulation", "office:deputy-director"):
            r = report(f"RO-{uuid.uuid4().hex[:6]}", 0.6, "high").model_copy(update={"owner": owner})
            handle = await wang.start_workflow(RiskWorkflow.run, r, id=risk_workflow_id(r.risk_no), task_queue=tq,
                                               execution_timeout=timedelta(days=90))
            await wait_status(handle, lambda s: s.due_at is not None, query=RiskWorkflow.status)
            reported = await eventually(lambda: [e for e in sqlite_store.audit_trail("risk", r.risk_no) if e.action == "reported"])
            assert [(e.actor, e.signed_with, e.details["owner"]) for e in reported] == [("officer-wang", CLI_KEY_ID, owner)]


async def test_someone_the_directory_does_not_know_is_refused_even_as_a_risks_owner(env, hall_worker, sqlite_store):
    """A report hallflow signs is checked for its department only (hallflow's own name the rank
    head:<department>); its owner, unknown to the directory, still cannot act on it."""
    from tests.test_risk import report

    r = report(f"RN-{uuid.uuid4().hex[:6]}", 0.6, "high").model_copy(update={"owner": "officer-nobody"})
    async with hall_worker(env.client) as tq:
        handle = await signed_as(env, "hallflow").start_workflow(
            RiskWorkflow.run, r, id=risk_workflow_id(r.risk_no), task_queue=tq, execution_timeout=timedelta(days=90))
        await wait_status(handle, lambda s: s.due_at is not None, query=RiskWorkflow.status)
        kind, said = await refusal(handle.execute_update(RiskWorkflow.acknowledge, Acknowledge(officer="officer-nobody", group="g")))
        assert kind == "UnknownActor" and "officer-nobody is not in the organisation directory" in said
        assert "officer-zhao" in said and "officer-nobody, " not in said  # who may: only people the directory knows
        await handle.execute_update(RiskWorkflow.acknowledge, Acknowledge(officer="officer-zhao", group="g"))
        await eventually(lambda: refused_rows(sqlite_store, "risk", r.risk_no))
    assert refused_rows(sqlite_store, "risk", r.risk_no) == [("officer-nobody", "UnknownActor")]


def test_refuse_unless_refuses_an_id_the_directory_does_not_know_even_when_allowed():
    from datetime import datetime, timezone

    from temporalio.exceptions import ApplicationError

    from workflows.authority import refuse_unless

    org = load_directory(get_settings().org_file, None)
    now = datetime(2099, 1, 5, tzinfo=timezone.utc)
    with pytest.raises(ApplicationError) as err:
        refuse_unless(org, now, "officer-nobody", ["officer-nobody", "officer-li"], "acknowledge risk R")
    assert err.value.type == "UnknownActor" and err.value.message.endswith("may be done by: officer-li")
    # The applicant, hallflow and a hall are not officers, yet known: the allowed list decides.
    for actor in ("applicant", "hallflow", "hall-central"):
        refuse_unless(org, now, actor, [actor], "urge case C")
        with pytest.raises(ApplicationError) as err:
            refuse_unless(org, now, actor, ["officer-li"], "acknowledge risk R")
        assert err.value.type == "Forbidden"


# ---- the audit row: the proven actor and the key that signed this message ----------------------------


async def test_each_audit_row_names_the_proven_actor_and_the_key_of_its_own_message(env, hall_worker, sqlite_store):
    """A risk a system reports as hallflow: its `reported` row is hallflow's, signed with that
    system's key, while the rows hallflow writes by itself (a missed step) carry no key. officer-li
    signs one message with their own key and the next with the system's: each row names its own
    (`resolved` too, which the workflow writes after the Update). Twins refused are recorded with
    the actor and key proven, or as `signal` with no key when nothing was proven."""
    from tests.test_risk import report

    private, public = new_key("officer-li", key_id=f"officer-li/test-{uuid.uuid4().hex[:6]}")
    add_public_key(PUBLIC_KEYS, public)  # before the worker loads the directory
    r = report(f"RK-{uuid.uuid4().hex[:6]}", 0.6, "high")  # red, owner officer-li
    async with hall_worker(env.client) as tq:
        handle = await signed_as(env, "hallflow").start_workflow(
            RiskWorkflow.run, r, id=risk_workflow_id(r.risk_no), task_queue=tq, execution_timeout=timedelta(days=90))
        await wait_status(handle, lambda s: s.due_at is not None, query=RiskWorkflow.status)
        await env.sleep(timedelta(hours=2, minutes=10))  # red: the group had 2 hours; the head is told
        await wait_status(handle, lambda s: s.entry.escalations >= 1, query=RiskWorkflow.status)
        # A twin from someone who may not act, proven; and one with no proof at all.
        await handle.signal("acknowledge_signal", Acknowledge(officer="officer-zhou", group="g"))
        await client_with(env).get_workflow_handle(handle.id).signal("acknowledge_signal", Acknowledge(officer="officer-li", group="g"))
        await wait_status(handle, lambda s: s.refused_signal_count == 2, query=RiskWorkflow.status)
        own = signed_as(env, "officer-li", private).get_workflow_handle(handle.id)
        await own.execute_update(RiskWorkflow.acknowledge, Acknowledge(officer="officer-li", group="g"))
        status = await wait_status(handle, lambda s: s.due_at is not None and s.entry.state == RiskState.AWAITING_PLAN,
                                   query=RiskWorkflow.status)
        await handle.execute_update(RiskWorkflow.submit_plan,
                                    SubmitPlan(officer="officer-li", plan="p", due=status.due_at + timedelta(days=1)))
        await own.execute_update(RiskWorkflow.review, RiskReviewRecord(by="officer-li", cause="c", what_worked="w", what_changes="x"))
        await handle.execute_update(RiskWorkflow.resolve, Resolve(officer="officer-li", summary="s"))
        await eventually(lambda: any(e.action == "resolved" for e in sqlite_store.audit_trail("risk", r.risk_no)))
    rows = [(e.action, e.actor, e.signed_with) for e in sqlite_store.audit_trail("risk", r.risk_no)]
    assert rows == [
        ("reported", "hallflow", CLI_KEY_ID),
        ("step_missed", "hallflow", None),
        ("signal_refused", "officer-zhou", CLI_KEY_ID),
        ("signal_refused", "signal", None),
        ("acknowledged", "officer-li", public.id),
        ("plan_submitted", "officer-li", CLI_KEY_ID),
        ("reviewed", "officer-li", public.id),
        ("resolved", "officer-li", CLI_KEY_ID),
    ]


# ---- proof of who sent it ---------------------------------------------------------------------------


class Forge(ClientInterceptor):
    """Sends Updates with a header made by `make(input, payload bytes)` (or none)."""

    def __init__(self, make):
        self.make = make

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        make = self.make

        class _Out(OutboundInterceptor):
            async def start_workflow_update(self, input: StartWorkflowUpdateInput):
                payloads = data_converter.payload_converter.to_payloads(list(input.args))
                input.args = [RawValue(p) for p in payloads]
                value = make(input, payloads[0].data)
                if value is not None:
                    input.headers = {**input.headers, HEADER: Payload(metadata={"encoding": b"json/plain"}, data=value.encode())}
                return await super().start_workflow_update(input)

        return _Out(next)


def long_lived(key, lifetime: timedelta, **fields) -> str:
    """A header signed as security/signing.sign would, but living `lifetime` (sign() refuses over 5 minutes)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    now = fields.pop("now")
    body = {**fields, "payload_sha256": payload_digest(fields.pop("payload")), "issued_at": format_instant(now),
            "expires_at": format_instant(now + lifetime), "key_id": key.id, "alg": key.alg}
    body.pop("payload", None)
    draft = ActorAssertion.model_construct(**body, signature="")
    raw = Ed25519PrivateKey.from_private_bytes(base64.b64decode(key.private)).sign(signed_text(draft))
    return header_value(ActorAssertion.model_validate({**body, "signature": base64.b64encode(raw).decode()}))


async def test_a_message_without_a_valid_assertion_is_unauthenticated(env, hall_worker, catalog, sqlite_store):
    key = load_private(get_settings().signing_key)
    review = Review(reviewer="officer-li", decision="approve")
    # A key the directory never heard of, and one retired (not_after in the past): both of a system
    # that may speak for anyone.
    unknown, _ = new_key("hallflow-cli", key_id=f"hallflow-cli/unknown-{uuid.uuid4().hex[:6]}")
    retired, public = new_key("hallflow-cli", key_id=f"hallflow-cli/retired-{uuid.uuid4().hex[:6]}")
    add_public_key(PUBLIC_KEYS, public.model_copy(update={"not_after": TEST_EPOCH - timedelta(days=1)}))
    async with hall_worker(env.client) as tq:
        app, handle = await case_awaiting_review(env, tq, catalog)
        now = await env.get_current_time()

        def signed(message=None, workflow_id=None, payload=None, at=None, actor="officer-li", by=key):
            return lambda input, data: header_value(sign(
                by, actor=actor, workflow_id=workflow_id or input.id, message=message or input.update,
                payload=data if payload is None else payload, now=at or now))

        def living(lifetime):
            return lambda input, data: long_lived(key, lifetime, actor="officer-li", workflow_id=input.id,
                                                  message=input.update, payload=data, now=now.replace(microsecond=0))

        cases = {  # name: (header, what the refusal says)
            "no header": (lambda input, data: None, "carries no hallflow-actor header"),
            "not JSON": (lambda input, data: "{", "is not an actor assertion"),
            "another message": (signed(message="urge"), "not for review"),
            "another workflow": (signed(workflow_id="case-ELSEWHERE"), "is for workflow case-ELSEWHERE"),
            "another payload": (signed(payload=b'{"reviewer": "officer-li", "decision": "reject"}'), "payload_sha256"),
            "expired": (signed(at=now - timedelta(minutes=10)), "expired"),
            "unknown key": (signed(by=unknown), f"key {unknown.id} is not in the directory"),
            "retired key": (signed(by=retired), f"key {retired.id} was retired"),
            "issued in the future": (signed(at=now + timedelta(minutes=3)), "issued in the future"),
            "lives over 5 minutes": (living(timedelta(minutes=5, seconds=1)), "may live at most 0:05:00"),
        }
        for name, (make, says) in cases.items():
            forged = client_with(env, Forge(make)).get_workflow_handle(case_workflow_id(app.case_no))
            kind, said = await refusal(forged.execute_update(CaseWorkflow.review, review))
            assert kind == "Unauthenticated" and says in said, (name, said)
        # The actor the assertion names must be the one the message names.
        forged = client_with(env, Forge(signed(actor="officer-wang"))).get_workflow_handle(case_workflow_id(app.case_no))
        assert (await refusal(forged.execute_update(CaseWorkflow.review, review)))[0] == "Forbidden"
        assert (await handle.query(CaseWorkflow.status)).stage == CaseStage.AWAITING_REVIEW
        await eventually(lambda: len(refused_rows(sqlite_store, "case", app.case_no)) == len(cases) + 1)
        # The same helper's assertion living exactly 5 minutes is taken: what was refused was the lifetime.
        taken = client_with(env, Forge(living(MAX_LIFETIME))).get_workflow_handle(case_workflow_id(app.case_no))
        assert (await taken.execute_update(CaseWorkflow.review, review)).stage != CaseStage.AWAITING_REVIEW
    # Each refusal is audited as the actor the message claimed, with no key: none was proven.
    assert refused_rows(sqlite_store, "case", app.case_no) == [("officer-li", "Unauthenticated")] * len(cases) + [
        ("officer-li", "Forbidden")]
    assert refused_keys(sqlite_store, "case", app.case_no) == [None] * (len(cases) + 1)


async def test_an_sm2_signed_update_is_taken_and_its_row_names_the_sm2_key(env, hall_worker, catalog, sqlite_store):
    private, public = new_key("officer-li", "sm2", key_id=f"officer-li/sm2-{uuid.uuid4().hex[:6]}")
    add_public_key(PUBLIC_KEYS, public)  # before the worker loads the directory
    async with hall_worker(env.client) as tq:
        app, _ = await case_awaiting_review(env, tq, catalog)
        own = signed_as(env, "officer-li", private).get_workflow_handle(case_workflow_id(app.case_no))
        status = await own.execute_update(CaseWorkflow.review, Review(reviewer="officer-li", decision="approve"))
        assert status.stage in (CaseStage.IN_PANEL, CaseStage.AWAITING_REVIEW)
        reviewed = await eventually(lambda: [e for e in sqlite_store.audit_trail("case", app.case_no) if e.action == "reviewed"])
    assert [(e.actor, e.signed_with) for e in reviewed] == [("officer-li", public.id)]
    assert public.alg == "sm2"


async def test_an_officers_own_key_speaks_for_them_alone(env, hall_worker, catalog):
    private, public = new_key("officer-li", key_id=f"officer-li/test-{uuid.uuid4().hex[:6]}")
    add_public_key(PUBLIC_KEYS, public)  # before the worker loads the directory
    own = Signer(private, "officer-li")
    own.clock = env.get_current_time
    async with hall_worker(env.client) as tq:
        app, _ = await case_awaiting_review(env, tq, catalog)
        li = client_with(env, own).get_workflow_handle(case_workflow_id(app.case_no))
        kind, said = await refusal(li.execute_update(CaseWorkflow.urge, Urge(by="hall-central")))
        assert kind == "Forbidden" and "may not speak for hall-central" in said
        status = await li.execute_update(CaseWorkflow.review, Review(reviewer="officer-li", decision="approve"))
        assert status.stage in (CaseStage.IN_PANEL, CaseStage.AWAITING_REVIEW)


# ---- people leave: a directory change reaches a running case -------------------------------------


async def test_an_officer_who_left_cannot_act_and_their_case_is_transferred(env, hall_worker, catalog):
    from datetime import date

    async with hall_worker(env.client) as tq:
        app, handle = await case_awaiting_review(env, tq, catalog)
        directory = load_directory(get_settings().org_file, get_settings().keys_file)
        changed = directory.model_copy(update={
            "version": "test-left",
            "officers": [o.model_copy(update={"left_after": date(2099, 1, 1)}) if o.id == "officer-li" else o
                         for o in directory.officers],
        })
        admin = Signer(load_private(get_settings().signing_key), "org-admin")
        admin.clock = env.get_current_time
        await client_with(env, admin).get_workflow_handle(handle.id).signal("directory_changed", DirectoryChange(directory=changed))
        # The signal is in history before the Update that follows it: officer-li has left.
        kind, said = await refusal(handle.execute_update(CaseWorkflow.review, Review(reviewer="officer-li", decision="approve")))
        assert kind == "UnknownActor" and "left after 2099-01-01" in said
        # The lead department's head hands the case to a reviewer still in post.
        status = await handle.execute_update(CaseWorkflow.transfer,
                                             Transfer(by="officer-zhao", to_reviewer="officer-wang", reason="officer-li left"))
        assert status.reviewer == "officer-wang"
        history = await handle.fetch_history()
    # Replay decides the same: the change is in the history.
    await Replayer(workflows=WORKFLOWS, data_converter=data_converter, interceptors=INTERCEPTORS).replay_workflow(history)


async def test_a_directory_change_from_anyone_but_a_directory_admin_is_refused_and_recorded(env, hall_worker, catalog, sqlite_store):
    async with hall_worker(env.client) as tq:
        app, handle = await case_awaiting_review(env, tq, catalog)
        directory = load_directory(get_settings().org_file, get_settings().keys_file)
        everyone_gone = directory.model_copy(update={"version": "forged", "officers": []})
        await handle.signal("directory_changed", DirectoryChange(directory=everyone_gone))  # as the applicant
        await handle.execute_update(CaseWorkflow.urge, Urge(by="hall-central"))  # a later message: after the signal
        status = await handle.execute_update(CaseWorkflow.review, Review(reviewer="officer-li", decision="approve"))
        assert status.stage in (CaseStage.IN_PANEL, CaseStage.AWAITING_REVIEW)
        await eventually(lambda: refused_rows(sqlite_store, "case", app.case_no))
    assert refused_rows(sqlite_store, "case", app.case_no) == [("applicant", "Forbidden")]


def test_the_worker_does_not_start_on_a_bad_directory(tmp_path: Path):
    import os
    import subprocess
    import sys

    bad = tmp_path / "org.toml"
    bad.write_text((ROOT / "data" / "org.toml").read_text(encoding="utf-8").replace(
        'id = "officer-li"\ndepartment = "market-regulation"\nroles = ["reviewer", "department_officer", "risk_owner"]',
        'id = "officer-li"\ndepartment = "market-regulation"\nroles = ["department_officer"]'), encoding="utf-8")
    env = {**os.environ, "HALLFLOW_ORG_FILE": str(bad), "HALLFLOW_DATABASE_URL": f"sqlite:///{tmp_path / 'h.db'}"}
    ran = subprocess.run([sys.executable, "worker.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 1
    # The catalog names officer-li as a reviewer: the directory must give them that role.
    assert f"{bad}: matter 'enterprise-opening', field reviewers: 'officer-li' lacks the role reviewer" in ran.stderr


def test_the_worker_warns_of_a_system_that_speaks_for_anyone():
    """The shipped hallflow-cli system (speaks_for = ["*"]) is for development: a worker that
    requires assertions and holds a key of it says so in its log, once per start."""
    from datetime import datetime, timezone

    import structlog

    from activities.org import warn_wide_systems

    org = load_directory(get_settings().org_file, PUBLIC_KEYS)
    with structlog.testing.capture_logs() as logs:
        assert warn_wide_systems(org) == ["hallflow-cli"]
    assert [(e["event"], e["system"], e["log_level"]) for e in logs] == [("system_speaks_for_anyone", "hallflow-cli", "warning")]
    # Not for a closed test bench (no assertions required), nor once its keys are retired.
    assert warn_wide_systems(org.model_copy(update={"require_assertions": False})) == []
    retired = [k.model_copy(update={"not_after": datetime(2020, 1, 1, tzinfo=timezone.utc)}) for k in org.keys]
    assert warn_wide_systems(org.model_copy(update={"keys": retired})) == []
