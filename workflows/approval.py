"""Rules of the approval route, as plain deterministic logic (no waits, no I/O).

- 并联审批: the lead department asks every consulted department at once; each has its own
  deadline; a matter may count silence as consent (逾期视为同意).
- 集体决策: quorum of the members who should attend; the tier-1 reviewer does not vote (recusal);
  rule "majority" (a majority of the members who should attend) or "chair_decides" (the chair's
  position decides once every attending member has spoken).
"""

import math
from dataclasses import dataclass, field

from contract.approval import CastVote, Consultation, OpinionState
from contract.matter import Panel


def consultations_settled(consultations: list[Consultation]) -> bool:
    return all(c.state != OpinionState.PENDING for c in consultations)


def disagreements(consultations: list[Consultation]) -> list[Consultation]:
    return [c for c in consultations if c.state == OpinionState.DISAGREED]


@dataclass
class Tally:
    """A panel vote in progress for one case."""

    panel: Panel
    recused: str | None  # the tier-1 reviewer of this case, if a member
    votes: dict[str, CastVote] = field(default_factory=dict)
    closed: bool = False  # the rule has decided or the deadline passed; no more votes

    @property
    def electors(self) -> list[str]:
        return [m for m in self.panel.members if m != self.recused]

    @property
    def quorum(self) -> int:
        # Rounded first: 0.7 * 10 is 7.000000000000001 in floating point, and 7 members are a quorum.
        return math.ceil(round(self.panel.quorum * len(self.electors), 9))

    @property
    def has_quorum(self) -> bool:
        return len(self.votes) >= self.quorum

    def count(self, choice: str) -> int:
        return sum(1 for v in self.votes.values() if v.choice == choice)

    def outcome(self, closing: bool = False) -> str | None:
        """approve / reject / defer once the rule decides; None while it is still open.

        `closing`: the voting deadline has passed, decide on the votes cast if quorate."""
        everyone_spoke = len(self.votes) == len(self.electors)
        if self.panel.rule == "chair_decides":
            chair = self.votes.get(self.panel.chair)
            if chair and self.has_quorum and (everyone_spoke or closing):
                return chair.choice
            return None
        if not self.has_quorum:
            return None
        majority = len(self.electors) // 2 + 1
        if self.count("approve") >= majority:
            return "approve"
        if self.count("reject") >= majority:
            return "reject"
        if self.count("defer") >= majority:
            return "defer"
        if everyone_spoke or (closing and self.has_quorum):
            # No majority for approval among those who should attend: not approved;
            # more deferrals than rejections means the panel puts it off (缓议).
            return "defer" if self.count("defer") > self.count("reject") else "reject"
        return None

    def waiting_on(self) -> list[str]:
        return [m for m in self.electors if m not in self.votes]
