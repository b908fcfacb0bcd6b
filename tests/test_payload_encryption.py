"""Who may see: every payload hallflow puts into Temporal is encrypted with the current data key
and names it; a rotated key still opens old cases; search attributes stay readable and carry no
personal data."""

import json
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.worker import Replayer

from contract.approval import Review, Urge
from contract.case import CaseStage
from contract.converter import data_converter as plain_converter
from security.codec import ENCRYPTED, KEY_ID, encrypted
from security.data_keys import add_key
from tests.builders import application, start_case, wait_status
from tests.org_fixtures import TEST_DATA_KEYS
from tests.temporal_fixtures import signer
from worker import INTERCEPTORS, WORKFLOWS
from workflows.case import CaseWorkflow

PERSONAL = ("张三", "110101199001011234", "13800000000")


def payloads_of(history) -> list:
    """Every payload an event carries (inputs, results, Update and signal arguments, activity
    inputs and outputs, failure details, user metadata), found by walking the protobuf; not the
    search attributes and headers, which the codec does not see."""
    found = []

    def walk(message) -> None:
        for field, value in message.ListFields():
            if field.message_type is None or field.name in ("search_attributes", "header"):
                continue
            if field.message_type.GetOptions().map_entry:
                items = list(value.values())
            else:
                items = list(value) if field.is_repeated else [value]
            for item in items:
                if not hasattr(item, "ListFields"):
                    continue
                if item.DESCRIPTOR.full_name == "temporal.api.common.v1.Payload":
                    found.append(item)
                else:
                    walk(item)

    for event in history.events:
        walk(event)
    return found


def local_activity_marker(payload) -> bool:
    if payload.metadata.get("encoding") != b"json/plain":
        return False
    data = json.loads(payload.data)
    return isinstance(data, dict) and {"seq", "activity_type", "attempt"} <= data.keys() and len(data) <= 8


def rotated_keys(tmp_path: Path):
    """The test key file plus a second key, made current: a rotation."""
    rotated = tmp_path / "data.toml"
    rotated.write_text(TEST_DATA_KEYS.read_text(encoding="utf-8"), encoding="utf-8")
    key_id, keys = add_key(rotated, "sm4-gcm", key_id="test-2")
    return key_id, keys


async def test_nothing_personal_can_be_read_from_a_case_without_the_key(env, hall_worker, catalog):
    matter = catalog["social-insurance-transfer"]
    app = application(matter)
    async with hall_worker(env.client) as tq:
        handle = await start_case(env.client, app, tq)
        await wait_status(handle, lambda s: s.stage == CaseStage.AWAITING_REVIEW)
        await handle.execute_update(CaseWorkflow.review, Review(reviewer=matter.reviewers[0], decision="approve"))
        await wait_status(handle, lambda s: s.stage.is_final)
        history = await handle.fetch_history()
        described = await handle.describe()
    raw = history.to_json()
    for secret in PERSONAL:
        assert secret not in raw and json.dumps(secret)[1:-1] not in raw, secret
    # Every payload is encrypted under the current key, but a null (nothing to hide) and the SDK's
    # own bookkeeping of a local activity (its type, attempt and times; the result is encrypted).
    coded = [p for p in payloads_of(history) if p.metadata.get("encoding") != b"binary/null" and not local_activity_marker(p)]
    # (the input, the Update and its answer, each local activity's result, the summaries: 15 now)
    assert len(coded) >= 10
    assert {p.metadata.get("encoding") for p in coded} == {ENCRYPTED}
    assert {p.metadata[KEY_ID] for p in coded} == {b"test-1"}
    # Search attributes stay plain (operators filter on them) and hold no personal data.
    shown = json.dumps({k: str(v) for k, v in described.raw_description.workflow_execution_info.search_attributes.indexed_fields.items()})
    assert "CaseStage" in shown
    for secret in PERSONAL:
        assert secret not in shown


async def test_after_a_key_rotation_an_old_case_replays_answers_and_goes_on(env, hall_worker, catalog, tmp_path):
    matter = catalog["social-insurance-transfer"]
    app = application(matter)
    async with hall_worker(env.client, cache=False) as tq:
        handle = await start_case(env.client, app, tq)
        await wait_status(handle, lambda s: s.stage == CaseStage.AWAITING_REVIEW)
    before = await handle.fetch_history()

    key_id, keys = rotated_keys(tmp_path)
    converter = encrypted(plain_converter, keys)
    signing = signer()
    signing.clock = env.get_current_time  # the skipped clock, as the env's own client signs
    rotated = Client(env.client.service_client, namespace=env.client.namespace, data_converter=converter, interceptors=[signing])
    # The history written under key 1 replays with the rotated keys ...
    await Replayer(workflows=WORKFLOWS, data_converter=converter, interceptors=INTERCEPTORS).replay_workflow(before)
    # ... and a new worker holding them answers the old case and takes it on.
    async with hall_worker(rotated, task_queue=tq):
        old = rotated.get_workflow_handle(handle.id)
        status = await wait_status(old, lambda s: s.stage == CaseStage.AWAITING_REVIEW)
        assert status.case_no == app.case_no
        await old.execute_update(CaseWorkflow.review, Review(reviewer=matter.reviewers[0], decision="approve"))
        assert (await wait_status(old, lambda s: s.stage.is_final)).stage == CaseStage.APPROVED
    after = await handle.fetch_history()
    used = {p.metadata.get(KEY_ID) for p in payloads_of(after) if p.metadata.get("encoding") == ENCRYPTED}
    assert used == {b"test-1", key_id.encode()}  # old payloads keep key 1; new ones use key 2



async def test_a_message_under_a_key_the_worker_lacks_is_refused_not_wedged(env, hall_worker, catalog, tmp_path):
    """An integrator rotated before the workers did: its message is refused, saying which key."""
    _, keys = rotated_keys(tmp_path)
    signing = signer()
    signing.clock = env.get_current_time
    ahead = Client(env.client.service_client, namespace=env.client.namespace, data_converter=encrypted(plain_converter, keys), interceptors=[signing])
    app = application(catalog["social-insurance-transfer"])
    async with hall_worker(env.client) as tq:  # holds key 1 only
        handle = await start_case(env.client, app, tq)
        await wait_status(handle, lambda s: s.stage == CaseStage.AWAITING_REVIEW)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await ahead.get_workflow_handle(handle.id).execute_update(CaseWorkflow.urge, Urge(by="applicant"))
        assert refused.value.cause.type == "InvalidPayload"
        assert "'test-2'" in refused.value.cause.message and "does not hold" in refused.value.cause.message
        await handle.execute_update(CaseWorkflow.urge, Urge(by="applicant"))
        assert any(e.action == "urged" for e in (await wait_status(handle, lambda s: any(e.action == "urged" for e in s.last_events))).last_events)
