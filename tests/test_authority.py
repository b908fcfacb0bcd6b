"""Who may act, through a real worker: the directory's rule for each step, the proof of who sent a
message, directory changes reaching a running case, and each refusal in the audit trail."""

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
from contract.assertion import HEADER
from contract.case import CaseStage, case_workflow_id
from tests.org_fixtures import data_converter
from contract.org import DirectoryChange
from contract.rating import ConfirmSetAside, Verify
from contract.risk import Acknowledge
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


async def test_a_suggestion_is_answered_and_reclassified_by_its_department(env, hall_worker):
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


async def test_a_risk_is_acted_on_by_its_owner_their_head_or_whom_it_reached(env, hall_worker):
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


async def test_a_message_without_a_valid_assertion_is_unauthenticated(env, hall_worker, catalog, sqlite_store):
    key = load_private(get_settings().signing_key)
    review = Review(reviewer="officer-li", decision="approve")
    async with hall_worker(env.client) as tq:
        app, handle = await case_awaiting_review(env, tq, catalog)
        now = await env.get_current_time()

        def signed(message=None, workflow_id=None, payload=None, at=None, actor="officer-li"):
            return lambda input, data: header_value(sign(
                key, actor=actor, workflow_id=workflow_id or input.id, message=message or input.update,
                payload=data if payload is None else payload, now=at or now))

        cases = {
            "no header": lambda input, data: None,
            "not JSON": lambda input, data: "{",
            "another message": signed(message="urge"),
            "another workflow": signed(workflow_id="case-ELSEWHERE"),
            "another payload": signed(payload=b'{"reviewer": "officer-li", "decision": "reject"}'),
            "expired": signed(at=now - timedelta(minutes=10)),
        }
        for name, make in cases.items():
            forged = client_with(env, Forge(make)).get_workflow_handle(case_workflow_id(app.case_no))
            kind, said = await refusal(forged.execute_update(CaseWorkflow.review, review))
            assert kind == "Unauthenticated", (name, said)
        # The actor the assertion names must be the one the message names.
        forged = client_with(env, Forge(signed(actor="officer-wang"))).get_workflow_handle(case_workflow_id(app.case_no))
        assert (await refusal(forged.execute_update(CaseWorkflow.review, review)))[0] == "Forbidden"
        assert (await handle.query(CaseWorkflow.status)).stage == CaseStage.AWAITING_REVIEW
        await eventually(lambda: len(refused_rows(sqlite_store, "case", app.case_no)) == len(cases) + 1)


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
