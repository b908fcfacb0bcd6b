"""Determinism guard: today's workflow code must replay the histories of cases already running.

A worker that picks up an open case replays its history through the current code; a change that
issues other commands (an activity added, dropped or moved) fails that case with a
nondeterminism error in production. tests/histories holds one recorded history per scenario
(`python -m tests.record_histories`); see tests/histories/README.md before touching them.
"""


import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from google.protobuf import json_format
from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

# The sandbox re-imports this module for the workflows defined below: pass the rest through.
with workflow.unsafe.imports_passed_through():
    from contract.case import CaseApplication, CaseOutcome
    from contract.converter import Unreadable
    from tests.org_fixtures import data_converter
    from tests.record_histories import DEV, SCENARIOS, TIME_SKIPPING
    from worker import INTERCEPTORS, WORKFLOWS
    from workflows import activities as act
    from workflows.case import CaseWorkflow

HISTORIES = Path(__file__).parent / "histories"
RECORDED = sorted(HISTORIES.glob("*.json"))


# The workflow id is not in the file; each workflow checks its id against its input, so replay
# gives it the id it ran under, made from that input as hallflow makes it.
WORKFLOW_ID = {
    "CaseWorkflow": lambda i: f"case-{i['case_no']}",
    "RectificationWorkflow": lambda i: f"rectification-{i['case_no']}",
    "SuggestionWorkflow": lambda i: f"suggestion-{i['suggestion_no']}",
    "RiskWorkflow": lambda i: f"risk-{i['risk_no']}",
    "SatisfactionWatchWorkflow": lambda i: f"satisfaction-{i['department']}",
}


def history(name: str) -> WorkflowHistory:
    text = (HISTORIES / f"{name}.json").read_text(encoding="utf-8")
    started = json.loads(text)["events"][0]["workflowExecutionStartedEventAttributes"]
    payload = json_format.ParseDict(started["input"]["payloads"][0], Payload())
    given = json.loads(data_converter.payload_codec.decrypt(payload).data)  # recorded with tests/keys
    workflow_id = SCENARIOS[name].workflow_id if name in SCENARIOS else None  # started under another id
    return WorkflowHistory.from_json(workflow_id or WORKFLOW_ID[started["workflowType"]["name"]](given), text)


async def replay(name: str, workflows: list[type]) -> None:
    await Replayer(workflows=workflows, data_converter=data_converter, interceptors=INTERCEPTORS).replay_workflow(history(name))


def test_every_scenario_has_a_recorded_history():
    assert sorted(p.stem for p in RECORDED) == sorted(SCENARIOS)


@pytest.mark.parametrize("name", [p.stem for p in RECORDED])
async def test_current_workflow_code_replays_recorded_history(name):
    await replay(name, WORKFLOWS)


@pytest.mark.parametrize("name", [p.stem for p in RECORDED])
def test_each_history_was_recorded_on_the_server_its_scenario_declares(name):
    """A time-skipping run starts at its scenario's instant in the test calendar (2099); a dev
    server's on the wall clock, years before it."""
    scenario = SCENARIOS.get(name)
    if scenario is None:
        pytest.fail(f"{name}.json has no scenario in tests/record_histories.py")
    first = json.loads((HISTORIES / f"{name}.json").read_text(encoding="utf-8"))["events"][0]
    started = datetime.fromisoformat(first["eventTime"][:19]).replace(tzinfo=timezone.utc)
    if scenario.server == TIME_SKIPPING:
        assert scenario.start_at <= started < scenario.start_at + timedelta(minutes=1), started
    else:
        assert scenario.server == DEV and started.year < 2099, (scenario.server, started)


def test_the_readme_lists_every_scenario_with_its_server():
    """tests/histories/README.md's table: one row per scenario (or a few sharing one), saying
    which server recorded it."""
    listed = {}
    for line in (HISTORIES / "README.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 4:
            listed.update((name, cells[2]) for name in re.findall(r"`([a-z_]+)`", cells[0]))
    assert listed == {name: s.server for name, s in SCENARIOS.items()}


# ---- the guard itself: changed workflows that must not replay old histories ------------------


@workflow.defn(name="CaseWorkflow")
class CaseWorkflowWithNewLookup(CaseWorkflow):
    """A new step at the start, added without workflow.patched: one extra activity."""

    @workflow.run
    async def run(self, app: CaseApplication | Unreadable | None = None) -> CaseOutcome:
        await act.feedback_policy()
        return await super().run(app)


@workflow.defn(name="CaseWorkflow")
class CaseWorkflowWithAPause(CaseWorkflow):
    """A minute's wait added before acceptance without workflow.patched: one timer more."""

    @workflow.run
    async def run(self, app: CaseApplication | Unreadable | None = None) -> CaseOutcome:
        await workflow.sleep(60)
        return await super().run(app)


@workflow.defn(name="CaseWorkflow")
class CaseWorkflowWithPatchedLookup(CaseWorkflow):
    """The same new step done right: open cases skip it, new cases run it."""

    @workflow.run
    async def run(self, app: CaseApplication | Unreadable | None = None) -> CaseOutcome:
        if workflow.patched("lookup-at-start"):
            await act.feedback_policy()
        return await super().run(app)


@pytest.mark.parametrize("changed", [CaseWorkflowWithNewLookup, CaseWorkflowWithAPause])
async def test_changed_workflow_fails_replay_with_nondeterminism(changed):
    with pytest.raises(NondeterminismError, match="TMPRL1100"):
        await replay("deferral_missed_terminated", [changed])


def _workflow_type(path: Path) -> str:
    first = json.loads(path.read_text(encoding="utf-8"))["events"][0]
    return first["workflowExecutionStartedEventAttributes"]["workflowType"]["name"]


@pytest.mark.parametrize("name", [p.stem for p in RECORDED if _workflow_type(p) == "CaseWorkflow"])
async def test_change_behind_workflow_patched_replays(name):
    await replay(name, [CaseWorkflowWithPatchedLookup])
