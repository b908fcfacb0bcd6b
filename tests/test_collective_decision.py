"""Tier 2, collective decision (集体决策): the panel votes after the comprehensive review approved.

What a member, the chair and the applicant see: a quorum of the members who should attend, the
matter's rule (a majority of those members, or the chair deciding once all have spoken), the tier-1
reviewer recused, one position per member (changeable until the vote closes), the chair called
in when the deadline passes without a quorum, and every position in the minutes.
"""

import asyncio
from datetime import date, datetime, time, timedelta

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from contract import search
from contract.approval import DepartmentOpinion, Review, Transfer, Vote
from contract.case import CaseStage, SupplementMaterials
from contract.common import SHANGHAI
from tests.builders import OFFICER_OF, application, eventually, start_case, wait_status
from tests.temporal_fixtures import travel_to
from workflows.case import CaseWorkflow

# Every case here is accepted and reviewed at the test epoch, Mon 2099-01-05 10:00 +08:00; the
# test calendar has no holiday in the following weeks, so the working days after it are
# Tue 01-06, Wed 01-07, Thu 01-08, Fri 01-09, Mon 01-12 ...
SHORTLY = timedelta(minutes=1)
ENTERPRISE_PANEL = ["officer-zhao", "officer-chen", "officer-sun"]  # chair officer-zhao, majority
REAL_ESTATE_PANEL = ["officer-zheng", "officer-feng", "officer-he"]  # chair officer-zheng, chair_decides


def end_of(day: date) -> datetime:
    """24:00 Asia/Shanghai of `day`: when a limit of working days ending that day runs out."""
    return datetime.combine(day + timedelta(days=1), time(0), SHANGHAI)




# enterprise-opening: voting_days 1 -> the vote closes Tue 01-06 24:00.
ENTERPRISE_VOTE_CLOSES = end_of(date(2099, 1, 6))
# real-estate-registration: voting_days 2 -> Wed 01-07 24:00 (promised 5 days: Mon 01-12 24:00).
REAL_ESTATE_VOTE_CLOSES = end_of(date(2099, 1, 7))
# construction-permit: voting_days 5 -> Mon 01-12 24:00.
CONSTRUCTION_VOTE_CLOSES = end_of(date(2099, 1, 12))


# ---- helpers ----------------------------------------------------------------------------------


async def _to_panel(env, tq, matter, reviewer: str | None = None):
    """Accept a complete case, answer every consulted department, approve the review: in_panel."""
    app = application(matter)
    handle = await start_case(env.client, app, tq)
    if matter.consult:
        await wait_status(handle, lambda s: s.stage == CaseStage.CONSULTING)
        for c in matter.consult:
            await handle.execute_update(
                CaseWorkflow.department_opinion,
                DepartmentOpinion(department=c.department, officer=OFFICER_OF[c.department], agree=True),
            )
    status = await wait_status(handle, lambda s: s.stage == CaseStage.AWAITING_REVIEW)
    assert status.stage == CaseStage.AWAITING_REVIEW, status
    reviewer = reviewer or status.reviewer
    if reviewer != status.reviewer:
        await handle.execute_update(
            CaseWorkflow.transfer, Transfer(by=status.reviewer, to_reviewer=reviewer, reason="熟悉该项目")
        )
    await handle.execute_update(
        CaseWorkflow.review, Review(reviewer=reviewer, decision="approve", opinion="材料齐全，符合条件，提请集体决策")
    )
    status = await wait_status(handle, lambda s: s.stage == CaseStage.IN_PANEL)
    assert status.stage == CaseStage.IN_PANEL, status
    return app, handle, status


async def _vote(handle, member: str, choice: str, opinion: str = ""):
    return await handle.execute_update(CaseWorkflow.vote, Vote(member=member, choice=choice, opinion=opinion))


async def _refusal(handle, member: str, choice: str = "approve") -> ApplicationError:
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await _vote(handle, member, choice)
    assert isinstance(err.value.cause, ApplicationError)
    return err.value.cause


async def _ended(handle):
    status = await wait_status(handle, lambda s: s.stage.is_final)
    assert status.stage.is_final, status
    return status


def _audit(store, case_no: str, action: str):
    return [e for e in store.audit_trail("case", case_no) if e.action == action]


def _actions(store, case_no: str) -> list[str]:
    return [e.action for e in store.audit_trail("case", case_no)]


