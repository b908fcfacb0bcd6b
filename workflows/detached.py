"""Starting a workflow that outlives the one starting it (a rectification, a risk)."""

from typing import Any

from temporalio import workflow
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy


async def start_detached(workflow_type: str, arg: Any, workflow_id: str, summary: str, details: str = "") -> bool:
    """Start `workflow_type` as a child the parent's end leaves running. False when that id is
    already taken (started by hand, or an earlier attempt): that one stands, and the parent must
    not fail over it."""
    try:
        await workflow.start_child_workflow(
            workflow_type,
            arg,
            id=workflow_id,
            parent_close_policy=ParentClosePolicy.ABANDON,
            static_summary=summary,
            static_details=details or None,
        )
    except WorkflowAlreadyStartedError:
        return False
    return True
