"""case_terms: what a case is accepted under (its matter, the working days, the feedback settings,
the applicant's credit record) as one local activity, one marker event, instead of four lookups
that always run together."""

import structlog
from temporalio import activity

from activities.calendar import CalendarActivities, CalendarError
from activities.catalog import CatalogActivities
from activities.feedback import FeedbackActivities
from activities.store import Store
from contract.terms import CaseTerms, CaseTermsRequest

log = structlog.get_logger()


class TermsActivities:
    def __init__(
        self, catalog: CatalogActivities, calendar: CalendarActivities, feedback: FeedbackActivities, store: Store
    ) -> None:
        self.catalog = catalog
        self.calendar = calendar
        self.feedback = feedback
        self.store = store

    @activity.defn(name="case_terms")
    def case_terms(self, request: CaseTermsRequest) -> CaseTerms:
        # A thread of the activity executor: the credit record is a database read.
        matter = self.catalog.matter(request.matter_code)
        policy = self.feedback.feedback_policy()
        schedule = None
        if matter is not None:
            try:
                days = matter.statutory_days + policy.rating_window_days
                schedule = self.calendar.calendar.working_days_after(request.start, days)
            except CalendarError as err:
                # working_days_after, asked next, reloads the calendar and shows the error in the Web UI.
                log.warning("case_terms_without_schedule", error=type(err).__name__)
        broken = None if request.applicant_id is None else self.store.has_broken_commitment(request.applicant_id)
        return CaseTerms(matter=matter, schedule=schedule, feedback=policy, broken_commitment=broken)
