"""Property-based tests (issue 12): random and hostile payloads to every workflow input, every
Update and every signal twin (`<update>_signal`). Each payload is refused with a documented error
(docs/integration.md) or applied as the procedure says, and no workflow task ever fails.

What is sent: a well-formed message built from the contract's models, then mutated 0-2 times (a
field dropped, an unknown field, a value of another JSON type or a coerced one — true for an int,
"5", 0 or "yes" for a bool —, a 100k-character string, a list nested 200 to 10000 deep, emoji /
RTL / other unicode, SQL-looking text, NUL, padding), sent as json/plain or raw (binary/null,
binary/plain, json/protobuf, no encoding, another encoding name, json/plain in GBK, UTF-16,
Latin-1 or broken UTF-8), or as 0 or 2 arguments.

Every message is signed (docs/security.md) for the actor it names, as a sender's system would;
a name no assertion can carry (a control character, a lone surrogate) is signed for the
applicant instead. Names are mostly people of data/org.toml whom the step allows, so the
validators are reached; now and then someone else, or anything at all.

The oracle: the contract's own models say whether the JSON is valid, strictly, as
contract/converter.py reads it (a NUL anywhere is refused). An invalid payload must be refused
with InvalidPayload (a start: the workflow fails at once with InvalidPayload, or with
WorkflowIdMismatch when a valid input names another workflow id). Who sends a readable one is
judged next, from docs/security.md's table "Who may do what" and the directory: Forbidden (the
assertion speaks for someone other than the message names, or they may not take this step) or
UnknownActor (not in the directory). A twin is judged on its first payload before the twin reads
its arguments, so a second argument is refused only after that. Past the directory, a message
gets exactly the answer the workflow's state calls for, predicted from its `status` query
(WrongStage, NotReviewer, ... or success, whose effect on `status` is then checked). Refusals are
non-retryable; a twin's refusal shows in `status.refused_signals`. After every example the
workflow is running (or completed where its procedure completes it), `status` answers, and its
history holds no WORKFLOW_TASK_FAILED event but the server's benign UNHANDLED_COMMAND (tests/temporal_fixtures.py).

One time-skipping server and one worker for the module, and one long-lived workflow per state
(a case awaiting review, consulting, in the panel, returned, with a deferred material, ended and
open for rating; a rectification verifying, awaiting confirmation, rectifying; an open
suggestion; a risk at each step), replaced when a message moves it on. The server's clock is
never unlocked here (no `handle.result()`, no `env.sleep`), so no deadline fires meanwhile.
"""

import asyncio
import copy
import json
import math
import os
import re
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter, ValidationError
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.calendar import Calendar, CalendarActivities
from activities.catalog import CatalogActivities, load_catalog
from activities.db import create_tables, make_engine
from activities.lent import Lent, lend, take_back
from activities.org import load_directory
from activities.risk import load_risk_policy
from activities.store import Store
from activities.watch import WatchDelivery
from contract.common import SHANGHAI
from contract import search
from contract.approval import (
    DepartmentOpinion,
    OpinionState,
    Resubmit,
    Review,
    Transfer,
    Urge,
    Vote,
)
from contract.assertion import OneLine
from contract.case import (
    CaseApplication,
    CaseStage,
    SupplementMaterials,
    Withdraw,
    case_workflow_id,
)
from tests.org_fixtures import data_converter
from contract.org import APPLICANT, SYSTEM_ACTOR, Role
from contract.rating import (
    ConfirmSetAside,
    Rate,
    Rating,
    RectificationOrder,
    RectificationStage,
    Rectify,
    Verify,
    rectification_workflow_id,
)
from contract.risk import (
    Acknowledge,
    Level,
    Regrade,
    Resolve,
    RiskReport,
    RiskReviewRecord,
    RiskState,
    SubmitPlan,
    WatchState,
    risk_workflow_id,
)
from contract.schemas import ACTOR_FIELD, actor_named
from contract.suggestion import (
    Reclassify,
    Respond,
    Suggestion,
    SuggestionStage,
    suggestion_workflow_id,
)
from security.keys import load_private
from security.sender import Signer
from settings import ROOT, get_settings
from tests.builders import application, start_case
from tests.temporal_fixtures import BIN, TEST_CALENDAR, TEST_EPOCH, SkippedClockTaskTimeout, failed_tasks, signer
from worker import INTERCEPTORS, WORKFLOWS, hallflow_activities
from workflows.authority import department_people, hall_people, risk_people
from workflows.case import CaseWorkflow
from workflows.rectification import RectificationWorkflow
from workflows.risk import RiskWorkflow
from workflows.satisfaction import SatisfactionWatchWorkflow, watch_workflow_id
from workflows.suggestion import SuggestionWorkflow

# A start refused in the workflow's __init__ leaves the SDK's unawaited run coroutine behind.
pytestmark = pytest.mark.filterwarnings("ignore:coroutine .*run_workflow' was never awaited:RuntimeWarning")

CATALOG = load_catalog(ROOT / "data" / "matters.toml")
RISK_POLICY = load_risk_policy(ROOT / "data" / "risk.toml")
TIMEOUT = timedelta(days=30)  # every workflow started here has an execution timeout

# Examples per target (inputs: half as many again): 38 Update/twin targets and 5 inputs take
# about a minute on two cores. HALLFLOW_PROPERTY_EXAMPLES=200 makes a longer hunt.
EXAMPLES = int(os.environ.get("HALLFLOW_PROPERTY_EXAMPLES", "15"))
INPUT_EXAMPLES = EXAMPLES * 3 // 2
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # nothing written to the worktree; a failure prints its example and a blob
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ---- the documented error types --------------------------------------------------------------

DOCS = (ROOT / "docs" / "integration.md").read_text(encoding="utf-8")
RAISED = set(
    re.findall(r'type="([A-Z][A-Za-z]+)"', "".join(p.read_text(encoding="utf-8") for p in (ROOT / "workflows").rglob("*.py")))
)
RAISED |= {"InvalidPayload"}  # contract/converter.py
DOCUMENTED = {t for t in RAISED if f"`{t}`" in DOCS}


def test_every_error_type_the_workflows_raise_is_documented():
    assert sorted(RAISED - DOCUMENTED) == [], "raised by workflows/ but not named in docs/integration.md"


# ---- module fixtures: one server, one worker, long-lived workflows ------------------------------


# Who the test client signs the next message for (signed_as); unset, the message's own actor, or
# the applicant, hallflow or a risk's owner for a message naming nobody (tests/temporal_fixtures.py).
SIGN_AS: ContextVar[str | None] = ContextVar("sign_as", default=None)


@contextmanager
def signed_as(actor: str | None) -> Iterator[None]:
    token = SIGN_AS.set(actor)
    try:
        yield
    finally:
        SIGN_AS.reset(token)


def _signer() -> Signer:
    usual = signer()
    return Signer(usual.key, lambda value: SIGN_AS.get() or usual.actor(value))


@pytest_asyncio.fixture(scope="module")
async def henv():
    signing = _signer()
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=data_converter, test_server_existing_path=str(BIN / "temporal-test-server"),
        interceptors=[signing, SkippedClockTaskTimeout()],
    )
    signing.clock = env.get_current_time  # assertions are judged by the server's clock
    await search.ensure_search_attributes(env.client)
    now = await env.get_current_time()
    await env.sleep(TEST_EPOCH - now)  # the only unlocked moment: before any workflow runs
    try:
        yield env
    finally:
        await env.shutdown()


@pytest_asyncio.fixture(scope="module")
async def hall(henv, tmp_path_factory):
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('properties') / 'hallflow.db'}")
    create_tables(engine)
    store = Store(engine)
    task_queue = f"hallflow-properties-{uuid.uuid4()}"
    activities = hallflow_activities(
        store,
        CalendarActivities(Calendar.load(TEST_CALENDAR), TEST_CALENDAR),
        CatalogActivities(CATALOG),
        watch=WatchDelivery(henv.client, task_queue),
    )
    # The refusal sink and the worker's key, as worker.py lends them.
    lend(task_queue, Lent(store=store, key=load_private(get_settings().worker_key)))
    try:
        with ThreadPoolExecutor(max_workers=8) as executor:
            async with Worker(
                henv.client,
                task_queue=task_queue,
                workflows=WORKFLOWS,
                interceptors=INTERCEPTORS,
                activities=activities,
                activity_executor=executor,
            ):
                yield Hall(henv, henv.client, task_queue)
    finally:
        take_back(task_queue)


def fresh(prefix: str = "P") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12].upper()}"


@dataclass
class Target:
    handle: WorkflowHandle
    state: str
    urged: bool = False  # one urge per working day: the clock is locked, so once is all


