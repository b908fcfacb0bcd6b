"""Mixin for every hallflow workflow: the organisation directory it holds, who is acting in the
message being checked, and directory changes sent to it while it runs.

The guard (workflows/guard.py) loads `org` before `run` and sets `sender` (and `signed`, the key
each actor signed with) before each validator; `who_may` gives each message's rule.
"""

from collections.abc import Iterable
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contract.org import Directory, DirectoryChange, Role


class Governed:
    org: Directory | None = None
    sender: str | None = None
    signed: dict[str, str] = {}  # noqa: RUF012 - replaced, never mutated

    def who_may(self, message: str, req: Any) -> tuple[Iterable[str], str] | None:
        """Who may send `message` ("start" for the workflow input) and the step's words for the
        refusal; None: anyone in the directory, the step's own rule deciding (reviewer, panel)."""
        return None

    @workflow.signal(name="directory_changed")
    async def directory_changed(self, change: DirectoryChange) -> None:
        # The guard proved the sender; only a directory admin may hand a workflow a new directory.
        org, sender = self.org, self.sender
        if org is None or sender is None or sender not in org.with_role(Role.DIRECTORY_ADMIN, workflow.now()):
            workflow.logger.warning("directory_change_refused", extra={"sender": sender})
            return
        if change.directory.version != org.version:
            self.org = change.directory
            workflow.logger.info("directory_changed", extra={"from": org.version, "to": change.directory.version})