def _notices(store, case_no: str, kind: str):
    return [n for n in store.notices(case_no) if n.kind == kind]


def _ballots(store, case_no: str) -> list[tuple[str, str, str]]:
    """(action, member, choice) of every position recorded, in order: the minutes."""
    return [
        (e.action, e.actor, e.details["choice"])
        for e in store.audit_trail("case", case_no)
        if e.action in ("voted", "vote_changed")
    ]


def _at(instant: datetime, expected: datetime) -> bool:
    return abs(instant - expected) < timedelta(seconds=5)


# ---- majority ---------------------------------------------------------------------------------


async def test_majority_of_the_panel_approves_and_the_result_is_issued(env, hall_worker, catalog, sqlite_store):
    async with hall_worker(env.client) as tq:
        app, handle, opened = await _to_panel(env, tq, catalog["enterprise-opening"])
        asked = await eventually(
            lambda: len(_notices(sqlite_store, app.case_no, "vote_requested")) == 3
            and _notices(sqlite_store, app.case_no, "vote_requested")
        )
        after_one = await _vote(handle, "officer-zhao", "approve", "股东资格、章程均符合规定")
        await _vote(handle, "officer-chen", "approve", "同意")
        await _ended(handle)
        outcome = await handle.result()
        desc = await handle.describe()
        issued = await eventually(lambda: _notices(sqlite_store, app.case_no, "result_issued"))

    assert opened.vote_closes_at == ENTERPRISE_VOTE_CLOSES
    assert opened.waiting_on == ENTERPRISE_PANEL and opened.votes == []
    assert sorted(n.recipient for n in asked) == sorted(ENTERPRISE_PANEL)
    assert all("2099-01-06 24:00" in n.body for n in asked)
    # One vote of three is no quorum (2 of 3): the case stays with the panel.
    assert after_one.stage == CaseStage.IN_PANEL
    assert [(v.member, v.choice) for v in after_one.votes] == [("officer-zhao", "approve")]
    assert after_one.waiting_on == ["officer-chen", "officer-sun"]

    # Two approvals of three members are a majority: decided without waiting for officer-sun.
    assert outcome.stage == CaseStage.APPROVED
    assert outcome.decision is not None
    assert outcome.decision.result == "approve" and outcome.decision.by == "panel"
    assert outcome.decision.inputs == {
        "rule": "majority",
        "votes": {"officer-zhao": "approve", "officer-chen": "approve"},
        "recused": None,
    }
    assert "股东资格、章程均符合规定" in outcome.decision.reasons
    assert (outcome.working_days_used, outcome.promised_days) == (0, 1)

    vote_opened = _audit(sqlite_store, app.case_no, "vote_opened")[0]
    assert vote_opened.details == {"electors": ENTERPRISE_PANEL, "quorum": 2, "rule": "majority", "recused": None}
    assert _ballots(sqlite_store, app.case_no) == [
        ("voted", "officer-zhao", "approve"),
        ("voted", "officer-chen", "approve"),
    ]
    closed = _audit(sqlite_store, app.case_no, "vote_closed")[0]
    assert closed.details == {"outcome": "approve", "votes": {"officer-zhao": "approve", "officer-chen": "approve"}}
    approved = _audit(sqlite_store, app.case_no, "approved")[0]
    assert approved.actor == "panel" and approved.details["decided_by"] == "panel"
    assert approved.details["on_time"] is True
    assert _actions(sqlite_store, app.case_no)[-5:] == ["voted", "voted", "vote_closed", "approved", "rating_window_closed"]
    assert [n.recipient for n in issued] == [f"applicant:{app.applicant.applicant_id}"]
    assert desc.typed_search_attributes.get(search.CASE_STAGE) == "approved"