class Hall:
    """The module's worker and the live workflow of each state, made on first use."""

    def __init__(self, env: WorkflowEnvironment, client: Client, task_queue: str) -> None:
        self.env, self.client, self.task_queue = env, client, task_queue
        self.live: dict[str, Target] = {}

    async def target(self, state: str) -> Target:
        if state not in self.live:
            handle = await STATES[state].make(self)
            await idle(handle)  # an ended case opens its rating window a moment after its end
            status = await handle.query(QUERIES[STATES[state].workflow])
            assert STATES[state].home(status), f"{handle.id} did not reach {state}: {status}"
            self.live[state] = Target(handle, state)
        return self.live[state]

    def retire(self, state: str) -> None:
        self.live.pop(state, None)

    async def start(self, run: Any, arg: Any, workflow_id: str) -> WorkflowHandle:
        return await self.client.start_workflow(
            run, arg, id=workflow_id, task_queue=self.task_queue, execution_timeout=TIMEOUT
        )


# ---- the states a long-lived workflow is kept in ------------------------------------------------


async def _case(hall: Hall, matter: str, without: tuple[str, ...] = (), signed: bool = False, then=None):
    handle = await start_case(hall.client, application(CATALOG[matter], without=without, signed=signed), hall.task_queue)
    first = await poll(handle, CaseWorkflow.status, lambda s: s.stage not in (CaseStage.RECEIVED, CaseStage.ACCEPTED), 20)
    if then is not None:
        await then(handle, first)
    return handle


async def _review(handle: WorkflowHandle, status, **review) -> None:
    await handle.execute_update(CaseWorkflow.review, Review(reviewer=status.reviewer, **review))


async def _rectification(hall: Hall, then=None) -> WorkflowHandle:
    case_no = fresh("R")
    order = RectificationOrder(
        case_no=case_no,
        matter_code="housing-fund-withdrawal",
        department="housing-fund-center",
        hall="hall-central",
        rating=Rating(
            case_no=case_no,
            matter_code="housing-fund-withdrawal",
            department="housing-fund-center",
            hall="hall-central",
            score=1,
            comment="slow",
            channel="app",
            at=TEST_EPOCH,
        ),
        applicant_id="app-properties",
    )
    handle = await hall.start(RectificationWorkflow.run, order, rectification_workflow_id(case_no))
    await poll(handle, RectificationWorkflow.status, lambda s: s.due_at is not None, 20)
    if then is not None:
        await handle.execute_update(RectificationWorkflow.verify, then)
        await poll(handle, RectificationWorkflow.status, lambda s: s.stage != RectificationStage.VERIFYING)
    return handle


async def _suggestion(hall: Hall) -> WorkflowHandle:
    s = Suggestion(
        suggestion_no=fresh("S"),
        submitter_id="citizen-properties",
        topic="seats",
        content="The waiting area is full by 9:30.",
        department="natural-resources",
    )
    handle = await hall.start(SuggestionWorkflow.run, s, suggestion_workflow_id(s.suggestion_no))
    await poll(handle, SuggestionWorkflow.status, lambda s: s.due_at is not None, 20)
    return handle


async def _risk(hall: Hall, steps: int = 0) -> WorkflowHandle:
    r = RiskReport(
        risk_no=fresh("K"),
        type="execution",
        title="queue over two hours",
        probability=0.1,
        impact="low",
        responsible_department="market-regulation",
        owner="officer-li",
        level=Level.BLUE,  # working-day limits: nothing is due while the clock is locked
    )
    handle = await hall.start(RiskWorkflow.run, r, risk_workflow_id(r.risk_no))
    q = RiskWorkflow.status
    await poll(handle, q, lambda s: s.due_at is not None, 20)
    if steps >= 1:
        await handle.execute_update(RiskWorkflow.acknowledge, Acknowledge(officer="officer-li", group="group-1"))
        await poll(handle, q, lambda s: s.entry.state == RiskState.AWAITING_PLAN and s.due_at is not None)
    if steps >= 2:
        plan = SubmitPlan(officer="officer-li", plan="spare readers", due=TEST_EPOCH + timedelta(days=3))
        await handle.execute_update(RiskWorkflow.submit_plan, plan)
        await poll(handle, q, lambda s: s.entry.state == RiskState.HANDLING)
    if steps >= 3:
        await handle.execute_update(RiskWorkflow.review, RiskReviewRecord(by="officer-li", cause="c", what_worked="w", what_changes="x"))
        await poll(handle, q, lambda s: s.reviewed)
    return handle


@dataclass
class State:
    workflow: str
    make: Callable[[Hall], Any]
    home: Callable[[Any], bool]  # still in this state (else replaced by a fresh one)


STATES: dict[str, State] = {
    # CaseWorkflow
    "review": State(
        "case", lambda h: _case(h, "social-insurance-transfer"), lambda s: s.stage == CaseStage.AWAITING_REVIEW
    ),
    "deferred": State(
        "case",
        lambda h: _case(h, "enterprise-opening", without=("residence-proof",), signed=True),
        lambda s: s.stage == CaseStage.AWAITING_REVIEW and bool(s.missing_materials),
    ),
    "consulting": State(
        "case", lambda h: _case(h, "real-estate-registration"), lambda s: s.stage == CaseStage.CONSULTING
    ),
    "panel": State(
        "case",
        lambda h: _case(h, "enterprise-opening", then=lambda hd, s: _review(hd, s, decision="approve")),
        lambda s: s.stage == CaseStage.IN_PANEL,
    ),
    "returned": State(
        "case",
        lambda h: _case(
            h, "social-insurance-transfer", then=lambda hd, s: _review(hd, s, decision="return", corrections=["sign page 2"])
        ),
        lambda s: s.stage == CaseStage.RETURNED,
    ),
    "ended": State(
        "case",
        lambda h: _case(h, "housing-fund-withdrawal"),
        lambda s: s.stage.is_final and s.rating is None and s.rating_open_until is not None,
    ),
    # RectificationWorkflow
    "verifying": State("rectification", _rectification, lambda s: s.stage == RectificationStage.VERIFYING),
    "confirming": State(
        "rectification",
        lambda h: _rectification(h, Verify(officer="officer-fund-1", finding="same text on 30 cases", malicious=True)),
        lambda s: s.stage == RectificationStage.AWAITING_CONFIRMATION,
    ),
    "rectifying": State(
        "rectification",
        lambda h: _rectification(h, Verify(officer="officer-fund-1", finding="kiosk was down")),
        lambda s: s.stage == RectificationStage.RECTIFYING,
    ),
    # SuggestionWorkflow
    "open": State("suggestion", _suggestion, lambda s: s.stage == SuggestionStage.OPEN),
    # RiskWorkflow
    "acknowledging": State("risk", lambda h: _risk(h, 0), lambda s: s.entry.state == RiskState.AWAITING_ACKNOWLEDGEMENT),
    "planning": State("risk", lambda h: _risk(h, 1), lambda s: s.entry.state == RiskState.AWAITING_PLAN),
    "handling": State("risk", lambda h: _risk(h, 2), lambda s: s.entry.state == RiskState.HANDLING and not s.reviewed),
    "reviewed": State("risk", lambda h: _risk(h, 3), lambda s: s.entry.state == RiskState.HANDLING and s.reviewed),
}

QUERIES = {
    "case": CaseWorkflow.status,
    "rectification": RectificationWorkflow.status,
    "suggestion": SuggestionWorkflow.status,
    "risk": RiskWorkflow.status,
}

# ---- hostile values ---------------------------------------------------------------------------

SQL = [
    "'; DROP TABLE audit; --",
    "Robert'); DROP TABLE cases;--",
    '" OR 1=1 --',
    "1; DELETE FROM ratings WHERE 1=1",
    "' UNION SELECT id_number FROM applicants --",
]
UNICODE = [
    "👩‍💻🏛️ 办件 ✅",
    "مرحبا بالعالم",  # Arabic, right to left
    "\u202eevil\u202c",  # right-to-left override
    "שלום עולם",
    "e\u0301\u200b\ufeff\u2028",  # combining accent, zero width space, BOM, line separator
    "\U0001f600" * 60,
    "𠀀𪚥",  # outside the BMP
    "\ud800",  # a lone surrogate
    "Ｏｆｆｉｃｅｒ－ｌｉ",  # full-width
    "officer-li\u0000",
]
ODD = ["", " ", "  padded  ", "\t\n", "%s%n{0}${jndi:ldap://x}", "<script>alert(1)</script>", "\\u0000", "null", "5"]
HUGE = ["x" * 100_000, "办" * 100_000, "😀" * 50_000, SQL[0] * 4_000]
DEPTHS = [200, 1_000, 10_000]


def deep(depth: int) -> str:
    """A marker that dumps() expands into a list nested `depth` deep (json.dumps would recurse)."""
    return f"\x01deep:{depth}\x01"


