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


def refuse_unless(org: Directory, at: datetime, actor: str, allowed: Iterable[str], what: str) -> None:
    """Refuse unless `actor` is one of `allowed` and, if an officer, has not left."""
    allowed = list(dict.fromkeys(allowed))
    officer = org.officer(actor)
    if officer is not None and org.active(actor, at) is None:
        raise ApplicationError(
            f"{actor} left after {officer.left_after} and can no longer act; {what} may be done by: {_who(allowed)}",
            type="UnknownActor",
            non_retryable=True,
        )
    if actor in allowed:
        return
    if officer is None and actor not in (APPLICANT, SYSTEM_ACTOR) and not org.is_hall(actor):
        raise ApplicationError(
            f"{actor} is not in the organisation directory (version {org.version}); "
            f"{what} may be done by: {_who(allowed)}",
            type="UnknownActor",
            non_retryable=True,
        )
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


def risk_people(org: Directory, at: datetime, owner: str, department: str, escalated_to: Iterable[str]) -> list[str]:
    """A risk's owner (an officer, or a rank such as head:<department>), the owner's head, and every
    rank a missed step has reached."""
    people = org.holders(owner, at) if owner.startswith(("head:", "office:")) else [owner]
    officer = org.officer(owner)
    for dept in dict.fromkeys([department, *([officer.department] if officer and officer.department else [])]):
        people += org.with_role(Role.HEAD, at, department=dept)
    for rank in escalated_to:
        people += org.holders(rank, at)
    return people