async def test_without_a_majority_for_approval_the_panel_rejects_with_its_reasons(
    env, hall_worker, catalog, sqlite_store
):
    async with hall_worker(env.client) as tq:
        app, handle, _ = await _to_panel(env, tq, catalog["enterprise-opening"])
        await _vote(handle, "officer-zhao", "approve", "同意")
        split = await _vote(handle, "officer-chen", "reject", "住所使用证明与登记地址不符")
        await _vote(handle, "officer-sun", "reject", "经营范围涉及前置许可，尚未取得")
        status = await _ended(handle)
        outcome = await handle.result()
        told = await eventually(lambda: _notices(sqlite_store, app.case_no, "case_rejected"))

    # 1 for, 1 against: quorate, but no majority either way while a member has not spoken.
    assert split.stage == CaseStage.IN_PANEL
    assert status.stage == CaseStage.REJECTED
    assert outcome.stage == CaseStage.REJECTED
    assert outcome.decision is not None
    assert outcome.decision.result == "reject" and outcome.decision.by == "panel"
    assert outcome.decision.inputs["votes"] == {
        "officer-zhao": "approve",
        "officer-chen": "reject",
        "officer-sun": "reject",
    }
    for reason in ("住所使用证明与登记地址不符", "经营范围涉及前置许可，尚未取得"):
        assert reason in outcome.reason
        assert reason in told[0].body
    assert told[0].recipient == f"applicant:{app.applicant.applicant_id}"
    rejected = _audit(sqlite_store, app.case_no, "rejected")[0]
    assert rejected.actor == "panel" and "住所使用证明与登记地址不符" in rejected.reason
    assert _audit(sqlite_store, app.case_no, "vote_closed")[0].details["outcome"] == "reject"
    assert not _notices(sqlite_store, app.case_no, "result_issued")


# ---- quorum -----------------------------------------------------------------------------------


async def test_no_quorum_by_the_deadline_calls_the_chair_and_a_late_vote_decides(
    env, hall_worker, catalog, sqlite_store
):
    async with hall_worker(env.client) as tq:
        app, handle, opened = await _to_panel(env, tq, catalog["enterprise-opening"])
        await _vote(handle, "officer-sun", "approve", "同意")

        await travel_to(env, ENTERPRISE_VOTE_CLOSES - SHORTLY)
        await asyncio.sleep(0.3)  # anything due by now would have run
        before = _actions(sqlite_store, app.case_no)

        await travel_to(env, ENTERPRISE_VOTE_CLOSES + SHORTLY)
        chair_told = await eventually(lambda: _notices(sqlite_store, app.case_no, "vote_no_quorum"))
        await eventually(lambda: _audit(sqlite_store, app.case_no, "vote_no_quorum"))
        waiting = await handle.query(CaseWorkflow.status)

        # Wed 01-07 10:00: officer-chen votes late; two of three is a quorum and a majority.
        await travel_to(env, datetime(2099, 1, 7, 10, tzinfo=SHANGHAI))
        await _vote(handle, "officer-chen", "approve", "同意（补充表决）")
        await _ended(handle)
        outcome = await handle.result()

    assert opened.vote_closes_at == ENTERPRISE_VOTE_CLOSES
    assert "vote_no_quorum" not in before
    # At the deadline: the chair, and only the chair, is told; the case stays with the panel.
    assert [n.recipient for n in chair_told] == ["officer-zhao"]
    assert _at(chair_told[0].at, ENTERPRISE_VOTE_CLOSES)
    assert "仅 1 人表决" in chair_told[0].body and "需 2 人" in chair_told[0].body
    no_quorum = _audit(sqlite_store, app.case_no, "vote_no_quorum")
    assert len(no_quorum) == 1
    assert no_quorum[0].actor == "hallflow" and no_quorum[0].details == {"votes": 1, "quorum": 2}
    assert _at(no_quorum[0].at, ENTERPRISE_VOTE_CLOSES)
    assert waiting.stage == CaseStage.IN_PANEL
    assert waiting.waiting_on == ["officer-zhao", "officer-chen"]

    assert outcome.stage == CaseStage.APPROVED
    assert outcome.decision is not None and outcome.decision.by == "panel"
    assert outcome.decision.inputs["votes"] == {"officer-sun": "approve", "officer-chen": "approve"}
    assert _at(outcome.closed_at, datetime(2099, 1, 7, 10, tzinfo=SHANGHAI))
    # Decided after the promised day (Tue 01-06 24:00): late, and the trail says so.
    assert _audit(sqlite_store, app.case_no, "approved")[0].details["on_time"] is False
    assert len(_notices(sqlite_store, app.case_no, "vote_no_quorum")) == 1


# ---- who may vote -----------------------------------------------------------------------------