OFFICERS = sorted(
    {r for m in CATALOG.values() for r in m.reviewers}
    | {p for m in CATALOG.values() if m.panel for p in m.panel.members}
    | {"officer-fund-1", "officer-fund-2"}
)
MATERIALS = sorted({c for m in CATALOG.values() for c in m.material_codes})
DEPARTMENTS = sorted({m.lead_department for m in CATALOG.values()} | {c.department for m in CATALOG.values() for c in m.consult})
# The directory the worker loads (data/org.toml): who may act, in the oracle below.
ORG = load_directory(get_settings().org_file, None)
PEOPLE = sorted([o.id for o in ORG.officers] + [APPLICANT] + [h.code for h in ORG.halls])

json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8)
)
json_value = st.recursive(
    json_leaf, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3), max_leaves=6
)
# As long as the contract allows: Text and reasons 4000 characters (a name: 200, in names()).
LONGEST = ["办" * 4_000, "a" * 3_999 + "!", "'; DROP TABLE audit; --" * 173]
hostile_text = st.sampled_from(SQL + UNICODE + ODD)
text = st.one_of(st.text(max_size=30), hostile_text, st.sampled_from(["lawful", "完整合法", "ok"]), st.sampled_from(LONGEST))
some_text = st.one_of(
    st.sampled_from(["lawful", "完整合法", "needs a staffing study"]),
    st.text(min_size=1, max_size=30),
    hostile_text,
    st.sampled_from(LONGEST),
)


def names(*known: str) -> st.SearchStrategy[str]:
    """Mostly someone the step expects (padded now and then), or another person of the directory;
    else the same in other letter case (nobody, to the directory), or anything."""
    pool = list(known) or OFFICERS
    return st.one_of(
        st.sampled_from(pool),
        st.sampled_from(pool),
        st.sampled_from(pool).map(lambda n: f"  {n} "),
        st.sampled_from(PEOPLE),
        st.sampled_from(pool).map(str.upper),
        st.text(min_size=1, max_size=20),
        hostile_text,
        st.just("名" * 200),
    )


codes = st.one_of(st.sampled_from(MATERIALS), st.sampled_from(["passport", "Residence-Proof", "a b", "x" * 65]))
instant = st.datetimes(min_value=datetime(2098, 1, 1), max_value=datetime(2101, 1, 1))
aware = st.builds(
    lambda d, h: d.replace(tzinfo=timezone(timedelta(hours=h))), instant, st.integers(-12, 14)
).map(lambda d: d.isoformat())
naive_or_aware = st.one_of(aware, instant.map(lambda d: d.isoformat()))
days = instant.map(lambda d: d.date().isoformat())

# Well-formed messages (as JSON objects) of each Update, with values that reach every branch.
MESSAGES: dict[tuple[str, str], tuple[type[BaseModel], st.SearchStrategy[dict]]] = {
    ("case", "supplement_materials"): (
        SupplementMaterials,
        st.fixed_dictionaries(
            {
                "materials": st.lists(
                    st.one_of(st.just("residence-proof"), st.sampled_from(sorted(CATALOG["enterprise-opening"].material_codes)), codes),
                    min_size=1,
                    max_size=3,
                ),
                "submitted_by": names("clerk-01", "applicant"),
            }
        ),
    ),
    ("case", "withdraw"): (
        Withdraw,
        st.fixed_dictionaries({"reason": some_text, "requested_by": names("applicant")}),
    ),
    ("case", "department_opinion"): (
        DepartmentOpinion,
        st.builds(
            lambda d, o, agree, op: {"department": d, "officer": o, "agree": agree, "opinion": op if (agree or op.strip()) else "no"},
            st.one_of(st.just("taxation"), st.sampled_from(DEPARTMENTS), st.sampled_from(["TAXATION", "police"])),
            names("tax-01"),
            st.booleans(),
            text,
        ),
    ),
    ("case", "review"): (
        Review,
        st.builds(
            lambda r, d, op, corr: {
                "reviewer": r,
                "decision": d,
                "opinion": op if (d != "reject" or op.strip()) else "unlawful",
                "corrections": corr if (d != "return" or corr) else ["sign page 2"],
            },
            names("officer-huang", "officer-li", "officer-zhou"),
            st.sampled_from(["approve", "return", "reject"]),
            text,
            st.lists(some_text, max_size=3),
        ),
    ),
    ("case", "transfer"): (
        Transfer,
        st.fixed_dictionaries(
            {
                "by": names("officer-huang", "officer-li", "officer-lin", "hall-supervisor"),
                "to_reviewer": names("officer-lin", "officer-wang", "officer-huang"),
                "reason": some_text,
            }
        ),
    ),
    ("case", "resubmit"): (
        Resubmit,
        st.fixed_dictionaries(
            {
                "materials": st.lists(
                    st.one_of(st.sampled_from(sorted(CATALOG["social-insurance-transfer"].material_codes)), codes), max_size=3
                ),
                "note": text,
                "submitted_by": names("applicant"),
            }
        ),
    ),
    ("case", "vote"): (
        Vote,
        st.fixed_dictionaries(
            {
                "member": names("officer-zhao", "officer-chen", "officer-sun", "officer-li"),
                "choice": st.sampled_from(["approve", "reject", "defer"]),
                "opinion": text,
            }
        ),
    ),
    ("case", "urge"): (Urge, st.fixed_dictionaries({"by": names("hall-central"), "note": text})),
    ("case", "rate"): (
        Rate,
        st.fixed_dictionaries(
            {
                "score": st.integers(1, 5),
                "comment": text,
                "channel": st.sampled_from(["window", "app", "web", "sms", "hotline", "kiosk"]),
            }
        ),
    ),
    ("rectification", "verify"): (
        Verify,
        st.builds(
            lambda o, f, mal: {"officer": o, "finding": f if (not mal or f.strip()) else "posted 30 times", "malicious": mal},
            names("officer-fund-1", "officer-fund-2"),
            text,
            st.booleans(),
        ),
    ),
    ("rectification", "confirm_set_aside"): (
        ConfirmSetAside,
        st.fixed_dictionaries({"officer": names("officer-fund-2", "officer-fund-1", "Officer-Fund-1"), "reason": some_text}),
    ),
    ("rectification", "rectify"): (
        Rectify,
        st.fixed_dictionaries({"officer": names("officer-fund-1"), "action": some_text, "reply": some_text}),
    ),
    ("suggestion", "reclassify"): (
        Reclassify,
        st.fixed_dictionaries(
            {"complexity": st.sampled_from(["complex", "general"]), "reason": some_text, "by": names("coordinator-1")}
        ),
    ),
    ("suggestion", "respond"): (
        Respond,
        st.builds(
            lambda d, o, adopted, reason, measures: {
                "department": d,
                "officer": o,
                "adopted": adopted,
                "reason": reason if (adopted or reason.strip()) else "no room",
                "measures": measures,
            },
            st.one_of(st.just("natural-resources"), st.sampled_from(DEPARTMENTS)),
            names("officer-zhou"),
            st.booleans(),
            text,
            text,
        ),
    ),
    ("risk", "acknowledge"): (
        Acknowledge,
        st.fixed_dictionaries({"officer": names("officer-li"), "group": names("emergency-group-1")}),
    ),
    ("risk", "submit_plan"): (
        SubmitPlan,
        st.fixed_dictionaries({"officer": names("officer-li"), "plan": some_text, "due": naive_or_aware}),
    ),
    ("risk", "regrade"): (
        Regrade,
        st.fixed_dictionaries(
            {"level": st.sampled_from(["yellow", "blue", "red"]), "reason": some_text, "by": names("officer-zhao")}
        ),
    ),
    ("risk", "review"): (
        RiskReviewRecord,
        st.fixed_dictionaries(
            {"by": names("officer-li"), "cause": some_text, "what_worked": some_text, "what_changes": some_text}
        ),
    ),
    ("risk", "resolve"): (Resolve, st.fixed_dictionaries({"officer": names("officer-li"), "summary": some_text})),
}

# Where each Update is most at home (a well-formed one is applied there); it is also sent to the
# workflow's other states, where most are refused.
HOME = {
    "supplement_materials": "deferred",
    "withdraw": "review",
    "department_opinion": "consulting",
    "review": "review",
    "transfer": "review",
    "resubmit": "returned",
    "vote": "panel",
    "urge": "review",
    "rate": "ended",
    "verify": "verifying",
    "confirm_set_aside": "confirming",
    "rectify": "rectifying",
    "reclassify": "open",
    "respond": "open",
    "acknowledge": "acknowledging",
    "submit_plan": "planning",
    "regrade": "acknowledging",
    ("risk", "review"): "handling",
    "resolve": "reviewed",
}


def home_of(workflow: str, update: str) -> str:
    return HOME.get((workflow, update)) or HOME[update]


# ---- mutations ----------------------------------------------------------------------------------


