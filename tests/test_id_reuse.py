"""An integrator starting a case with the `temporal` CLI as docs/integration.md says: a second
start of the same case number is refused (non-zero exit), while the first runs and after it ended."""

import os
import re
import subprocess
import time

from settings import ROOT
from tests.temporal_fixtures import BIN


def documented_case_start() -> str:
    """The first CLI example that starts a CaseWorkflow, as integrators copy it: the application in
    a shell variable, then the start, signed by `starter.py sign` for the clerk."""
    doc = (ROOT / "docs" / "integration.md").read_text(encoding="utf-8")
    blocks = re.findall(r"<!-- cli-example -->\n```sh\n(.*?)```", doc, re.S)
    return next(b for b in blocks if re.search(r"^temporal workflow start .*--type CaseWorkflow", b, re.M))


def test_the_documented_start_refuses_a_second_start_of_the_same_case(dev_server):
    block = documented_case_start()
    case_no = re.search(r"--workflow-id case-(\S+)", block).group(1)
    mine = block.replace(case_no, f"DOC-{time.time_ns()}")
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "TEMPORAL_ADDRESS": dev_server.client.service_client.config.target_host,
    }

    def run(command: str) -> subprocess.CompletedProcess:
        # From the repository root, as the doc's examples run (`python starter.py sign`).
        return subprocess.run(["bash", "-c", command], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)

    first = run(mine)
    assert first.returncode == 0, first.stderr
    again = run(mine)  # the first still runs (no worker here): it waits for acceptance
    assert again.returncode != 0, again.stdout
    assert "already running" in again.stderr

    workflow_id = re.search(r"--workflow-id (\S+)", mine).group(1)
    assert run(f"temporal workflow terminate --workflow-id {workflow_id} --reason test").returncode == 0
    after_end = run(mine)  # a case number names one case forever
    assert after_end.returncode != 0, after_end.stdout
    assert "already finished" in after_end.stderr
