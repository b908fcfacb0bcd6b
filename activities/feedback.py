"""The locality's feedback settings as an activity, so the values a case used are in its history."""

from temporalio import activity

from contract.rating import FeedbackPolicy


class FeedbackActivities:
    def __init__(self, policy: FeedbackPolicy) -> None:
        self.policy = policy

    @activity.defn(name="feedback_policy")
    def feedback_policy(self) -> FeedbackPolicy:
        return self.policy