def _paths(obj: Any, path: tuple = ()) -> list[tuple]:
    found = [path]
    if isinstance(obj, dict):
        for k, v in obj.items():
            found += _paths(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            found += _paths(v, path + (i,))
    return found


def _get(obj: Any, path: tuple) -> Any:
    for step in path:
        obj = obj[step]
    return obj


def _put(obj: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    _get(obj, path[:-1])[path[-1]] = value
    return obj


def _coerced(value: Any) -> list[Any]:
    """Values of another JSON type that a lax reader would take for `value`."""
    if isinstance(value, bool):
        return [0, 1, "yes", "true", "True", "no", "1", None]
    if isinstance(value, int):
        return [True, False, str(value), float(value), value + 0.5, "5", None, [value]]
    if isinstance(value, float):
        # A value mutated twice may be NaN or infinite, which has no int.
        return [str(value), True, int(value) if math.isfinite(value) else 0, None]
    if isinstance(value, str):
        return [12345, 0, True, None, [value], {"value": value}, value.encode("utf-8", "surrogatepass").hex(), float("nan")]
    if isinstance(value, list):
        return [",".join(map(str, value)), {}, None, value[0] if value else "", [value]]
    if isinstance(value, dict):
        return [[value], json.dumps(value), None, [], "{}"]
    return [{}, [], "", 0, False]


MUTATIONS = ["drop", "unknown", "retype", "huge", "deep", "unicode", "sql", "nul", "pad", "whole"]


@st.composite
def mutated(draw, base: Any) -> tuple[Any, list[str]]:
    obj, notes = copy.deepcopy(base), []
    for _ in range(draw(st.one_of(st.just(0), st.integers(0, 2)))):
        kind = draw(st.sampled_from(MUTATIONS))
        paths = _paths(obj)
        if kind == "drop":
            keyed = [p for p in paths if p and isinstance(_get(obj, p[:-1]), dict)]
            if not keyed:
                continue
            path = draw(st.sampled_from(keyed))
            del _get(obj, path[:-1])[path[-1]]
        elif kind == "unknown":
            holders = [p for p in paths if isinstance(_get(obj, p), dict)]
            if not holders:
                continue
            path = draw(st.sampled_from(holders))
            key = draw(
                st.one_of(
                    st.sampled_from(["extra", "Reviewer", "__proto__", "$where", "id", "评论", "k\u0000", "k" * 5_000]),
                    st.text(max_size=6),
                )
            )
            if key in _get(obj, path):
                continue
            _get(obj, path)[key] = draw(json_value)
            path = path + (key,)
        elif kind == "whole":
            path = ()
            obj = draw(st.one_of(st.sampled_from([None, [], "approve", 5, True, [copy.deepcopy(obj)], {}]), json_value))
        else:
            path = draw(st.sampled_from(paths))
            current = _get(obj, path)
            if kind == "retype":
                new = draw(st.one_of(st.sampled_from(_coerced(current)), json_value))
            elif kind == "huge":
                new = draw(st.sampled_from(HUGE))
            elif kind == "deep":
                new = deep(draw(st.sampled_from(DEPTHS)))
            else:
                piece = {
                    "unicode": st.one_of(st.sampled_from(UNICODE), st.text(min_size=1, max_size=10)),
                    "sql": st.sampled_from(SQL),
                    "nul": st.just("\u0000"),
                    "pad": st.sampled_from(["  ", "\t", "\n", "\u3000"]),
                }[kind]
                piece = draw(piece)
                if isinstance(current, str) and draw(st.booleans()):
                    at = draw(st.integers(0, len(current)))
                    new = current[:at] + piece + current[at:] if kind != "pad" else piece + current + piece
                else:
                    new = piece
            obj = _put(obj, path, new)
        notes.append(f"{kind} at {'.'.join(map(str, path)) or 'payload'}")
    return obj, notes


def dumps(obj: Any, ascii_only: bool = False) -> bytes:
    text = json.dumps(obj, ensure_ascii=ascii_only)
    for depth in DEPTHS:
        text = text.replace(json.dumps(deep(depth), ensure_ascii=ascii_only), "[" * depth + "]" * depth)
    return text.encode("utf-8", "surrogatepass")


def raw(encoding: bytes | None, data: bytes) -> RawValue:
    return RawValue(Payload(metadata={"encoding": encoding} if encoding is not None else {}, data=data))


WIRES = [
    "json/plain",
    "json/plain, ASCII escapes",
    "binary/null",
    "binary/plain",
    "json/protobuf",
    "no encoding",
    "another encoding name",
    "json/plain in GBK",
    "json/plain in UTF-16",
    "json/plain in Latin-1",
    "json/plain, broken UTF-8",
    "json/plain null",
    "no argument",
    "two arguments",
]


class Sent:
    """One message as it goes on the wire; its repr is the minimal example hypothesis prints
    (bodies cut at 300 bytes: a 100k-character string would drown the report)."""

    def __init__(self, wire: str, mutations: list[str], obj: Any, args: list[RawValue]) -> None:
        self.wire, self.mutations, self.obj, self.args = wire, mutations, obj, args

    def __repr__(self) -> str:
        shown = []
        for a in self.args:
            data = a.payload.data
            body = data[:300].decode("utf-8", "backslashreplace") + (f"…({len(data)} bytes)" if len(data) > 300 else "")
            encoding = a.payload.metadata["encoding"].decode(errors="replace") if "encoding" in a.payload.metadata else "<none>"
            shown.append(f"{encoding}: {body}")
        return f"Sent(wire={self.wire!r}, mutations={self.mutations}, args={shown})"


@st.composite
def sent(draw, base: st.SearchStrategy[Any], prepare: Callable[[Any], Any] = lambda obj: obj) -> Sent:
    obj, notes = draw(base.flatmap(mutated))
    obj = prepare(obj)
    wire = draw(st.one_of(st.just("json/plain"), st.sampled_from(WIRES)))
    body = dumps(obj)
    text = body.decode("utf-8", "surrogatepass")
    args = {
        "json/plain": lambda: [raw(b"json/plain", body)],
        "json/plain, ASCII escapes": lambda: [raw(b"json/plain", dumps(obj, ascii_only=True))],
        "binary/null": lambda: [raw(b"binary/null", b"")],
        "binary/plain": lambda: [raw(b"binary/plain", body)],
        "json/protobuf": lambda: [raw(b"json/protobuf", body)],
        "no encoding": lambda: [raw(None, body)],
        "another encoding name": lambda: [
            raw(draw(st.sampled_from([b"JSON/PLAIN", b"json/plain ", b"binary/encrypted", b"json", b"text/plain"])), body)
        ],
        "json/plain in GBK": lambda: [raw(b"json/plain", text.encode("gbk", "replace"))],
        "json/plain in UTF-16": lambda: [raw(b"json/plain", text.encode("utf-16", "surrogatepass"))],
        "json/plain in Latin-1": lambda: [raw(b"json/plain", text.encode("latin-1", "replace"))],
        "json/plain, broken UTF-8": lambda: [raw(b"json/plain", body[:1] + b"\xff\xc3" + body[1:])],
        "json/plain null": lambda: [raw(b"json/plain", b"null")],
        "no argument": list,
        "two arguments": lambda: [raw(b"json/plain", body), raw(b"json/plain", draw(st.sampled_from([body, b"null", b"{}"])))],
    }[wire]()
    return Sent(wire, notes, obj, args)


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, BaseModel):
        return any(_holds_nul(getattr(value, n)) for n in type(value).model_fields)
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, (list, tuple, set)):
        return any(_holds_nul(v) for v in value)
    return False


def read(model: type[BaseModel], message: Sent) -> BaseModel | None:
    """The model the workflow must see, or None when the contract refuses the payload."""
    if len(message.args) != 1:
        return None
    payload = message.args[0].payload
    if payload.metadata.get("encoding", b"") != b"json/plain":
        return None
    try:
        value = model.model_validate_json(payload.data, strict=True)
    except ValidationError:
        return None
    return None if _holds_nul(value) else value


def read_first(model: type[BaseModel], message: Sent) -> BaseModel | None:
    """The model the guard reads a twin's actor from: its first payload, whatever follows it."""
    return read(model, Sent(message.wire, message.mutations, message.obj, message.args[:1]))


# ---- who sends it: the signed actor, then docs/security.md's "Who may do what" ------------------

NOW = TEST_EPOCH  # nobody in data/org.toml has left; the clock stays about here
_ONE_LINE = TypeAdapter(OneLine)


def signable(actor: str) -> bool:
    try:
        _ONE_LINE.validate_python(actor)
    except ValidationError:
        return False
    return True


def sender(value: BaseModel | None, default: str = APPLICANT) -> str:
    """Whom the test signs a message for: the actor it names, when an assertion can carry the name."""
    named = actor_named(value) if value is not None else None
    return named if named is not None and signable(named) else default


