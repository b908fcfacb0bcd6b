"""Custom search attributes hallflow keeps current, so operators can list cases in the Web UI.

`make run` and the test fixtures register every key in ALL; adding a key means adding it here.
"""

from temporalio.common import SearchAttributeKey

CASE_STAGE = SearchAttributeKey.for_keyword("CaseStage")
MATTER_CODE = SearchAttributeKey.for_keyword("MatterCode")
DEPARTMENT = SearchAttributeKey.for_keyword("Department")
HALL = SearchAttributeKey.for_keyword("Hall")
CASE_DUE_AT = SearchAttributeKey.for_datetime("CaseDueAt")

ALL = [CASE_STAGE, MATTER_CODE, DEPARTMENT, HALL, CASE_DUE_AT]
