"""JSON Schemas of the integration contract, generated from the models (never hand-written).

`python starter.py admin schema` writes them to docs/schemas/; a test checks the committed copy.
"""

from typing import Any

from pydantic import BaseModel

from contract.approval import DepartmentOpinion, Resubmit, Review, Transfer, Urge, Vote
from contract.rating import ConfirmSetAside, Rate, RectificationOrder, RectificationStatus, Rectify, Verify
from contract.rating import Rating
from contract.risk import (
    Acknowledge,
    Regrade,
    Resolve,
    RiskReport,
    RiskReviewRecord,
    RiskStatus,
    SubmitPlan,
    WatchState,
    WatchStatus,
)
from contract.suggestion import Reclassify, Respond, Suggestion, SuggestionStatus
from contract.case import CaseApplication, CaseOutcome, CaseStatus, SupplementMaterials, SupplementResult, Withdraw

# name -> model; names are "<Workflow>.<message>.<input|result>" as integrators meet them.
CONTRACT: dict[str, type[BaseModel]] = {
    "CaseWorkflow.input": CaseApplication,
    "CaseWorkflow.result": CaseOutcome,
    "CaseWorkflow.supplement_materials.input": SupplementMaterials,
    "CaseWorkflow.supplement_materials.result": SupplementResult,
    "CaseWorkflow.withdraw.input": Withdraw,
    "CaseWorkflow.withdraw.result": CaseOutcome,
    "CaseWorkflow.department_opinion.input": DepartmentOpinion,
    "CaseWorkflow.review.input": Review,
    "CaseWorkflow.transfer.input": Transfer,
    "CaseWorkflow.resubmit.input": Resubmit,
    "CaseWorkflow.vote.input": Vote,
    "CaseWorkflow.urge.input": Urge,
    "CaseWorkflow.rate.input": Rate,
    # department_opinion, review, transfer, resubmit, vote, urge and rate answer with the case status.
    "CaseWorkflow.status.result": CaseStatus,
    "RectificationWorkflow.input": RectificationOrder,
    "RectificationWorkflow.verify.input": Verify,
    "RectificationWorkflow.confirm_set_aside.input": ConfirmSetAside,
    "RectificationWorkflow.rectify.input": Rectify,
    # Its result, and the answer of each of its updates, is its status.
    "RectificationWorkflow.status.result": RectificationStatus,
    "SuggestionWorkflow.input": Suggestion,
    "SuggestionWorkflow.reclassify.input": Reclassify,
    "SuggestionWorkflow.respond.input": Respond,
    # Its result, and the answer of each of its updates, is its status.
    "SuggestionWorkflow.status.result": SuggestionStatus,
    "RiskWorkflow.input": RiskReport,
    "RiskWorkflow.acknowledge.input": Acknowledge,
    "RiskWorkflow.submit_plan.input": SubmitPlan,
    "RiskWorkflow.regrade.input": Regrade,
    "RiskWorkflow.review.input": RiskReviewRecord,
    "RiskWorkflow.resolve.input": Resolve,
    # Its result, and the answer of each of its updates, is its status.
    "RiskWorkflow.status.result": RiskStatus,
    "SatisfactionWatchWorkflow.input": WatchState,
    "SatisfactionWatchWorkflow.rating.input": Rating,  # a signal, sent by CaseWorkflow
    "SatisfactionWatchWorkflow.status.result": WatchStatus,
}

# The field that names who acts, per message model; the signed assertion must name the same actor
# (docs/security.md). A message without one (rate, a suggestion, a risk report, hallflow's own)
# is acted by whom its assertion names: the applicant, the public, an officer, hallflow.
ACTOR_FIELD: dict[type[BaseModel], str] = {
    CaseApplication: "clerk",
    SupplementMaterials: "submitted_by",
    Withdraw: "requested_by",
    DepartmentOpinion: "officer",
    Review: "reviewer",
    Transfer: "by",
    Resubmit: "submitted_by",
    Vote: "member",
    Urge: "by",
    Verify: "officer",
    ConfirmSetAside: "officer",
    Rectify: "officer",
    Reclassify: "by",
    Respond: "officer",
    Acknowledge: "officer",
    SubmitPlan: "officer",
    Regrade: "by",
    RiskReviewRecord: "by",
    Resolve: "officer",
}


def actor_named(message: Any) -> str | None:
    """Who the message says acts, or None when the model has no such field."""
    field = ACTOR_FIELD.get(type(message))
    return getattr(message, field) if field else None


def all_schemas() -> dict[str, dict[str, Any]]:
    return {name: model.model_json_schema() for name, model in CONTRACT.items()}