def allowed(workflow: str, step: str, req: Any, s) -> list[str] | None:
    """Who may take `step` (None: anyone in post; the validator then names who, as for a review
    or a vote), from the table "Who may do what" and the directory."""
    if workflow == "case":
        if step == "start":
            return ORG.with_role(Role.CLERK, NOW, hall=req.hall)
        people = hall_people(ORG, NOW, s.hall)
        if step in ("supplement_materials", "resubmit", "withdraw", "rate"):
            return [APPLICANT, *people]
        if step == "urge":
            return [APPLICANT, s.hall, *people]
        if step == "department_opinion":
            return department_people(ORG, NOW, req.department)
        if step == "transfer":
            heads = ORG.with_role(Role.HEAD, NOW, department=s.department or "")
            return [*([s.reviewer] if s.reviewer else []), *heads, *ORG.with_role(Role.SUPERVISOR, NOW, hall=s.hall)]
        return None
    if workflow == "rectification":
        return [SYSTEM_ACTOR] if step == "start" else department_people(ORG, NOW, s.department)
    if workflow == "suggestion":
        if step == "start":
            return None
        return department_people(ORG, NOW, s.department) + ORG.with_role(Role.COORDINATOR, NOW, department=s.department)
    if workflow == "risk":
        if step == "start":
            return [SYSTEM_ACTOR, *(o.id for o in ORG.officers if ORG.active(o.id, NOW))]
        chain = RISK_POLICY.escalation_chain(s.entry.responsible_department)
        return risk_people(ORG, NOW, s.entry.owner, s.entry.responsible_department, chain[: s.entry.escalations])
    if workflow == "watch":
        return [SYSTEM_ACTOR]
    raise AssertionError(workflow)


def who_refuses(workflow: str, step: str, value: BaseModel, actor: str, s) -> str | None:
    """Forbidden or UnknownActor, as the guard answers `actor` sending `value`; None: let through."""
    named = actor_named(value)
    if named is not None and named != actor:
        return "Forbidden"  # the assertion speaks for someone else
    who = allowed(workflow, step, value, s)
    known = actor in (APPLICANT, SYSTEM_ACTOR) or ORG.is_hall(actor)
    if who is None:
        return None if known or ORG.active(actor, NOW) else "UnknownActor"
    if ORG.officer(actor) is not None and ORG.active(actor, NOW) is None:
        return "UnknownActor"
    if actor in who:
        return None
    return "Forbidden" if known or ORG.officer(actor) is not None else "UnknownActor"


# ---- what each workflow must answer (from its status) and how an applied message shows ---------


def expect_case(update: str, req: Any, s, target: Target) -> str | None:
    m = CATALOG[s.matter_code]
    if update == "supplement_materials":
        if s.stage.is_final or not s.missing_materials:
            return "WrongStage"
        if set(req.materials) - m.material_codes:
            return "UnknownMaterial"
        if set(req.materials) - set(s.missing_materials):
            return "MaterialNotAwaited"
        return None
    if update == "withdraw":
        return "WrongStage" if s.stage.is_final or s.decision is not None else None
    if update == "department_opinion":
        if s.stage != CaseStage.CONSULTING:
            return "WrongStage"
        asked = {c.department: c for c in s.consultations}
        if req.department not in asked:
            return "NotConsulted"
        return "AlreadyAnswered" if asked[req.department].state != OpinionState.PENDING else None
    if update == "review":
        if s.stage != CaseStage.AWAITING_REVIEW:
            return "WrongStage"
        return "NotReviewer" if req.reviewer != s.reviewer else None
    if update == "transfer":
        if s.stage != CaseStage.AWAITING_REVIEW:
            return "WrongStage"
        # Who may transfer (`by`) is the directory's question, asked before this one.
        if req.to_reviewer not in m.reviewers or req.to_reviewer == s.reviewer:
            return "NotReviewer"
        return None
    if update == "resubmit":
        if s.stage != CaseStage.RETURNED:
            return "WrongStage"
        return "UnknownMaterial" if set(req.materials) - m.material_codes else None
    if update == "vote":
        if s.stage != CaseStage.IN_PANEL:
            return "WrongStage"
        assert m.panel is not None
        if s.reviewer in m.panel.members and req.member == s.reviewer:
            return "Recused"
        if req.member not in m.panel.members:
            return "NotPanelMember"
        earlier = {v.member: v.choice for v in s.votes}
        return "AlreadyVoted" if earlier.get(req.member) == req.choice else None
    if update == "urge":
        chased = (CaseStage.CONSULTING, CaseStage.AWAITING_REVIEW, CaseStage.RETURNED, CaseStage.IN_PANEL, CaseStage.APPROVED_PENDING_MATERIALS)
        if s.stage not in chased:
            return "WrongStage"
        return "TooSoon" if target.urged else None
    if update == "rate":
        if s.rating is not None:
            return "AlreadyRated"
        return "RatingClosed" if not s.stage.is_final or s.rating_open_until is None else None
    raise AssertionError(update)


def applied_case(update: str, req: Any, before, s) -> bool:
    m = CATALOG[before.matter_code]
    if update == "supplement_materials":
        return set(s.missing_materials) == set(before.missing_materials) - set(req.materials)
    if update == "withdraw":
        return s.stage == CaseStage.WITHDRAWN
    if update == "department_opinion":
        c = next(c for c in s.consultations if c.department == req.department)
        return c.state == (OpinionState.AGREED if req.agree else OpinionState.DISAGREED) and c.officer == req.officer
    if update == "review":
        if req.decision == "approve":
            wanted = CaseStage.IN_PANEL if m.panel else CaseStage.APPROVED
        else:
            wanted = CaseStage.RETURNED if req.decision == "return" else CaseStage.REJECTED
        return s.stage == wanted
    if update == "transfer":
        return s.reviewer == req.to_reviewer and s.stage == CaseStage.AWAITING_REVIEW
    if update == "resubmit":
        return s.stage == CaseStage.AWAITING_REVIEW and s.pauses[-1].ended_at is not None
    if update == "vote":
        # Recorded, or it decided the vote (the case moved on, or a deferral opened a fresh vote).
        recorded = any(v.member == req.member and v.choice == req.choice for v in s.votes)
        return recorded or s.stage != CaseStage.IN_PANEL or not s.votes
    if update == "urge":
        return any(e.action == "urged" and e.actor == req.by for e in s.last_events)
    if update == "rate":
        return s.rating == req.score
    raise AssertionError(update)


def expect_rectification(update: str, req: Any, s, target: Target) -> str | None:
    if update == "verify":
        if s.verified_by is not None:
            return "AlreadyVerified"
        return "WrongStage" if s.stage != RectificationStage.VERIFYING else None
    if s.stage != {"confirm_set_aside": RectificationStage.AWAITING_CONFIRMATION, "rectify": RectificationStage.RECTIFYING}[update]:
        return "WrongStage"
    if update == "confirm_set_aside" and req.officer.casefold() == s.verified_by.casefold():
        return "SameOfficer"
    return None


def applied_rectification(update: str, req: Any, before, s) -> bool:
    if update == "verify":
        wanted = RectificationStage.AWAITING_CONFIRMATION if req.malicious else RectificationStage.RECTIFYING
        return s.verified_by == req.officer and s.finding == req.finding and s.stage == wanted
    if update == "confirm_set_aside":
        return s.stage == RectificationStage.SET_ASIDE and s.confirmed_by == req.officer
    return s.stage == RectificationStage.RECTIFIED and (s.action, s.reply) == (req.action, req.reply)


def expect_suggestion(update: str, req: Any, s, target: Target) -> str | None:
    if s.stage != SuggestionStage.OPEN:
        return "WrongStage"
    if update == "reclassify":
        return "Unchanged" if req.complexity == s.complexity else None
    return "WrongDepartment" if req.department != s.department else None


def applied_suggestion(update: str, req: Any, before, s) -> bool:
    if update == "reclassify":
        return s.complexity == req.complexity and s.due_at != before.due_at
    return (
        s.stage == SuggestionStage.ANSWERED
        and s.answer is not None
        and (s.answer.adopted, s.answer.reason, s.answer.measures) == (req.adopted, req.reason, req.measures)
    )


def expect_risk(update: str, req: Any, s, target: Target) -> str | None:
    state = s.entry.state
    if update == "acknowledge":
        return "WrongStage" if state != RiskState.AWAITING_ACKNOWLEDGEMENT else None
    if update == "submit_plan":
        return "WrongStage" if state != RiskState.AWAITING_PLAN else None
    if update == "regrade":
        if state == RiskState.RESOLVED:
            return "WrongStage"
        return "Unchanged" if req.level == s.entry.level else None
    if state != RiskState.HANDLING:
        return "WrongStage"
    if update == "review":
        return "AlreadyDone" if s.reviewed else None
    return "ReviewMissing" if not s.reviewed else None


