"""The case clock: promised and statutory limits in working days, paused while the case is back
with the applicant (补正), yellow at 80% of the promised limit and red once it has passed.

Instants are written in Asia/Shanghai; "D 24:00" is when a limit ending on working day D runs out.
Working days come from tests/data/calendar/2099.toml (2026's arrangement replayed in 2099).
"""

import asyncio
from datetime import date, datetime, time, timedelta

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateRPCTimeoutOrCancelledError

from contract import search
from contract.approval import Resubmit, Review
from contract.case import CaseStage
from contract.common import SHANGHAI
from tests.builders import application, eventually, start_case, wait_status
from tests.temporal_fixtures import travel_to
from workflows.case import CaseWorkflow

SHORTLY = timedelta(minutes=1)
SOCIAL_INSURANCE_DEPARTMENT = "human-resources-social-security"


def local(y: int, m: int, d: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(y, m, d, hour, minute, tzinfo=SHANGHAI)


def end_of(day: date) -> datetime:
    """24:00 Asia/Shanghai of `day`."""
    return datetime.combine(day + timedelta(days=1), time(0), SHANGHAI)


# ---- helpers ----------------------------------------------------------------------------------


async def _awaiting_review(env, tq, matter):
    app = application(matter)
    handle = await start_case(env.client, app, tq)
    status = await wait_status(handle, lambda s: s.stage == CaseStage.AWAITING_REVIEW)
    assert status.stage == CaseStage.AWAITING_REVIEW, status
    return app, handle, status


async def _return(handle, reviewer: str, corrections: list[str]):
    await handle.execute_update(
        CaseWorkflow.review, Review(reviewer=reviewer, decision="return", opinion="材料需补正", corrections=corrections)
    )
    status = await wait_status(handle, lambda s: s.stage == CaseStage.RETURNED)
    assert status.stage == CaseStage.RETURNED, status
    return status


async def _resubmit(handle, materials: list[str], note: str = "已按补正告知书补正"):
    async def resubmit_and_resume():
        await handle.execute_update(CaseWorkflow.resubmit, Resubmit(materials=materials, note=note))
        # The pause ends (and the due dates move) once the procedure has counted it.
        return await wait_status(
            handle, lambda s: s.stage == CaseStage.AWAITING_REVIEW and s.pauses and s.pauses[-1].ended_at is not None
        )

    # A failing workflow task would keep the Update waiting for ever: fail the test instead.
    try:
        status = await asyncio.wait_for(resubmit_and_resume(), timeout=10)
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        pytest.fail("resubmit got no answer in 10 s: the workflow task is failing (see the worker log)")
    assert status.stage == CaseStage.AWAITING_REVIEW and status.pauses[-1].ended_at is not None, status
    return status


async def _quiet(handle: WorkflowHandle):
    """Status after giving anything that came due during the last travel time to run."""
    await asyncio.sleep(0.25)
    return await handle.query(CaseWorkflow.status)


async def _risk(handle: WorkflowHandle) -> tuple[str | None, bool | None]:
    attrs = (await handle.describe()).typed_search_attributes
    return attrs.get(search.RISK_LEVEL), attrs.get(search.CASE_OVERDUE)


async def _due_at(handle: WorkflowHandle) -> datetime | None:
    return (await handle.describe()).typed_search_attributes.get(search.CASE_DUE_AT)


def _audit(store, case_no: str, action: str):
    return [e for e in store.audit_trail("case", case_no) if e.action == action]


def _deadline_notices(store, case_no: str):
    return [n for n in store.notices(case_no) if n.kind.startswith("deadline_")]


def _at(instant: datetime, expected: datetime) -> bool:
    return abs(instant - expected) < timedelta(seconds=5)


# ---- return -> resubmit (补正) -------------------------------------------------------------------

# social-insurance-transfer (promised 10, statutory 30 working days) accepted Tue 09-22 10:00.
# Working days after it: 1 09-23, 2 09-24, [09-25..09-27 Mid-Autumn], 3 09-28, 4 09-29, 5 09-30,
# [10-01..10-07 National Day], 6 10-08, 7 10-09, 8 Sat 10-10 (make-up day), [Sun 10-11], 9 10-12,
# 10 10-13, 11 10-14, 12 10-15, 13 10-16, 14 10-19, 15 10-20, 16 10-21, 17 10-22, 18 10-23,
# 19 10-26, 20 10-27, 21 10-28, 22 10-29, 23 10-30, 24 11-02, 25 11-03, 26 11-04, 27 11-05,
# 28 11-06, 29 11-09, 30 11-10, 31 11-11, 32 11-12, 33 11-13, 34 11-16, 35 11-17, 36 11-18, 37 11-19.
RETURN_ACCEPTED = local(2099, 9, 22, 10)
RETURN_PROMISED = end_of(date(2099, 10, 13))  # working day 10
RETURN_STATUTORY = end_of(date(2099, 11, 10))  # working day 30
# Returned Thu 09-24 10:00 (working day 2, used), resubmitted Mon 10-12 10:00. Paused working
# days are those after the return day up to and including the resubmission day (the day a
# period starts is not counted): 09-28, 09-29, 09-30, 10-08, 10-09, Sat 10-10, 10-12 = 7 —
# Mid-Autumn, National Day and Sun 10-11 are not counted, the make-up Saturday is.
RETURNED_AT = local(2099, 9, 24, 10)
RESUBMITTED_AT = local(2099, 10, 12, 10)
PAUSED_DAYS = 7
RESUMED_PROMISED = end_of(date(2099, 10, 22))  # 10-13 + 7 working days = working day 17
RESUMED_STATUTORY = end_of(date(2099, 11, 19))  # 11-10 + 7 working days = working day 37
CORRECTIONS = [
    "参保缴费凭证缺少 2098 年 7 至 12 月的缴费记录",
    "转移接续申请表第 3 栏签名与身份证姓名不一致",
    "请注明转入地社保经办机构全称",
]


async def test_return_pauses_the_clock_and_resubmission_moves_both_due_dates_by_the_paused_working_days(
    env, hall_worker, catalog, sqlite_store
):
    await travel_to(env, RETURN_ACCEPTED)
    async with hall_worker(env.client) as tq:
        app, handle, accepted = await _awaiting_review(env, tq, catalog["social-insurance-transfer"])
        due_before = await _due_at(handle)

        await travel_to(env, RETURNED_AT)
        returned = await _return(handle, "officer-huang", CORRECTIONS)
        told = await eventually(
            lambda: [n for n in sqlite_store.notices(app.case_no) if n.kind == "returned_for_correction"]
        )
        # Across Mid-Autumn and National Day the returned case does not age.
        await travel_to(env, RESUBMITTED_AT - SHORTLY)
        still_returned = await _quiet(handle)

        await travel_to(env, RESUBMITTED_AT)
        resumed = await _resubmit(handle, ["contribution-certificate", "transfer-application"])
        resumed_trail = await eventually(lambda: _audit(sqlite_store, app.case_no, "clock_resumed"))
        due_after = await _due_at(handle)

        await handle.execute_update(CaseWorkflow.review, Review(reviewer="officer-huang", decision="approve"))
        outcome = await handle.result()

    assert accepted.promised_due_at == RETURN_PROMISED
    assert accepted.statutory_due_at == RETURN_STATUTORY
    assert due_before == RETURN_PROMISED

    # Returned: the applicant is told every correction in one notice; the pause is on the case.
    assert returned.waiting_on == [f"applicant:{app.applicant.applicant_id}"]
    assert len(told) == 1 and told[0].recipient == f"applicant:{app.applicant.applicant_id}"
    for correction in CORRECTIONS:
        assert correction in told[0].body
    assert len(returned.pauses) == 1
    pause = returned.pauses[0]
    assert pause.ended_at is None and pause.working_days == 0 and "补正" in pause.reason
    assert _at(pause.started_at, RETURNED_AT)
    returned_entry = _audit(sqlite_store, app.case_no, "returned")[0]
    assert returned_entry.actor == "officer-huang" and returned_entry.details["corrections"] == CORRECTIONS

    # While returned the due dates stand still and no working day is used (09-23 and 09-24 were).
    assert still_returned.stage == CaseStage.RETURNED
    assert still_returned.promised_due_at == RETURN_PROMISED
    assert still_returned.working_days_used == 2 and still_returned.warning is None

    # Resubmitted: the pause counts exactly the paused working days and both limits move by them.
    assert len(resumed.pauses) == 1
    pause = resumed.pauses[0]
    assert pause.working_days == PAUSED_DAYS
    assert _at(pause.ended_at, RESUBMITTED_AT)
    assert resumed.promised_due_at == RESUMED_PROMISED
    assert resumed.statutory_due_at == RESUMED_STATUTORY
    assert resumed.working_days_used == 2 and resumed.working_days_left == 8
    assert resumed.reviewer == "officer-huang" and resumed.waiting_on == ["officer-huang"]
    assert resumed_trail[0].actor == "hallflow"
    assert resumed_trail[0].details["paused_working_days"] == PAUSED_DAYS
    assert datetime.fromisoformat(resumed_trail[0].details["promised_due_at"]) == RESUMED_PROMISED
    assert due_after == RESUMED_PROMISED
    resubmitted = _audit(sqlite_store, app.case_no, "resubmitted")[0]
    assert resubmitted.details["materials"] == ["contribution-certificate", "transfer-application"]
    actions = [e.action for e in sqlite_store.audit_trail("case", app.case_no)]
    assert actions[actions.index("returned") :] == [
        "returned",
        "resubmitted",
        "clock_resumed",
        "review_requested",
        "reviewed",
        "approved",
        "rating_window_closed",
    ]

    # Decided the day the corrections came in: two working days used of ten.
    assert outcome.stage == CaseStage.APPROVED
    assert (outcome.working_days_used, outcome.promised_days, outcome.statutory_days) == (2, 10, 30)
    assert not _deadline_notices(sqlite_store, app.case_no)


# ---- yellow and red ---------------------------------------------------------------------------

# Accepted at the test epoch, Mon 2099-01-05 10:00; working days after it: 01-06, 01-07, 01-08,
# 01-09, [weekend], 01-12, 01-13, 01-14 ... Each working day counts as 24 h from its 00:00.
DEADLINES = [
    pytest.param(
        # Promised 7: 80% = 5.6 working days = 01-06, 01-07, 01-08, 01-09, 01-12 and 0.6 x 24 h
        # (14:24) of Tue 01-13. Overdue after working day 7, Wed 01-14 24:00.
        "medical-device-license",
        "medical-products",
        local(2099, 1, 13, 14, 24),
        end_of(date(2099, 1, 14)),
        id="medical-device-license",
    ),
    pytest.param(
        # Promised 1: 80% = 0.8 x 24 h = 19:12 of Tue 01-06; overdue after Tue 01-06 24:00.
        "enterprise-opening",
        "market-regulation",
        local(2099, 1, 6, 19, 12),
        end_of(date(2099, 1, 6)),
        id="enterprise-opening",
    ),
]


@pytest.mark.parametrize("matter_code, department, yellow_at, red_at", DEADLINES)
async def test_yellow_at_80_percent_and_red_when_overdue_go_to_the_lead_department_at_that_instant(
    env, hall_worker, catalog, sqlite_store, matter_code, department, yellow_at, red_at
):
    async with hall_worker(env.client) as tq:
        app, handle, accepted = await _awaiting_review(env, tq, catalog[matter_code])

        await travel_to(env, yellow_at - SHORTLY)
        before_yellow = await _quiet(handle)
        risk_before_yellow = await _risk(handle)
        notices_before_yellow = _deadline_notices(sqlite_store, app.case_no)

        await travel_to(env, yellow_at + SHORTLY)
        yellow = await eventually(lambda: _deadline_notices(sqlite_store, app.case_no))
        after_yellow = await wait_status(handle, lambda s: s.warning == "yellow")
        risk_after_yellow = await _risk(handle)

        await travel_to(env, red_at - SHORTLY)
        before_red = await _quiet(handle)
        notices_before_red = _deadline_notices(sqlite_store, app.case_no)

        await travel_to(env, red_at + SHORTLY)
        both = await eventually(
            lambda: len(_deadline_notices(sqlite_store, app.case_no)) == 2 and _deadline_notices(sqlite_store, app.case_no)
        )
        after_red = await wait_status(handle, lambda s: s.warning == "red")
        risk_after_red = await _risk(handle)
        trail = await eventually(lambda: _audit(sqlite_store, app.case_no, "deadline_red") and sqlite_store.audit_trail("case", app.case_no))

    assert accepted.promised_due_at == red_at and accepted.warning is None

    assert before_yellow.warning is None
    assert risk_before_yellow == (None, None)
    assert notices_before_yellow == []

    assert [(n.kind, n.recipient) for n in yellow] == [("deadline_yellow", department)]
    assert _at(yellow[0].at, yellow_at)
    assert f"{red_at - SHORTLY:%Y-%m-%d} 24:00" in yellow[0].body  # names the promised limit
    assert after_yellow.warning == "yellow" and after_yellow.stage == CaseStage.AWAITING_REVIEW
    assert risk_after_yellow == ("yellow", False)

    assert before_red.warning == "yellow"
    assert [n.kind for n in notices_before_red] == ["deadline_yellow"]

    assert [(n.kind, n.recipient) for n in both] == [("deadline_yellow", department), ("deadline_red", department)]
    assert _at(both[1].at, red_at)
    assert after_red.warning == "red" and after_red.stage == CaseStage.AWAITING_REVIEW
    assert risk_after_red == ("red", True)

    warnings = [e for e in trail if e.action.startswith("deadline_")]
    assert [(e.action, e.actor) for e in warnings] == [("deadline_yellow", "hallflow"), ("deadline_red", "hallflow")]
    assert all(datetime.fromisoformat(e.details["promised_due_at"]) == red_at for e in warnings)


# ---- a paused case does not age ---------------------------------------------------------------

# social-insurance-transfer accepted at the test epoch, Mon 01-05 10:00. Working days after it:
# 1 01-06, 2 01-07, 3 01-08, 4 01-09, 5 01-12, 6 01-13, 7 01-14, 8 01-15, 9 01-16, 10 01-19,
# 11 01-20, 12 01-21, 13 01-22, 14 01-23, 15 01-26, 16 01-27, 17 01-28, 18 01-29, 19 01-30,
# 20 02-02, ... 30 Sat 02-14 (make-up day), [02-15..02-23 Spring Festival], ... 40 03-06.
# Unpaused: yellow when 8 days are used, 01-16 00:00; red after 01-19 24:00.
PAUSED_ORIGINAL_YELLOW = local(2099, 1, 16)
PAUSED_ORIGINAL_RED = end_of(date(2099, 1, 19))
# Returned Wed 01-07 10:00, resubmitted Wed 01-21 10:00: paused 01-08, 01-09, 01-12 .. 01-16,
# 01-19, 01-20, 01-21 = 10 working days.
PAUSE_FROM = local(2099, 1, 7, 10)
PAUSE_UNTIL = local(2099, 1, 21, 10)
# Everything moves 10 working days: yellow at the start of working day 19 (8 + 10 days used =
# 01-22, 01-23, 01-26 .. 01-29 after 2 before the pause), red after working day 20, and the
# statutory limit from working day 30 (Sat 02-14) to 40, across the Spring Festival.
MOVED_YELLOW = local(2099, 1, 30)
MOVED_RED = end_of(date(2099, 2, 2))
MOVED_STATUTORY = end_of(date(2099, 3, 6))


async def test_a_returned_case_does_not_turn_yellow_or_red_and_its_warnings_move_after_resubmission(
    env, hall_worker, catalog, sqlite_store
):
    async with hall_worker(env.client) as tq:
        app, handle, accepted = await _awaiting_review(env, tq, catalog["social-insurance-transfer"])
        await travel_to(env, PAUSE_FROM)
        await _return(handle, "officer-huang", ["请补充户口簿首页及本人页复印件"])

        # Past the original yellow and red instants while the case is with the applicant.
        await travel_to(env, PAUSED_ORIGINAL_RED + SHORTLY)
        paused = await _quiet(handle)
        risk_paused = await _risk(handle)
        notices_paused = _deadline_notices(sqlite_store, app.case_no)

        await travel_to(env, PAUSE_UNTIL)
        resumed = await _resubmit(handle, ["household-register"])

        await travel_to(env, MOVED_YELLOW - SHORTLY)
        before_yellow = await _quiet(handle)
        notices_before_yellow = _deadline_notices(sqlite_store, app.case_no)

        await travel_to(env, MOVED_YELLOW + SHORTLY)
        yellow = await eventually(lambda: _deadline_notices(sqlite_store, app.case_no))
        after_yellow = await wait_status(handle, lambda s: s.warning == "yellow")

        await travel_to(env, MOVED_RED + SHORTLY)
        both = await eventually(
            lambda: len(_deadline_notices(sqlite_store, app.case_no)) == 2 and _deadline_notices(sqlite_store, app.case_no)
        )
        after_red = await wait_status(handle, lambda s: s.warning == "red")
        risk_after_red = await _risk(handle)

    assert accepted.promised_due_at == PAUSED_ORIGINAL_RED
    assert PAUSED_ORIGINAL_YELLOW < PAUSED_ORIGINAL_RED < PAUSE_UNTIL

    assert paused.stage == CaseStage.RETURNED and paused.warning is None
    assert paused.working_days_used == 2  # 01-06 and the return day 01-07
    assert paused.promised_due_at == PAUSED_ORIGINAL_RED  # moves only once the pause is counted
    assert risk_paused == (None, None)
    assert notices_paused == []

    assert resumed.pauses[0].working_days == 10
    assert resumed.promised_due_at == MOVED_RED
    assert resumed.statutory_due_at == MOVED_STATUTORY
    assert resumed.warning is None and resumed.working_days_used == 2

    assert before_yellow.warning is None and notices_before_yellow == []
    assert [(n.kind, n.recipient) for n in yellow] == [("deadline_yellow", SOCIAL_INSURANCE_DEPARTMENT)]
    assert _at(yellow[0].at, MOVED_YELLOW)
    assert "2099-02-02 24:00" in yellow[0].body  # the moved promised limit
    assert after_yellow.warning == "yellow"

    assert [n.kind for n in both] == ["deadline_yellow", "deadline_red"]
    assert _at(both[1].at, MOVED_RED)
    assert after_red.warning == "red" and risk_after_red == ("red", True)
