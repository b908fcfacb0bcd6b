"""Persistence activities: cases, applicants, audit trail, notices, broken commitments.

Every write is idempotent on the record's `key` (made in the workflow, stable on replay): an
activity retry, or a second attempt running at the same time, finds the first write and adds
nothing. Audit rows are appended to their subject's hash chain (activities/chain.py).
The activities are sync (`def`): the worker runs them in its thread pool.
Logs carry case numbers, codes and keys, never personal data. The applicant's details are
sealed before they reach the database and opened only for `applicant` and `disclose_applicant`
(security/sealing.py).
"""

from datetime import datetime, timezone
from typing import Any
from uuid import uuid4

import structlog
from sqlalchemy import Engine, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import chain
from activities.db import (
    ApplicantRow,
    AuditRow,
    BrokenCommitmentRow,
    CaseRow,
    OutboxRow,
    RatingRow,
    database_activity,
    transaction,
)
from activities.notify import Channel, LogChannel
from contract.case import Applicant, CaseRegistration, CaseStage, case_workflow_id
from contract.rating import Rating, RatingRecord
from contract.records import AuditEntry, BrokenCommitment, CaseEvent, CaseSnapshot, Notice, Step
from security import data_keys
from security.aead import Undecryptable
from security.sealing import Sealer
from settings import get_settings

log = structlog.get_logger()

SEALED = ("name", "id_number", "phone")  # the applicant's details, each in its `<field>_sealed` column
SEALED_IN = "applicants"  # part of each value's AAD: stays, should the table ever be renamed


def _aware(snapshot: CaseSnapshot) -> None:
    naive = [name for name, value in snapshot if isinstance(value, datetime) and value.tzinfo is None]
    if naive:
        # Retrying cannot fix the input; fail the activity at once, naming the fields.
        raise ApplicationError(
            f"case snapshot has naive datetimes: {', '.join(naive)}", type="NaiveDatetime", non_retryable=True
        )


def _bring_case_row(session: Session, snapshot: CaseSnapshot, workflow_id: str, now: datetime) -> None:
    """The case row as the snapshot says, created with the case's first row."""
    state = snapshot.model_dump(exclude={"case_no"})
    case = session.get(CaseRow, snapshot.case_no)
    if case is None:
        session.add(CaseRow(case_no=snapshot.case_no, workflow_id=workflow_id, **state, updated_at=now))
    elif _assign(case, state):
        case.updated_at = now


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _assign(row: SQLModel, values: dict[str, Any]) -> bool:
    """Set the values that differ; True if any did (so a retry does not touch updated_at)."""
    changed = False
    for name, value in values.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    return changed


def _key_exists(session: Session, model: type[AuditRow | OutboxRow | BrokenCommitmentRow | RatingRow], key: str) -> bool:
    return session.exec(select(model.id).where(model.key == key)).first() is not None


def _existing_keys(session: Session, model: type[AuditRow | OutboxRow], keys: list[str]) -> set[str]:
    """Which of `keys` are stored already: one query for a step's rows."""
    if not keys:
        return set()
    return set(session.exec(select(model.key).where(col(model.key).in_(keys))).all())


def _inserted(session: Session, row: SQLModel) -> bool:
    """Insert `row` in a savepoint; False when a unique constraint refused it (the transaction
    goes on)."""
    try:
        with session.begin_nested():
            session.add(row)
        return True
    except IntegrityError:
        return False


