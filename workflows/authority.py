"""Who may do what, decided from the directory copy the workflow holds (contract/org.py).

A refusal says who may do it instead, so the sender can fix the message: `UnknownActor` for
someone the directory does not know or who has left, `Forbidden` for someone known but not
entitled. Validators call these; the guard records each refusal in the audit trail.
"""

from collections.abc import Iterable
from datetime import datetime

from temporalio.exceptions import ApplicationError

from contract.org import APPLICANT, SYSTEM_ACTOR, Directory, Role

SHOWN = 8  # names listed in a refusal; more are counted


def _who(allowed: list[str]) -> str:
    if not allowed:
        return "nobody in the directory now (ask the hall's administration office)"
    more = f" and {len(allowed) - SHOWN} more" if len(allowed) > SHOWN else ""
    return ", ".join(allowed[:SHOWN]) + more


def known(org: Directory, actor: str) -> bool:
    """In the directory: an officer (in post or not), a hall, the applicant or hallflow."""
    return org.officer(actor) is not None or actor in (APPLICANT, SYSTEM_ACTOR) or org.is_hall(actor)


def refuse_unless(org: Directory, at: datetime, actor: str, allowed: Iterable[str], what: str) -> None:
    """Refuse unless `actor` is in the directory, has not left (an officer), and is one of
    `allowed`. Someone the directory does not know is refused even when `allowed` names them (a
    risk's owner is whatever its report said)."""
    allowed = list(dict.fromkeys(allowed))
    officer = org.officer(actor)
    if officer is not None and org.active(actor, at) is None:
        raise ApplicationError(
            f"{actor} left after {officer.left_after} and can no longer act; {what} may be done by: {_who(allowed)}",
            type="UnknownActor",
            non_retryable=True,
        )
    if not known(org, actor):
        raise ApplicationError(
            f"{actor} is not in the organisation directory (version {org.version}); "
            f"{what} may be done by: {_who([a for a in allowed if known(org, a)])}",
            type="UnknownActor",
            non_retryable=True,
        )
    if actor in allowed:
        return
    raise ApplicationError(f"{actor} may not {what}; who may: {_who(allowed)}", type="Forbidden", non_retryable=True)


def require_active(org: Directory, at: datetime, actor: str, what: str) -> None:
    """Refuse someone unknown or gone before a step's own rule (reviewer, panel) is checked."""
    if org.active(actor, at) is not None:
        return
    officer = org.officer(actor)
    gone = f"left after {officer.left_after} and can no longer act" if officer else (
        f"is not in the organisation directory (version {org.version})")
    raise ApplicationError(f"{actor} {gone}: they may not {what}", type="UnknownActor", non_retryable=True)


def hall_people(org: Directory, at: datetime, hall: str) -> list[str]:
    return org.with_role(Role.CLERK, at, hall=hall) + org.with_role(Role.SUPERVISOR, at, hall=hall)


def department_people(org: Directory, at: datetime, department: str) -> list[str]:
    """Who answers for a department: its officers and its heads."""
    return org.with_role(Role.OFFICER, at, department=department) + org.with_role(Role.HEAD, at, department=department)


def is_rank(owner: str) -> bool:
    return owner.startswith(("head:", "office:"))


def owners(org: Directory, at: datetime, department: str) -> list[str]:
    """Who may own a risk of `department`: its risk owners in post, and every rank someone holds."""
    ranks = [f"head:{department}"] if org.holders(f"head:{department}", at) else []
    ranks += sorted({r for o in org.officers for r in o.ranks if org.active(o.id, at) is not None})
    return org.with_role(Role.RISK_OWNER, at, department=department) + ranks


def refuse_risk_owner(org: Directory, at: datetime, owner: str, department: str, *, department_only: bool = False) -> None:
    """A risk must name a responsible department of the directory, and an owner who may own its
    risks: an officer in post holding `risk_owner` in that department, or a rank someone holds
    (`head:<department>`, `office:<rank>`, as data/risk.toml's chains name them)."""
    if not org.is_department(department):
        raise ApplicationError(
            f"the responsible department {department} is not in the organisation directory (version {org.version})",
            type="UnknownActor",
            non_retryable=True,
        )
    if department_only:
        return
    what = f"own a risk of {department}"
    if is_rank(owner):
        if not org.holders(owner, at):
            raise ApplicationError(
                f"the owner {owner}: nobody in the organisation directory (version {org.version}) holds that rank; "
                f"who may {what}: {_who(owners(org, at, department))}",
                type="UnknownActor",
                non_retryable=True,
            )
        return
    officer = org.active(owner, at)
    if officer is None:
        gone = org.officer(owner)
        said = f"left after {gone.left_after}" if gone else f"is not in the organisation directory (version {org.version})"
        raise ApplicationError(
            f"the owner {owner} {said}; who may {what}: {_who(owners(org, at, department))}",
            type="UnknownActor",
            non_retryable=True,
        )
    if Role.RISK_OWNER not in officer.roles or officer.department != department:
        raise ApplicationError(
            f"the owner {owner} may not {what} (an officer of {department} with the role risk_owner, or a rank); "
            f"who may: {_who(owners(org, at, department))}",
            type="Forbidden",
            non_retryable=True,
        )


def risk_people(org: Directory, at: datetime, owner: str, department: str, escalated_to: Iterable[str]) -> list[str]:
    """A risk's owner (an officer, or a rank such as head:<department>), the owner's head, and every
    rank a missed step has reached."""
    people = org.holders(owner, at) if is_rank(owner) else [owner]
    officer = org.officer(owner)
    for dept in dict.fromkeys([department, *([officer.department] if officer and officer.department else [])]):
        people += org.with_role(Role.HEAD, at, department=dept)
    for rank in escalated_to:
        people += org.holders(rank, at)
    return people
