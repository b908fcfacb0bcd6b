"""Builders for test inputs: a case application for a catalog matter, with chosen gaps."""

import uuid
from datetime import datetime, timedelta, timezone

from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from contract.case import Applicant, CaseApplication, case_workflow_id
from contract.matter import Matter
from workflows.case import CaseWorkflow

# Tue 2099-09-29 10:00 Asia/Shanghai: the eve of the (test) National Day break, see tests/data/calendar.
TUESDAY_BEFORE_NATIONAL_DAY = datetime(2099, 9, 29, 2, 0, tzinfo=timezone.utc)
WEDNESDAY_BEFORE_NATIONAL_DAY = TUESDAY_BEFORE_NATIONAL_DAY + timedelta(days=1)


def application(matter: Matter, *, without: tuple[str, ...] = (), signed: bool = False, applicant_id: str | None = None) -> CaseApplication:
    return CaseApplication(
        case_no=f"T{uuid.uuid4().hex[:12].upper()}",
        matter_code=matter.code,
        hall="hall-central",
        clerk="clerk-01",
        applicant=Applicant(
            applicant_id=applicant_id or f"app-{uuid.uuid4().hex[:10]}",
            name="张三",
            id_number="110101199001011234",
            phone="13800000000",
        ),
        materials=[m.code for m in matter.materials if m.code not in without],
        commitment_signed=signed,
    )


async def start_case(client: Client, app: CaseApplication, task_queue: str) -> WorkflowHandle:
    return await client.start_workflow(
        CaseWorkflow.run,
        app,
        id=case_workflow_id(app.case_no),
        task_queue=task_queue,
        execution_timeout=timedelta(days=400),
    )


async def wait_status(handle: WorkflowHandle, check, timeout: float = 10.0, query=None):
    """Query `status` (CaseWorkflow's unless `query` is another's) until `check(status)` holds;
    the last status either way."""
    import asyncio

    from workflows.case import CaseWorkflow

    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        try:
            status = await handle.query(query or CaseWorkflow.status)
        except RPCError as err:
            # A query that times out while the worker is between runs (continue-as-new) or busy:
            # ask again until our own deadline.
            if err.status != RPCStatusCode.DEADLINE_EXCEEDED and "Timeout" not in err.message or loop.time() > end:
                raise
            continue
        if check(status) or loop.time() > end:
            return status
        await asyncio.sleep(0.02)


async def eventually(check, timeout: float = 10.0):
    """Poll `check` until it returns a truthy value: activities finish a moment after a stage shows."""
    import asyncio

    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        value = check()
        if value or loop.time() > end:
            return value
        await asyncio.sleep(0.05)


# Who answers for each consulted department (data/org.toml): an officer of that department.
OFFICER_OF = {
    "development-reform": "drc-01",
    "natural-resources": "nr-01",
    "ecology-environment": "eco-01",
    "fire-rescue": "fire-01",
    "civil-air-defense": "cad-01",
    "taxation": "tax-01",
}