async def test_the_reviewer_on_the_panel_is_recused_and_quorum_counts_the_others(
    env, hall_worker, catalog, sqlite_store
):
    # construction-permit: officer-guo reviews the case (transferred from officer-xu) and sits on
    # the five-member panel; four vote, and a quorum of 0.67 of four is 3.
    electors = ["officer-hu", "officer-luo", "officer-liang", "officer-song"]
    async with hall_worker(env.client) as tq:
        app, handle, opened = await _to_panel(env, tq, catalog["construction-permit"], reviewer="officer-guo")
        refused = await _refusal(handle, "officer-guo")
        await _vote(handle, "officer-hu", "approve", "同意")
        two = await _vote(handle, "officer-luo", "approve", "同意")
        await _vote(handle, "officer-liang", "approve", "同意，注意施工安全")
        await _ended(handle)
        outcome = await handle.result()
        asked = _notices(sqlite_store, app.case_no, "vote_requested")

    assert opened.vote_closes_at == CONSTRUCTION_VOTE_CLOSES
    assert opened.waiting_on == electors
    assert refused.type == "Recused"
    assert "officer-guo" in str(refused) and "recusal" in str(refused)
    assert sorted(n.recipient for n in asked) == sorted(electors)
    vote_opened = _audit(sqlite_store, app.case_no, "vote_opened")[0]
    assert vote_opened.details == {"electors": electors, "quorum": 3, "rule": "majority", "recused": "officer-guo"}
    # Two approvals of four are neither a quorum nor a majority.
    assert two.stage == CaseStage.IN_PANEL and len(two.votes) == 2
    assert outcome.stage == CaseStage.APPROVED
    assert outcome.decision is not None and outcome.decision.inputs["recused"] == "officer-guo"
    assert "officer-guo" not in outcome.decision.inputs["votes"]
    assert [actor for _, actor, _ in _ballots(sqlite_store, app.case_no)] == electors[:3]


async def test_a_member_votes_once_and_may_change_the_vote_until_it_closes(env, hall_worker, catalog, sqlite_store):
    # residence-proof deferred under a signed commitment: after the panel approves, the case waits
    # for it (approved_pending_materials), so a member can still try to change their vote.
    matter = catalog["enterprise-opening"]
    async with hall_worker(env.client) as tq:
        app = application(matter, without=("residence-proof",), signed=True)
        handle = await start_case(env.client, app, tq)
        await wait_status(handle, lambda s: s.stage == CaseStage.AWAITING_REVIEW)
        await handle.execute_update(CaseWorkflow.review, Review(reviewer="officer-li", decision="approve"))
        await wait_status(handle, lambda s: s.stage == CaseStage.IN_PANEL)

        reviewer = await _refusal(handle, "officer-li")  # did the review, is not on the panel
        outsider = await _refusal(handle, "officer-wang")  # a reviewer of the matter, not on the panel
        stranger = await _refusal(handle, "officer-nobody")  # not in the directory at all
        await _vote(handle, "officer-zhao", "approve", "同意")
        again = await _refusal(handle, "officer-zhao", "approve")
        changed = await _vote(handle, "officer-zhao", "reject", "复核发现章程未载明出资期限")
        await _vote(handle, "officer-chen", "approve", "出资期限可在章程修正案中补正")
        await _vote(handle, "officer-sun", "approve", "同意")
        decided = await wait_status(handle, lambda s: s.stage == CaseStage.APPROVED_PENDING_MATERIALS)
        too_late = await _refusal(handle, "officer-zhao", "approve")
        await handle.execute_update(
            CaseWorkflow.supplement_materials, SupplementMaterials(materials=["residence-proof"], submitted_by="clerk-01")
        )
        await _ended(handle)
        outcome = await handle.result()

    assert reviewer.type == "NotPanelMember" and outsider.type == "NotPanelMember"
    assert "officer-zhao" in str(outsider)  # the refusal lists who is on the panel
    assert stranger.type == "UnknownActor"  # refused before the panel is looked at (docs/security.md)
    assert again.type == "AlreadyVoted"
    assert [(v.member, v.choice, v.changed) for v in changed.votes] == [("officer-zhao", "reject", True)]
    # The changed vote is the one counted: 2 for, 1 against.
    assert decided.decision is not None
    assert decided.decision.inputs["votes"] == {
        "officer-zhao": "reject",
        "officer-chen": "approve",
        "officer-sun": "approve",
    }
    # Once the panel has decided, the vote is closed.
    assert too_late.type == "WrongStage"
    assert outcome.stage == CaseStage.APPROVED
    assert outcome.decision == decided.decision
    # Refused votes leave no trace; the minutes keep both of officer-zhao's positions.
    assert _ballots(sqlite_store, app.case_no) == [
        ("voted", "officer-zhao", "approve"),
        ("vote_changed", "officer-zhao", "reject"),
        ("voted", "officer-chen", "approve"),
        ("voted", "officer-sun", "approve"),
    ]
    assert _audit(sqlite_store, app.case_no, "vote_changed")[0].reason == "复核发现章程未载明出资期限"