class Store:
    """The application database as activities. Register the bound methods on the worker."""

    def __init__(
        self,
        engine: Engine,
        channel: Channel | None = None,
        audit_hash: str | None = None,
        keys: data_keys.DataKeys | None = None,
    ) -> None:
        self.engine = engine
        self.channel: Channel = channel or LogChannel()
        self.audit_hash = audit_hash or chain.configured_algorithm()  # HALLFLOW_AUDIT_HASH
        self.sealer = Sealer(keys or data_keys.load(get_settings()))  # HALLFLOW_DATA_KEYS(_FILE)

    # --- activities -------------------------------------------------------------------------

    @activity.defn(name="register_case")
    @database_activity
    def register_case(self, reg: CaseRegistration) -> None:
        """Store the applicant's personal details and the case row (stage `received`).

        The case number belongs to the first run that registers it: the row is inserted first, so
        the primary key decides between two runs writing at once. Another run under the same
        number fails at once with CaseNumberTaken (non-retryable); a retry of the same run finds
        its own row.
        """
        now = _now()
        facts = {
            "matter_code": reg.matter_code,
            "hall": reg.hall,
            "clerk": reg.clerk,
            "applicant_id": reg.applicant.applicant_id,
            "workflow_id": reg.workflow_id,
            "received_at": reg.received_at,
        }

        def write(session: Session) -> None:
            person = session.get(ApplicantRow, reg.applicant.applicant_id)
            if person is None:
                person = ApplicantRow(applicant_id=reg.applicant.applicant_id, kind=reg.applicant.kind, updated_at=now)
                session.add(person)
            if self._fill(person, reg.applicant):
                person.updated_at = now
            session.flush()  # the applicant first: its own conflict is transaction()'s to retry
            row = CaseRow(case_no=reg.case_no, **facts, run_id=reg.run_id, stage=CaseStage.RECEIVED.value, updated_at=now)
            if _inserted(session, row):
                return
            self._claim_case(session, reg)
            # An event may have created the row first: fill in the registration, keep its stage.
            case = session.get(CaseRow, reg.case_no, populate_existing=True)
            if case is not None and _assign(case, facts):
                case.updated_at = now

        transaction(self.engine, write)
        log.info("case_registered", case_no=reg.case_no, matter_code=reg.matter_code, run_id=reg.run_id)

    @staticmethod
    def _claim_case(session: Session, reg: CaseRegistration) -> None:
        """The row exists: take it for this run if no run holds it yet (an event wrote it first,
        or an older version did), else refuse. One conditional UPDATE, so two runs cannot both
        see the row free."""
        if reg.run_id is None:  # a run from before run ids: nothing to compare
            return
        claimed = session.exec(
            update(CaseRow)
            .where(CaseRow.case_no == reg.case_no)
            .where(or_(CaseRow.run_id.is_(None), CaseRow.run_id == reg.run_id))  # type: ignore[union-attr]
            .values(run_id=reg.run_id)
        )
        if claimed.rowcount == 0:
            log.warning("case_number_taken", case_no=reg.case_no, workflow_id=reg.workflow_id, run_id=reg.run_id)
            raise ApplicationError(
                f"case number {reg.case_no} is already registered by another workflow run; "
                "a case number names one case: start the case under a new number",
                type="CaseNumberTaken",
                non_retryable=True,
            )

    @activity.defn(name="record_case_event")
    @database_activity
    def record_case_event(self, event: CaseEvent) -> bool:
        """Append the audit entry and bring the case row to the snapshot, in one transaction.

        False when the entry was already recorded (a retry): the case row is then left alone.
        """
        audit, snapshot = event.audit, event.case
        _aware(snapshot)
        now = _now()

        def write(session: Session) -> bool:
            if _key_exists(session, AuditRow, audit.key):
                return False
            chain.append(session, self._audit_row(audit, now), self.audit_hash)
            _bring_case_row(session, snapshot, audit.workflow_id, now)
            return True

        if not transaction(self.engine, write, attempts=chain.ATTEMPTS):
            log.debug("case_event_already_recorded", case_no=snapshot.case_no, key=audit.key)
            return False
        log.info(
            "case_event_recorded", case_no=snapshot.case_no, action=audit.action, stage=snapshot.stage, key=audit.key
        )
        return True

    @activity.defn(name="record_audit")
    @database_activity
    def record_audit(self, entry: AuditEntry) -> bool:
        """Append an audit entry; False if its key is already recorded."""
        written = self._append_audit(entry)
        if written:
            log.info(
                "audit_recorded",
                subject_type=entry.subject_type,
                subject_id=entry.subject_id,
                action=entry.action,
                key=entry.key,
            )
        return written

    @activity.defn(name="notify")
    @database_activity
    def notify(self, notice: Notice) -> bool:
        """Put the notice in the outbox and hand it to the channel at most once. True if sent now.

        The claim is committed before the channel is called, so a retry never sends a second
        time, even when the database went away between the send and its record. Such a notice
        (claimed, never marked sent) is "in doubt": logged as a warning with its key, for an
        operator to check with the channel, which also receives the key to deduplicate on. A
        channel that raises releases the claim: nothing went out, the retry sends it.
        """
        row = OutboxRow(**notice.model_dump(), channel=self.channel.name)
        self._insert_once(row)  # committed first: an unsent notice stays visible as pending
        return bool(self._dispatch([notice]))

    @activity.defn(name="record_step")
    @database_activity
    def record_step(self, step: Step) -> int:
        """Write what one moment of a workflow leaves behind (contract.records.Step): the
        registration, rating and broken commitment each by their own keyed write, then every
        audit row, the case row and the notices' outbox rows in one transaction; then hand each
        notice to its channel at most once (as `notify`). The number of audit rows written now."""
        if step.registration is not None:
            self.register_case(step.registration)
        if step.rating is not None:
            self.record_rating(step.rating)
        if step.broken_commitment is not None:
            self.record_broken_commitment(step.broken_commitment)
        for event in step.case_events:
            _aware(event.case)
        now = _now()

        def write(session: Session) -> int:
            rows = [(e.audit, e.case) for e in step.case_events] + [(e, None) for e in step.entries]
            done = _existing_keys(session, AuditRow, [audit.key for audit, _ in rows])
            # A retry: the rows already in, and the case rows they came with, are left alone.
            new = [(audit, snapshot) for audit, snapshot in rows if audit.key not in done]
            chain.extend(session, [self._audit_row(audit, now) for audit, _ in new], self.audit_hash)
            cases = [(audit, snapshot) for audit, snapshot in new if snapshot is not None]
            if cases:  # the case row as the step left it: its last snapshot
                audit, snapshot = cases[-1]
                _bring_case_row(session, snapshot, audit.workflow_id, now)
            queued = _existing_keys(session, OutboxRow, [notice.key for notice in step.notices])
            for notice in step.notices:
                if notice.key not in queued:
                    session.add(OutboxRow(**notice.model_dump(), channel=self.channel.name))
            return len(new)

        written = transaction(self.engine, write, attempts=chain.ATTEMPTS)
        self._dispatch(step.notices)
        subject = (step.case_events[0].audit if step.case_events else step.entries[0]) if (step.case_events or step.entries) else None
        log.info(
            "step_recorded",
            subject_type=subject.subject_type if subject else None,
            subject_id=subject.subject_id if subject else None,
            actions=[e.audit.action for e in step.case_events] + [e.action for e in step.entries],
            notices=[n.kind for n in step.notices],
            written=written,
        )
        return written

    def _dispatch(self, notices: list[Notice]) -> list[Notice]:
        """Hand outbox rows' notices to the channel, each at most once; the ones sent now.

        Claiming locks the rows (PostgreSQL: the rows; SQLite: the database) until the commit, so
        of two concurrent attempts only one claims a notice. The claims and the sends are each
        recorded in one commit for all of them."""
        if not notices:
            return []
        now = _now()
        with Session(self.engine) as session:
            claimed = [
                notice
                for notice in notices
                if session.exec(
                    update(OutboxRow)
                    .where(OutboxRow.key == notice.key, OutboxRow.claimed_at.is_(None))  # type: ignore[union-attr]
                    .values(claimed_at=now, channel=self.channel.name)
                ).rowcount
            ]
            session.commit()
        if len(claimed) < len(notices):
            self._warn_in_doubt([n for n in notices if n not in claimed])
        sent: list[Notice] = []
        try:
            for notice in claimed:
                self.channel.send(notice)
                sent.append(notice)
        finally:
            with Session(self.engine) as session:
                if sent:
                    done = [n.key for n in sent]
                    session.exec(update(OutboxRow).where(col(OutboxRow.key).in_(done)).values(sent_at=_now()))
                unsent = [n.key for n in claimed if n not in sent]
                if unsent:  # the channel raised: nothing of these went out, the retry sends them
                    session.exec(update(OutboxRow).where(col(OutboxRow.key).in_(unsent)).values(claimed_at=None))
                session.commit()
        return sent

    def _warn_in_doubt(self, notices: list[Notice]) -> None:
        """Claimed before and never marked sent: the channel may or may not have it (`notify`)."""
        with Session(self.engine) as session:
            keys = [n.key for n in notices]
            sent = set(session.exec(select(OutboxRow.key).where(col(OutboxRow.key).in_(keys), col(OutboxRow.sent_at).is_not(None))).all())
        for notice in notices:
            if notice.key not in sent:
                log.warning("notice_in_doubt", subject_id=notice.subject_id, key=notice.key, kind=notice.kind)

    @activity.defn(name="has_broken_commitment")
    @database_activity
    def has_broken_commitment(self, applicant_id: str) -> bool:
        """Whether a broken 告知承诺 is on record for the applicant (then no deferral): under this
        applicant id, or under any other with the same ID number (found by its HMAC)."""
        same_person = select(ApplicantRow.id_number_hmac).where(ApplicantRow.applicant_id == applicant_id)
        with Session(self.engine) as session:
            found = session.exec(
                select(BrokenCommitmentRow.id).where(
                    or_(
                        BrokenCommitmentRow.applicant_id == applicant_id,
                        col(BrokenCommitmentRow.id_number_hmac).in_(same_person.scalar_subquery()),
                    )
                )
            ).first()
        return found is not None

    @activity.defn(name="record_broken_commitment")
    @database_activity
    def record_broken_commitment(self, record: BrokenCommitment) -> bool:
        """Record a broken commitment, with the applicant's ID-number HMAC; False if its key is
        already recorded."""

        def write(session: Session) -> bool:
            if _key_exists(session, BrokenCommitmentRow, record.key):
                return False
            person = session.get(ApplicantRow, record.applicant_id)
            found_by = person.id_number_hmac if person else None
            session.add(BrokenCommitmentRow(**record.model_dump(), id_number_hmac=found_by))
            return True

        written = transaction(self.engine, write)
        if written:
            log.info(
                "broken_commitment_recorded", case_no=record.case_no, applicant_id=record.applicant_id, key=record.key
            )
        return written

    @activity.defn(name="record_rating")
    @database_activity
    def record_rating(self, record: RatingRecord) -> bool:
        """Store a case's rating; False if already stored (by key, or the case already rated)."""
        row = RatingRow(key=record.key, bad=record.rating.bad, **record.rating.model_dump())
        written = self._insert_once(row)
        if written:
            log.info("rating_recorded", case_no=record.rating.case_no, score=record.rating.score, key=record.key)
        return written

    # --- reads (starter.py, tests) ----------------------------------------------------------

    def ratings(self, department: str | None = None) -> list[Rating]:
        with Session(self.engine) as session:
            query = select(RatingRow).order_by(RatingRow.at)  # type: ignore[arg-type]
            if department:
                query = query.where(RatingRow.department == department)
            return [Rating.model_validate(r, from_attributes=True) for r in session.exec(query)]

    def audit_trail(self, subject_type: str, subject_id: str) -> list[AuditEntry]:
        """The subject's audit entries, oldest first."""
        with Session(self.engine) as session:
            rows = session.exec(
                select(AuditRow)
                .where(AuditRow.subject_type == subject_type, AuditRow.subject_id == subject_id)
                .order_by(AuditRow.at, AuditRow.id)  # type: ignore[arg-type]
            ).all()
            internal = {"id", "recorded_at", "seq", "prev_hash", "hash_alg", "hash"}
            return [AuditEntry.model_validate(row.model_dump(exclude=internal)) for row in rows]

    def notices(self, subject_id: str | None = None, recipient: str | None = None) -> list[Notice]:
        """Notices in the outbox (sent or not), oldest first, filtered by subject and/or recipient."""
        query = select(OutboxRow)
        if subject_id is not None:
            query = query.where(OutboxRow.subject_id == subject_id)
        if recipient is not None:
            query = query.where(OutboxRow.recipient == recipient)
        with Session(self.engine) as session:
            rows = session.exec(query.order_by(OutboxRow.at, OutboxRow.id)).all()  # type: ignore[arg-type]
            return [Notice.model_validate(row.model_dump(exclude={"id", "sent_at", "channel"})) for row in rows]

    def case_row(self, case_no: str) -> dict[str, Any] | None:
        with Session(self.engine) as session:
            row = session.get(CaseRow, case_no)
            return None if row is None else row.model_dump()

    def applicant(self, applicant_id: str) -> dict[str, Any] | None:
        """Personal details, opened: for the application itself, never for logs or search
        attributes. Undecryptable when a value's key is gone or the value was changed or moved."""
        with Session(self.engine) as session:
            row = session.get(ApplicantRow, applicant_id)
            if row is None:
                return None
            details = {field: self._open(row, field) for field in SEALED}
            return {"applicant_id": row.applicant_id, "kind": row.kind, **details, "updated_at": row.updated_at}

    def disclose_applicant(self, case_no: str, asker: str, reason: str = "") -> dict[str, Any] | None:
        """The case's applicant's details for `asker`, once who asked and why is on the case's
        audit trail (`applicant_viewed`, chained like every other row). None, and nothing
        recorded, when no applicant is on record for the case."""
        with Session(self.engine) as session:
            case = session.get(CaseRow, case_no)
        details = self.applicant(case.applicant_id) if case and case.applicant_id else None
        if case is None or details is None:
            return None
        shown = [field for field in SEALED if details[field] is not None]
        self._append_audit(
            AuditEntry(
                key=f"{case_no}/applicant_viewed/{uuid4().hex}",  # every look is its own row
                subject_type="case",
                subject_id=case_no,
                action="applicant_viewed",
                actor=asker,
                reason=reason,
                at=_now(),
                workflow_id=case.workflow_id or case_workflow_id(case_no),
                run_id=case.run_id or "",
                details={"applicant_id": case.applicant_id, "fields": shown},
            )
        )
        log.info("applicant_disclosed", case_no=case_no, actor=asker, fields=shown)
        return details

    # --- helpers ----------------------------------------------------------------------------

    def _fill(self, person: ApplicantRow, applicant: Applicant) -> bool:
        """Seal the details that differ from the row's; True if any did. A detail left out of
        this application does not erase one known from an earlier case, and an unchanged one is
        not sealed again (a fresh nonce would make a retry look like a change)."""
        changed = _assign(person, {"kind": applicant.kind})
        for field in SEALED:
            value = getattr(applicant, field)
            if value is None or self._holds(person, field, value):
                continue
            setattr(person, f"{field}_sealed", self.sealer.seal(value, SEALED_IN, field, person.applicant_id))
            if field == "id_number":
                person.id_number_hmac = self.sealer.lookup(value)
            changed = True
        return changed

    def _holds(self, person: ApplicantRow, field: str, value: str) -> bool:
        try:
            return self._open(person, field) == value
        except Undecryptable:
            # Its key is gone or the value was changed: the application at hand replaces it.
            log.warning("applicant_detail_undecryptable", applicant_id=person.applicant_id, field=field)
            return False

    def _open(self, person: ApplicantRow, field: str) -> str | None:
        sealed = getattr(person, f"{field}_sealed")
        return None if sealed is None else self.sealer.open(sealed, SEALED_IN, field, person.applicant_id)

    def _append_audit(self, entry: AuditEntry) -> bool:
        """Append an audit entry to its subject's chain; False if its key is already recorded."""
        now = _now()

        def write(session: Session) -> bool:
            if _key_exists(session, AuditRow, entry.key):
                return False
            chain.append(session, self._audit_row(entry, now), self.audit_hash)
            return True

        return transaction(self.engine, write, attempts=chain.ATTEMPTS)

    @staticmethod
    def _audit_row(entry: AuditEntry, recorded_at: datetime) -> AuditRow:
        # mode="json" so details hold only JSON values (a date becomes its ISO text).
        details = entry.model_dump(mode="json")["details"]
        return AuditRow(**entry.model_dump(exclude={"details"}), details=details, recorded_at=recorded_at)

    def _insert_once(self, row: OutboxRow | RatingRow) -> bool:
        """Insert the row unless one with its key exists; False when it already did."""

        def write(session: Session) -> bool:
            if _key_exists(session, type(row), row.key):
                return False
            # A fresh copy per attempt: a row from a rolled-back session cannot be added again.
            session.add(type(row).model_validate(row.model_dump()))
            return True

        return transaction(self.engine, write)
