"""Custom search attributes hallflow keeps current, so operators can list cases in the Web UI.

`make run` and the test fixtures register every key in ALL; adding a key means adding it here.
"""

from temporalio.common import SearchAttributeKey

CASE_STAGE = SearchAttributeKey.for_keyword("CaseStage")
MATTER_CODE = SearchAttributeKey.for_keyword("MatterCode")
DEPARTMENT = SearchAttributeKey.for_keyword("Department")
HALL = SearchAttributeKey.for_keyword("Hall")
CASE_DUE_AT = SearchAttributeKey.for_datetime("CaseDueAt")
# Step 2: deadline warnings (yellow at 80% of the promised limit, red when overdue) and
# deferred materials still owed while the case moves through approval.
CASE_OVERDUE = SearchAttributeKey.for_bool("CaseOverdue")
RISK_LEVEL = SearchAttributeKey.for_keyword("RiskLevel")
MATERIALS_PENDING = SearchAttributeKey.for_bool("MaterialsPending")

# Step 3: feedback loops (RectificationWorkflow, SuggestionWorkflow): where the loop stands, when
# its current step is due, and whether that step is overdue (escalated, still open).
FEEDBACK_STAGE = SearchAttributeKey.for_keyword("FeedbackStage")
STEP_DUE_AT = SearchAttributeKey.for_datetime("StepDueAt")
STEP_OVERDUE = SearchAttributeKey.for_bool("StepOverdue")
# Step 4: a risk's state in the register (RiskLevel above holds its level too).
RISK_STATE = SearchAttributeKey.for_keyword("RiskState")
# Step 5: who an open workflow waits on (officers, department codes, `applicant:<id>`), with the
# due of that wait in StepDueAt: `starter.py operator inbox` reads them, the task list Temporal lacks.
WAITING_ON = SearchAttributeKey.for_keyword_list("WaitingOn")

ALL = [
    CASE_STAGE,
    MATTER_CODE,
    DEPARTMENT,
    HALL,
    CASE_DUE_AT,
    CASE_OVERDUE,
    RISK_LEVEL,
    MATERIALS_PENDING,
    FEEDBACK_STAGE,
    STEP_DUE_AT,
    STEP_OVERDUE,
    RISK_STATE,
    WAITING_ON,
]


async def ensure_search_attributes(client) -> list[str]:
    """Register every key in ALL that the namespace lacks; refuse a name registered with another type.

    Safe to run at every start, on every server (the dev server applies --search-attribute only to
    a new database file). Returns the names it added.
    """
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
    from temporalio.service import RPCError, RPCStatusCode

    try:
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace)
        )
        existing: dict | None = dict(listed.custom_attributes)
    except RPCError as err:
        if err.status != RPCStatusCode.UNIMPLEMENTED:
            raise
        existing = None  # the time-skipping test server cannot list (nor show a type conflict)
    missing = {}
    for key in ALL:
        have = None if existing is None else existing.get(key.name)
        if have is None:
            missing[key.name] = key.indexed_value_type
        elif have != key.indexed_value_type:
            raise RuntimeError(f"search attribute {key.name} exists with another type ({have}); hallflow needs {key.indexed_value_type}")
    if not missing:
        return []
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
        )
        return sorted(missing)
    except RPCError as err:
        if err.status != RPCStatusCode.ALREADY_EXISTS:
            raise
    # Some exist already (a server that cannot list, or another setup at the same moment): one by
    # one, so "already exists" names the key it is about.
    added = []
    for name, value_type in missing.items():
        try:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(namespace=client.namespace, search_attributes={name: value_type})
            )
            added.append(name)
        except RPCError as err:
            if err.status != RPCStatusCode.ALREADY_EXISTS:
                raise
    return sorted(added)