def applied_risk(update: str, req: Any, before, s) -> bool:
    if update == "acknowledge":
        return s.entry.state == RiskState.AWAITING_PLAN and s.entry.acknowledged_at is not None
    if update == "submit_plan":
        return s.entry.state == RiskState.HANDLING and s.plan == req.plan
    if update == "regrade":
        return s.entry.level == req.level
    if update == "review":
        return s.reviewed
    return s.entry.state == RiskState.RESOLVED


EXPECT = {"case": expect_case, "rectification": expect_rectification, "suggestion": expect_suggestion, "risk": expect_risk}
APPLIED = {"case": applied_case, "rectification": applied_rectification, "suggestion": applied_suggestion, "risk": applied_risk}
# Applied, these end the workflow's procedure: it completes.
COMPLETES = {("rectification", "confirm_set_aside"), ("rectification", "rectify"), ("suggestion", "respond"), ("risk", "resolve")}


# ---- checks shared by every example -------------------------------------------------------------


async def task_failures(handle: WorkflowHandle) -> list:
    return failed_tasks(await handle.fetch_history())


E = EventType
WFT_OPEN = {E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, E.EVENT_TYPE_WORKFLOW_TASK_STARTED}
WFT_CLOSED = {E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED, E.EVENT_TYPE_WORKFLOW_TASK_FAILED, E.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT}
# Commands the workflow waits on, and the events that close them (by the initiating event's id).
OPENS = {
    E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
    E.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED,
    E.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED,
}
CLOSES = {
    E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: ("activity_task_completed_event_attributes", "scheduled_event_id"),
    E.EVENT_TYPE_ACTIVITY_TASK_FAILED: ("activity_task_failed_event_attributes", "scheduled_event_id"),
    E.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: ("activity_task_timed_out_event_attributes", "scheduled_event_id"),
    E.EVENT_TYPE_ACTIVITY_TASK_CANCELED: ("activity_task_canceled_event_attributes", "scheduled_event_id"),
    E.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED: ("child_workflow_execution_started_event_attributes", "initiated_event_id"),
    E.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_FAILED: ("start_child_workflow_execution_failed_event_attributes", "initiated_event_id"),
    E.EVENT_TYPE_EXTERNAL_WORKFLOW_EXECUTION_SIGNALED: ("external_workflow_execution_signaled_event_attributes", "initiated_event_id"),
    E.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_FAILED: ("signal_external_workflow_execution_failed_event_attributes", "initiated_event_id"),
}


def _busy(events) -> bool:
    """From the history: a workflow task, an activity, a child's start or a signal outstanding."""
    waiting: set[int] = set()
    last_task = None
    for e in events:
        if e.event_type in OPENS:
            waiting.add(e.event_id)
        elif e.event_type in CLOSES:
            field, key = CLOSES[e.event_type]
            waiting.discard(getattr(getattr(e, field), key))
        if e.event_type in WFT_OPEN | WFT_CLOSED:
            last_task = e.event_type
    return bool(waiting) or last_task in WFT_OPEN


async def idle(handle: WorkflowHandle):
    """The description once the workflow waits on timers and messages only (every handler has
    finished), or once an activity keeps failing. The test server's description names no pending
    workflow task, so the history says."""
    for _ in range(250):
        busy = _busy((await handle.fetch_history()).events)
        description = await handle.describe()
        if not busy or any(p.HasField("last_failure") for p in description.raw_description.pending_activities):
            break
        await asyncio.sleep(0.02)
    return description, busy


async def still_sound(handle: WorkflowHandle, query: Any, may_complete: bool):
    """Running (or completed, where the procedure completes it) with no activity failing, no
    workflow task failed, and `status` answers (and decodes)."""
    description, busy = await idle(handle)
    pending = description.raw_description.pending_activities
    await no_task_failed(handle)
    assert not busy or pending, f"{handle.id}: still busy after 5 s (a child's start or a signal outstanding)"
    allowed = {WorkflowExecutionStatus.RUNNING} | ({WorkflowExecutionStatus.COMPLETED} if may_complete else set())
    assert description.status in allowed, f"{handle.id} is {description.status}"
    assert not pending, f"{handle.id}: activities pending: " + "; ".join(
        f"{p.activity_type.name} attempt {p.attempt} {p.last_failure.message} {p.last_failure.cause.message}" for p in pending
    )
    try:
        return await handle.query(query, rpc_timeout=timedelta(seconds=5))
    except RPCError:
        await no_task_failed(handle)  # a query waits while the workflow task fails: say why
        raise


async def no_task_failed(handle: WorkflowHandle) -> None:
    failed = await task_failures(handle)
    assert not failed, f"{handle.id}: workflow task failed: {failed[0].workflow_task_failed_event_attributes.failure.message}"


