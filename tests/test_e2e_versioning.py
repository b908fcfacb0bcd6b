"""Worker versioning end to end (deploy/README.md): a case stays on the build it started on.

Two worker.py processes with HALLFLOW_BUILD_ID b1 and b2 on one dev server, the current version
switched with the `temporal` CLI as an operator would: a case started on b1 is finished by b1
after b2 became current, and a new case starts on b2. This is how a workflow change reaches
(or rather, does not reach) running cases without workflow.patched.
"""

import asyncio
import os
import subprocess
import sys
import uuid

import pytest
from temporalio.api.enums.v1 import VersioningBehavior

from activities.catalog import load_catalog
from contract.approval import Review, Vote
from contract.case import CaseStage
from settings import ROOT
from tests.builders import application, wait_status
from tests.e2e_fixtures import BIN, dev_server, shipped_calendar_or_placeholder  # noqa: F401
from workflows.case import CaseWorkflow

pytestmark = pytest.mark.e2e


def _cli(server, *args: str) -> None:
    address = server.client.service_client.config.target_host
    subprocess.run([str(BIN / "temporal"), *args, "--address", address], check=True, capture_output=True, timeout=30)


def _make_current(server, build_id: str, deployment: str) -> None:
    """Once the build's worker has polled, the version exists and can be made current."""
    import time

    for _ in range(50):
        try:
            _cli(server, "worker", "deployment", "set-current-version", "--deployment-name", deployment,
                 "--build-id", build_id, "--yes")
            return
        except subprocess.CalledProcessError:
            time.sleep(0.2)
    raise AssertionError(f"version {deployment}:{build_id} never appeared")


async def _version(handle) -> tuple[str, int]:
    info = (await handle.describe()).raw_description.workflow_execution_info.versioning_info
    return info.deployment_version.build_id, info.behavior


async def test_a_case_finishes_on_the_build_it_started_on(dev_server, tmp_path):  # noqa: F811
    client = dev_server.client
    deployment, queue = f"hallflow-{uuid.uuid4().hex[:8]}", f"versioned-{uuid.uuid4()}"
    env = {
        **os.environ,
        "HALLFLOW_TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "HALLFLOW_DATABASE_URL": f"sqlite:///{tmp_path / 'hallflow.db'}",
        "HALLFLOW_TASK_QUEUE": queue,
        "HALLFLOW_DEPLOYMENT_NAME": deployment,
        "HALLFLOW_CALENDAR_DIR": str(shipped_calendar_or_placeholder(tmp_path / "calendar")),
    }
    log = open(tmp_path / "workers.log", "a")
    workers = []

    def start_worker(build_id: str) -> None:
        workers.append(
            subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env={**env, "HALLFLOW_BUILD_ID": build_id}, stderr=log)
        )

    matter = load_catalog(ROOT / "data" / "matters.toml")["enterprise-opening"]

    async def start(case_no: str):
        app = application(matter).model_copy(update={"case_no": case_no})
        return await client.start_workflow(CaseWorkflow.run, app, id=f"case-{case_no}", task_queue=queue)

    try:
        start_worker("b1")
        _make_current(dev_server, "b1", deployment)
        old = await start(f"V1-{uuid.uuid4().hex[:6]}")
        await wait_status(old, lambda s: s.stage == CaseStage.AWAITING_REVIEW, timeout=30)

        start_worker("b2")  # the new build rolls out and becomes current
        _make_current(dev_server, "b2", deployment)
        # The server spreads the new routing a moment after the CLI returns: a case started in that
        # moment may still go to b1 (and stays there, pinned); the next ones go to b2.
        for _ in range(10):
            new = await start(f"V2-{uuid.uuid4().hex[:6]}")
            await wait_status(new, lambda s: s.stage == CaseStage.AWAITING_REVIEW, timeout=30)
            if (await _version(new))[0] == "b2":
                break
            await asyncio.sleep(1)

        assert await _version(old) == ("b1", VersioningBehavior.VERSIONING_BEHAVIOR_PINNED)
        assert await _version(new) == ("b2", VersioningBehavior.VERSIONING_BEHAVIOR_PINNED)

        # The old case goes on to its decision on b1, the build it started on.
        await old.execute_update(CaseWorkflow.review, Review(reviewer="officer-li", decision="approve", opinion="ok"))
        await wait_status(old, lambda s: s.stage == CaseStage.IN_PANEL, timeout=30)
        for member in ("officer-zhao", "officer-chen"):
            await old.execute_update(CaseWorkflow.vote, Vote(member=member, choice="approve"))
        await wait_status(old, lambda s: s.stage == CaseStage.APPROVED and s.rating_open_until is not None, timeout=30)
        assert await _version(old) == ("b1", VersioningBehavior.VERSIONING_BEHAVIOR_PINNED)
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait(timeout=30)
        log.close()