# ---- chair_decides ----------------------------------------------------------------------------


async def test_chair_decides_after_everyone_has_spoken_even_against_the_majority(
    env, hall_worker, catalog, sqlite_store
):
    async with hall_worker(env.client) as tq:
        app, handle, opened = await _to_panel(env, tq, catalog["real-estate-registration"])
        await _vote(handle, "officer-feng", "approve", "同意")
        both = await _vote(handle, "officer-he", "approve", "同意")
        await _vote(handle, "officer-zheng", "reject", "权属来源证明与登记簿记载不一致")
        await _ended(handle)
        outcome = await handle.result()

    # taxation was consulted before the review (一窗受理).
    assert "opinions_requested" in _actions(sqlite_store, app.case_no)
    assert opened.vote_closes_at == REAL_ESTATE_VOTE_CLOSES
    # Two of three approve (a quorum), but the chair has not spoken yet: still open.
    assert both.stage == CaseStage.IN_PANEL and both.waiting_on == ["officer-zheng"]
    assert outcome.stage == CaseStage.REJECTED
    assert outcome.decision is not None and outcome.decision.by == "panel"
    assert outcome.decision.inputs == {
        "rule": "chair_decides",
        "votes": {"officer-feng": "approve", "officer-he": "approve", "officer-zheng": "reject"},
        "recused": None,
    }
    assert "权属来源证明与登记簿记载不一致" in outcome.reason


async def test_chair_decides_at_the_deadline_when_a_member_stays_silent(env, hall_worker, catalog, sqlite_store):
    async with hall_worker(env.client) as tq:
        app, handle, _ = await _to_panel(env, tq, catalog["real-estate-registration"])
        await _vote(handle, "officer-zheng", "approve", "同意登记")
        await _vote(handle, "officer-feng", "reject", "建议补充测绘")
        await travel_to(env, REAL_ESTATE_VOTE_CLOSES - SHORTLY)
        await asyncio.sleep(0.3)
        before = await handle.query(CaseWorkflow.status)
        await travel_to(env, REAL_ESTATE_VOTE_CLOSES + SHORTLY)
        await _ended(handle)
        outcome = await handle.result()

    # officer-he never votes: before the deadline the chair's position waits for them.
    assert before.stage == CaseStage.IN_PANEL and before.waiting_on == ["officer-he"]
    # At the deadline a quorum (2 of 3) has voted: the chair's position decides.
    assert outcome.stage == CaseStage.APPROVED
    assert outcome.decision is not None and outcome.decision.by == "panel"
    assert _at(outcome.closed_at, REAL_ESTATE_VOTE_CLOSES)
    assert outcome.decision.inputs["votes"] == {"officer-zheng": "approve", "officer-feng": "reject"}
    assert "vote_no_quorum" not in _actions(sqlite_store, app.case_no)
    assert [n.recipient for n in _notices(sqlite_store, app.case_no, "result_issued")] == [
        f"applicant:{app.applicant.applicant_id}"
    ]


async def test_chair_silent_at_the_deadline_is_asked_to_decide_and_the_case_stays_open(
    env, hall_worker, catalog, sqlite_store
):
    async with hall_worker(env.client) as tq:
        app, handle, _ = await _to_panel(env, tq, catalog["real-estate-registration"])
        await _vote(handle, "officer-feng", "approve", "同意")
        await _vote(handle, "officer-he", "approve", "同意")
        await travel_to(env, REAL_ESTATE_VOTE_CLOSES + SHORTLY)
        chair_told = await eventually(lambda: _notices(sqlite_store, app.case_no, "vote_chair_awaited"))
        waiting = await handle.query(CaseWorkflow.status)
        await _vote(handle, "officer-zheng", "approve", "同意登记")
        await _ended(handle)
        outcome = await handle.result()

    # A quorum voted, so this is not a lack of quorum: the chair is asked for the decision.
    assert [n.recipient for n in chair_told] == ["officer-zheng"]
    assert "vote_no_quorum" not in _actions(sqlite_store, app.case_no)
    assert waiting.stage == CaseStage.IN_PANEL and waiting.waiting_on == ["officer-zheng"]
    assert outcome.stage == CaseStage.APPROVED