async def poll(handle: WorkflowHandle, query: Any, check: Callable[[Any], bool], timeout: float = 10.0):
    """Query `status` until `check(status)` holds; the last status either way. A risk's status is
    refused for a moment after its start ("still being registered"): asked again meanwhile."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        try:
            status = await handle.query(query, rpc_timeout=timedelta(seconds=5))
        except (WorkflowQueryFailedError, RPCError) as err:
            transient = "still being registered" in str(err) or (
                isinstance(err, RPCError) and err.status == RPCStatusCode.DEADLINE_EXCEEDED
            )
            if not transient or loop.time() > end:
                raise
            await asyncio.sleep(0.02)
            continue
        if check(status) or loop.time() > end:
            return status
        await asyncio.sleep(0.02)


# ---- Updates and their twins --------------------------------------------------------------------

TARGETS = [(workflow, update) for workflow, update in MESSAGES]
BARRIER = "barrier"  # no twin by that name: refused as UnknownSignal, after the signal before it


@pytest.mark.parametrize("as_twin", [False, True], ids=["update", "twin"])
@pytest.mark.parametrize(("workflow", "update"), TARGETS, ids=[f"{w}.{u}" for w, u in TARGETS])
@SETTINGS
@given(data=st.data())
async def test_a_message_is_refused_as_documented_or_applied(hall, workflow, update, as_twin, data):
    model, well_formed = MESSAGES[(workflow, update)]
    states = [name for name, s in STATES.items() if s.workflow == workflow]
    state = data.draw(st.one_of(st.just(home_of(workflow, update)), st.sampled_from(states)), label="state")
    message = data.draw(sent(well_formed), label="message")

    target = await hall.target(state)
    try:
        handle, query = target.handle, QUERIES[workflow]
        before = await handle.query(query)
        req = read(model, message)
        # An Update's arguments are checked first; a twin's actor is read from its first payload.
        seen = read_first(model, message) if as_twin else req
        actor = sender(seen)
        expected = who_refuses(workflow, update, seen, actor, before) if seen is not None else None
        if expected is None:
            expected = "InvalidPayload" if req is None else EXPECT[workflow](update, req, before, target)
        event(f"{state}: {expected or 'applied'}")  # --hypothesis-show-statistics shows the spread

        if not as_twin:
            try:
                with signed_as(actor):
                    await handle.execute_update(update, args=message.args, rpc_timeout=timedelta(seconds=15))
                refused = None
            except WorkflowUpdateFailedError as failure:
                cause = failure.cause
                assert isinstance(cause, ApplicationError), repr(cause)
                assert cause.non_retryable, f"{cause.type} is retryable: {cause.message}"
                refused = (cause.type, cause.message)
        else:
            count = before.refused_signal_count
            with signed_as(actor):
                await handle.signal(f"{update}_signal", args=message.args)
            try:
                await handle.signal(BARRIER, args=[])
                barrier = 1
            except RPCError:  # the twin completed the workflow first (a rectification, answer, resolution)
                barrier = 0
            if barrier:
                after = await poll(handle, query, lambda s: s.refused_signal_count > count and s.refused_signals[-1].signal == BARRIER)
                assert after.refused_signals[-1].signal == BARRIER, "the barrier signal was not processed"
                assert after.refused_signals[-1].error == "UnknownSignal"
            else:
                after = await handle.query(query)
            if after.refused_signal_count == count + 1 + barrier:
                ours = after.refused_signals[-1 - barrier]
                assert ours.signal == f"{update}_signal"
                refused = (ours.error, ours.reason)
            else:
                assert after.refused_signal_count == count + barrier, after.refused_signals
                refused = None

        if expected is None:
            assert refused is None, f"refused ({refused[0]}: {refused[1]}) but should be applied: {req!r}"
            status = await poll(handle, query, lambda s: APPLIED[workflow](update, req, before, s))
            assert APPLIED[workflow](update, req, before, status), f"accepted but not applied as the procedure says: {req!r}"
            if update == "urge":
                target.urged = True
        else:
            assert refused is not None, f"applied, but should be refused with {expected}: {req!r}"
            assert refused[0] == expected, f"refused with {refused[0]} ({refused[1]}), expected {expected}"

        status = await still_sound(handle, query, may_complete=expected is None and (workflow, update) in COMPLETES)
        if as_twin:
            # Nothing refused later: an accepted twin did not fail while being applied.
            extra = status.refused_signal_count - before.refused_signal_count - barrier - (expected is not None)
            assert extra == 0, status.refused_signals[-extra:]
        if (workflow, update) in COMPLETES and expected is None or not STATES[state].home(status):
            hall.retire(state)
    except BaseException:
        hall.retire(state)  # a fresh workflow for the next example: shrinking then finds the culprit
        raise


# ---- workflow inputs ----------------------------------------------------------------------------

TOKEN = "\x02fresh-id\x02"  # replaced by a fresh id as sent, when the mutations left it alone


def _case_application() -> st.SearchStrategy[dict]:
    @st.composite
    def build(draw):
        matter = draw(st.sampled_from(sorted(CATALOG) + ["unknown-matter"]))
        codes = sorted(CATALOG[matter].material_codes) if matter in CATALOG else ["passport"]
        missing = draw(st.sets(st.sampled_from(codes), max_size=2))
        applicant = {
            "applicant_id": draw(st.one_of(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{2,20}", fullmatch=True), hostile_text)),
            "kind": draw(st.sampled_from(["person", "enterprise"])),
            "name": draw(st.one_of(st.none(), names("张三"))),
            "id_number": draw(st.one_of(st.none(), st.just("110101199001011234"), text)),
            "phone": draw(st.one_of(st.none(), st.just("13800000000"), text)),
        }
        return {
            "case_no": TOKEN,
            "matter_code": matter,
            "hall": draw(names("hall-central")),
            "clerk": draw(names("clerk-01")),
            "applicant": applicant,
            "materials": [c for c in codes if c not in missing],
            "commitment_signed": draw(st.booleans()),
        }

    return build()


def _rating(case_no: Any = None) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries(
        {
            "case_no": st.just(case_no) if case_no else st.from_regex(r"[A-Z][A-Z0-9-]{2,12}", fullmatch=True),
            "matter_code": st.sampled_from(sorted(CATALOG)),
            "department": st.sampled_from(DEPARTMENTS),
            "hall": names("hall-central"),
            "score": st.integers(1, 5),
            "comment": text,
            "channel": st.sampled_from(["window", "app", "kiosk"]),
            "at": naive_or_aware,
        }
    )


INPUTS: dict[str, tuple[type[BaseModel], str, Callable[[Any], str], st.SearchStrategy[dict]]] = {
    # workflow type: (input model, its id field, the id the input must run as, well-formed inputs)
    "CaseWorkflow": (CaseApplication, "case_no", lambda m: case_workflow_id(m.case_no), _case_application()),
    "RectificationWorkflow": (
        RectificationOrder,
        "case_no",
        lambda m: rectification_workflow_id(m.case_no),
        st.fixed_dictionaries(
            {
                "case_no": st.just(TOKEN),
                "matter_code": st.sampled_from(sorted(CATALOG)),
                "department": st.one_of(st.sampled_from(DEPARTMENTS), names()),
                "hall": names("hall-central"),
                "rating": _rating(),
                "applicant_id": st.from_regex(r"app-[a-z0-9]{4}", fullmatch=True),
                "verify_days": st.integers(1, 3),
                "rectify_days": st.integers(5, 15),
            }
        ),
    ),
    "SuggestionWorkflow": (
        Suggestion,
        "suggestion_no",
        lambda m: suggestion_workflow_id(m.suggestion_no),
        st.fixed_dictionaries(
            {
                "suggestion_no": st.just(TOKEN),
                "submitter_id": names("citizen-1"),
                "topic": names("more seats"),
                "content": some_text,
                "department": st.one_of(st.sampled_from(DEPARTMENTS), st.sampled_from(DEPARTMENTS + ["Taxation", "a_b"])),
                "complexity": st.sampled_from(["general", "complex"]),
            }
        ),
    ),
    "RiskWorkflow": (
        RiskReport,
        "risk_no",
        lambda m: risk_workflow_id(m.risk_no),
        st.fixed_dictionaries(
            {
                "risk_no": st.just(TOKEN),
                "source": st.sampled_from(["manual", "overdue_case", "satisfaction", "other"]),
                "type": st.sampled_from(["policy", "technology", "execution", "social"]),
                "title": names("ID-card readers failing"),
                "description": text,
                "probability": st.floats(0, 1),
                "impact": st.sampled_from(["low", "medium", "high"]),
                "responsible_department": st.sampled_from(DEPARTMENTS),
                "owner": names("officer-li"),
                "case_no": st.one_of(st.none(), st.from_regex(r"[A-Z][A-Z0-9-]{2,12}", fullmatch=True), text),
                "level": st.one_of(st.none(), st.sampled_from(["blue", "yellow", "red"])),
            }
        ),
    ),
    "SatisfactionWatchWorkflow": (
        WatchState,
        "department",
        lambda m: watch_workflow_id(m.department),
        st.fixed_dictionaries(
            {
                "department": st.just(TOKEN),
                "days": st.lists(
                    st.fixed_dictionaries({"day": days, "ratings": st.integers(1, 50)}).flatmap(
                        lambda d: st.fixed_dictionaries(
                            {"day": st.just(d["day"]), "ratings": st.just(d["ratings"]), "bad": st.integers(0, d["ratings"])}
                        )
                    ),
                    max_size=25,
                ),
                "recent": st.lists(st.from_regex(r"[A-Z][A-Z0-9-]{2,12}", fullmatch=True), max_size=25),
                "open_risk": st.one_of(st.none(), text),
                "over_line": st.booleans(),
                "risks_raised": st.integers(0, 5),
            }
        ),
    ),
}
INPUT_QUERIES = {
    "CaseWorkflow": CaseWorkflow.status,
    "RectificationWorkflow": RectificationWorkflow.status,
    "SuggestionWorkflow": SuggestionWorkflow.status,
    "RiskWorkflow": RiskWorkflow.status,
    "SatisfactionWatchWorkflow": SatisfactionWatchWorkflow.status,
}
STARTED_BY = {
    "RectificationWorkflow": SYSTEM_ACTOR,
    "SuggestionWorkflow": APPLICANT,
    "RiskWorkflow": SYSTEM_ACTOR,
    "SatisfactionWatchWorkflow": SYSTEM_ACTOR,
}
WORKFLOW_OF = {
    "CaseWorkflow": "case",
    "RectificationWorkflow": "rectification",
    "SuggestionWorkflow": "suggestion",
    "RiskWorkflow": "risk",
    "SatisfactionWatchWorkflow": "watch",
}
PREFIX = {"CaseWorkflow": "case-", "RectificationWorkflow": "rectification-", "SuggestionWorkflow": "suggestion-", "RiskWorkflow": "risk-", "SatisfactionWatchWorkflow": "satisfaction-"}


def _fresh_id(workflow_type: str) -> str:
    return f"dept-{uuid.uuid4().hex[:12]}" if workflow_type == "SatisfactionWatchWorkflow" else fresh("I")


async def _failure(handle: WorkflowHandle):
    """The failure a workflow ended with, read from its history (result() would unlock the clock)."""
    description = None
    for _ in range(200):
        description = await handle.describe()
        if description.status != WorkflowExecutionStatus.RUNNING:
            break
        failed = await task_failures(handle)
        assert not failed, f"workflow task failed: {failed[0].workflow_task_failed_event_attributes.failure.message}"
        await asyncio.sleep(0.05)
    assert description is not None and description.status == WorkflowExecutionStatus.FAILED, description and description.status
    history = await handle.fetch_history()
    last = history.events[-1]
    assert last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED
    return last.workflow_execution_failed_event_attributes.failure


def _accepted(app: CaseApplication) -> bool:
    matter = CATALOG.get(app.matter_code)
    if matter is None or matter.core_codes - set(app.materials):
        return False
    return app.commitment_signed or not (matter.material_codes - set(app.materials))


async def _runs_as_its_procedure_says(hall: Hall, workflow_type: str, handle: WorkflowHandle, value: Any) -> None:
    if workflow_type == "CaseWorkflow":
        status = await poll(handle, CaseWorkflow.status, lambda s: s.stage not in (CaseStage.RECEIVED, CaseStage.ACCEPTED), 20)
        assert (status.stage != CaseStage.NOT_ACCEPTED) == _accepted(value), status.stage
    elif workflow_type == "RectificationWorkflow":
        status = await poll(handle, RectificationWorkflow.status, lambda s: s.due_at is not None, 20)
        assert status.stage == RectificationStage.VERIFYING and status.score == value.rating.score
    elif workflow_type == "SuggestionWorkflow":
        status = await poll(handle, SuggestionWorkflow.status, lambda s: s.due_at is not None, 20)
        assert status.stage == SuggestionStage.OPEN and status.complexity == value.complexity
    elif workflow_type == "RiskWorkflow":
        status = await poll(handle, RiskWorkflow.status, lambda s: s.due_at is not None, 20)
        level = value.level or RISK_POLICY.level_for(value.probability, value.impact)
        assert status.entry.state == RiskState.AWAITING_ACKNOWLEDGEMENT and status.entry.level == level
    else:
        # The watch takes a rating over the window it was started with.
        now = await hall.env.get_current_time()
        rating = Rating(
            case_no=fresh("W"),
            matter_code="enterprise-opening",
            department=value.department,
            hall="hall-central",
            score=1,
            channel="app",
            at=now,
        )
        await handle.signal(SatisfactionWatchWorkflow.rating, rating)
        # The window is whole Asia/Shanghai days, today included (workflows/satisfaction.py).
        first = now.astimezone(SHANGHAI).date() - timedelta(days=RISK_POLICY.satisfaction.window_days - 1)
        least = sum(d.ratings for d in value.days if d.day >= first) + 1

        async def settled() -> bool:
            if await task_failures(handle):
                return True
            s = await handle.query(SatisfactionWatchWorkflow.status)
            return s.ratings >= least

        for _ in range(200):
            if await settled():
                break
            await asyncio.sleep(0.05)
    await still_sound(handle, INPUT_QUERIES[workflow_type], may_complete=False)


@pytest.mark.parametrize("workflow_type", list(INPUTS))
@settings(SETTINGS, max_examples=INPUT_EXAMPLES)
@given(data=st.data())
async def test_a_bad_input_fails_the_workflow_at_once_and_a_good_one_runs(hall, workflow_type, data):
    model, id_field, id_for, well_formed = INPUTS[workflow_type]
    fresh_id = _fresh_id(workflow_type)
    # Now and then a valid input started under another workflow's id: WorkflowIdMismatch.
    given_id = data.draw(st.sampled_from([fresh_id] * 4 + [_fresh_id(workflow_type)]), label="id in the input")

    def prepare(obj: Any) -> Any:
        if isinstance(obj, dict) and obj.get(id_field) == TOKEN:
            obj[id_field] = given_id
        return obj

    message = data.draw(sent(well_formed, prepare), label="input")
    value = read(model, message)
    workflow_id = PREFIX[workflow_type] + fresh_id
    # Who starts each: a case its clerk; a suggestion the public; the rest hallflow (a bad review,
    # an overdue case, the watch), as production does. Judged once the input is read.
    actor = sender(value) if workflow_type == "CaseWorkflow" else STARTED_BY[workflow_type]
    if value is None:
        expected = "InvalidPayload"
    elif id_for(value) != workflow_id:
        expected = "WorkflowIdMismatch"
    else:
        # A case's rule looks at the application's hall; no other start looks at the workflow's state.
        expected = who_refuses(WORKFLOW_OF[workflow_type], "start", value, actor, None)
    event(expected or "runs")

    with signed_as(actor):
        handle = await hall.client.start_workflow(
            workflow_type, args=message.args, id=workflow_id, task_queue=hall.task_queue, execution_timeout=TIMEOUT
        )
    if expected is None:
        await _runs_as_its_procedure_says(hall, workflow_type, handle, value)
    else:
        failure = await _failure(handle)
        info = failure.application_failure_info
        assert info.type == expected, f"failed with {info.type or failure.message}, expected {expected}"
        assert info.non_retryable
        assert not await task_failures(handle)


# ---- defects these properties found (minimal examples), now fixed: regression tests -------------


async def settle(handle: WorkflowHandle, done: Callable[[dict], bool]) -> None:
    """Poll `status` (as JSON) until `done`; fail at once when a workflow task fails meanwhile."""
    for _ in range(100):
        assert not await task_failures(handle), "a workflow task failed"
        try:
            shown = await handle.query("status", result_type=RawValue, rpc_timeout=timedelta(seconds=1))
        except RPCError:
            continue  # a query waits while a workflow task is failing: look at the history again
        if done(json.loads(shown.payload.data)):
            return
        await asyncio.sleep(0.05)


async def test_a_watch_started_with_more_bad_than_ratings_in_a_day_fails_at_once(hall):
    department = _fresh_id("SatisfactionWatchWorkflow")
    # A carried day is counts only: more bad reviews than ratings is no state a watch could reach.
    state = {"department": department, "days": [{"day": "2099-01-05", "ratings": 1, "bad": 2}]}
    handle = await hall.client.start_workflow(
        "SatisfactionWatchWorkflow",
        raw(b"json/plain", json.dumps(state).encode()),
        id=watch_workflow_id(department),
        task_queue=hall.task_queue,
        execution_timeout=TIMEOUT,
    )
    failure = await _failure(handle)
    assert failure.application_failure_info.type == "InvalidPayload" and "days" in failure.message
    await no_task_failed(handle)


LONG = "k" * 4_000


@pytest.mark.parametrize(
    ("signal", "args"),
    [
        ("urge_signal", [raw(b"json/plain", b'{"by": "hall-central", "k\\u0000": 1}')]),  # legal JSON
        ("urge\u0000_signal", []),
        ("urge_signal", [raw(b"json/plain", json.dumps({"by": "hall-central", LONG: 1}).encode())]),
        (LONG + "_signal", []),
    ],
    ids=[
        "NUL in an unknown field's name",
        "NUL in the signal's name",
        "4000-character unknown field name",
        "4000-character signal name",
    ],
)
async def test_a_twin_refused_over_its_field_or_signal_name_leaves_the_case_working(hall, signal, args):
    handle = await _case(hall, "social-insurance-transfer")
    try:
        if signable(signal):
            await handle.signal(signal, args=args)
            await settle(handle, lambda shown: shown["refused_signal_count"] == 1)
            status = await still_sound(handle, CaseWorkflow.status, may_complete=False)
            assert status.refused_signals[-1].error in ("InvalidPayload", "UnknownSignal")
        else:
            # No assertion can name this signal (a control character, over 1000 characters): it
            # goes unsigned, and the guard drops it as Unauthenticated before anything reads or
            # stores its name (only logged: it is no twin to record).
            unsigned = Client(**{**hall.client.config(), "interceptors": []})
            await unsigned.get_workflow_handle(handle.id).signal(signal, args=args)
            status = await still_sound(handle, CaseWorkflow.status, may_complete=False)
            history = await handle.fetch_history()
            assert [e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED]
            assert status.refused_signal_count == 0
        answer = await asyncio.wait_for(
            handle.execute_update(CaseWorkflow.review, Review(reviewer="officer-huang", decision="approve")), 10
        )
        assert answer.stage == CaseStage.APPROVED
    finally:
        await handle.terminate("property test: done")


FULL = "办" * 4_000  # Text's and Reason's longest: 4000 characters


@pytest.mark.parametrize(
    ("state", "workflow", "messages"),
    [
        ("review", "case", [("urge", {"by": "hall-central", "note": FULL})]),  # notices.urged
        ("review", "case", [("review", {"reviewer": "officer-huang", "decision": "reject", "opinion": FULL})]),  # notices.rejected
        ("review", "case", [("review", {"reviewer": "officer-huang", "decision": "return", "corrections": [FULL]})]),  # notices.returned
        (
            "panel",
            "case",
            [  # Decision.reasons joins the opinions: the audit reason of `approved`
                ("vote", {"member": "officer-zhao", "choice": "approve", "opinion": FULL}),
                ("vote", {"member": "officer-chen", "choice": "approve", "opinion": FULL}),
            ],
        ),
        ("rectifying", "rectification", [("rectify", {"officer": "officer-fund-1", "action": "fixed", "reply": FULL})]),  # notices.bad_review_answered
        ("open", "suggestion", [("respond", {"department": "natural-resources", "officer": "officer-zhou", "adopted": False, "reason": FULL})]),  # notices.suggestion_answered
    ],
    ids=["urge note", "reject opinion", "return correction", "panel opinions", "rectify reply", "respond reason"],
)
async def test_the_longest_text_the_contract_allows_is_applied(hall, state, workflow, messages):
    handle = await STATES[state].make(hall)
    calls: list[asyncio.Future] = []
    try:
        for update, payload in messages:
            model = MESSAGES[(workflow, update)][0]
            with signed_as(payload.get(ACTOR_FIELD.get(model, ""))):  # the task takes the context as it is now
                call = asyncio.ensure_future(handle.execute_update(update, raw(b"json/plain", json.dumps(payload).encode())))
            calls.append(call)
            for _ in range(100):
                await no_task_failed(handle)
                if call.done():
                    break
                await asyncio.sleep(0.1)
            call.result()
        await still_sound(handle, QUERIES[workflow], may_complete=True)
    finally:
        try:
            await handle.terminate("property test: done")
        except RPCError:
            pass  # completed as its procedure says
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
