"""CaseWorkflow, one module per phase: accept → route → decide → rate (workflow.py reads as the procedure)."""

from workflows.case.workflow import CaseWorkflow

__all__ = ["CaseWorkflow"]
