"""JSON Schemas of the integration contract, generated from the models (never hand-written).

`python starter.py schema` writes them to docs/schemas/; a test checks the committed copy.
"""

from typing import Any

from pydantic import BaseModel

from contract.case import CaseApplication, CaseOutcome, CaseStatus, SupplementMaterials, SupplementResult, Withdraw

# name -> model; names are "<Workflow>.<message>.<input|result>" as integrators meet them.
CONTRACT: dict[str, type[BaseModel]] = {
    "CaseWorkflow.input": CaseApplication,
    "CaseWorkflow.result": CaseOutcome,
    "CaseWorkflow.supplement_materials.input": SupplementMaterials,
    "CaseWorkflow.supplement_materials.result": SupplementResult,
    "CaseWorkflow.withdraw.input": Withdraw,
    "CaseWorkflow.withdraw.result": CaseOutcome,
    "CaseWorkflow.status.result": CaseStatus,
}


def all_schemas() -> dict[str, dict[str, Any]]:
    return {name: model.model_json_schema() for name, model in CONTRACT.items()}
