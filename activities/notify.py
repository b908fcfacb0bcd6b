"""Notification channels: how a notice leaves hallflow (SMS, hall screen, message centre...).

The store decides whether a notice still has to go (outbox); a channel only delivers it.
"""

from typing import Protocol

import structlog

from contract.records import Notice


class Channel(Protocol):
    name: str

    def send(self, notice: Notice) -> None:
        """Deliver the notice or raise; a raise leaves it unsent, to be sent on the activity's retry."""
        ...


PRIVATE_ROLES = {"applicant", "submitter"}


class LogChannel:
    """Default channel: writes a log line instead of delivering.

    The body is never logged: it is meant for a person and may name them; logs are not.
    """

    name = "log"

    def send(self, notice: Notice) -> None:
        structlog.get_logger().info(
            "notice_sent",
            kind=notice.kind,
            # Officers and departments by id; a person outside (applicant, rater, submitter) only
            # by role: the log must not tie them to a rating or a suggestion.
            recipient=notice.recipient if notice.recipient.split(":")[0] not in PRIVATE_ROLES else notice.recipient.split(":")[0],
            subject_id=notice.subject_id,
            key=notice.key,
        )
