"""Mixin for every hallflow workflow: the organisation directory it holds, who is acting in the
message being checked, and directory changes sent to it while it runs.

The guard (workflows/guard.py) loads `org` before `run` and proves each message before its
validator: `sender` is the actor proven for the message being checked, `start_proof` the proof of
the start, and the proof of the message whose handler runs is `workflows.proof.current_proof()`
(each audit row takes its key from there: workflows/trail.py). `signed` keeps, per actor, the key
of the last message from them that the workflow accepted. `who_may` gives each message's rule,
`check_start` what else the workflow's input must satisfy.
"""

from collections.abc import Iterable
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contract.org import Directory, DirectoryChange, Role
    from workflows.proof import Proven, current_proof


class Governed:
    org: Directory | None = None
    sender: str | None = None
    proving: Proven | None = None  # the proof of the message being checked, once proven
    start_proof: Proven | None = None  # None: started by a hallflow workflow, or not yet proven
    signed: dict[str, str] = {}  # noqa: RUF012 - replaced, never mutated

    def who_may(self, message: str, req: Any) -> tuple[Iterable[str], str] | None:
        """Who may send `message` ("start" for the workflow input) and the step's words for the
        refusal; None: anyone in the directory, the step's own rule deciding (reviewer, panel)."""
        return None

    def check_start(self, req: Any) -> None:
        """Once the sender may start this workflow: refuse an input naming someone or something the
        directory does not allow (UnknownActor, Forbidden), e.g. a risk's owner. Not called for a
        workflow a hallflow workflow starts."""

    @workflow.signal(name="directory_changed")
    async def directory_changed(self, change: DirectoryChange) -> None:
        # The guard proved the sender; only a directory admin may hand a workflow a new directory.
        proof = current_proof()
        org, sender = self.org, proof.actor if proof is not None else None
        if org is None or sender is None or sender not in org.with_role(Role.DIRECTORY_ADMIN, workflow.now()):
            workflow.logger.warning("directory_change_refused", extra={"sender": sender})
            return
        if change.directory.version != org.version:
            self.org = change.directory
            workflow.logger.info("directory_changed", extra={"from": org.version, "to": change.directory.version})
