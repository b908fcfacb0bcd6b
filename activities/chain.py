"""The audit trail's hash chain: each subject's rows linked by hash, and their verification.

Each audit row of a subject (subject_type, subject_id) carries `seq` (1, 2, 3 … per subject),
`prev_hash` (the hash of the subject's row before it; GENESIS for the first), `hash_alg` and
`hash`: SHA-256 or SM3 over the canonical JSON of every stored field but the row id and the hash
itself. Changing a row, deleting one or slipping one in breaks the chain where it happened, and
`verify` finds that place. It does not stop someone who rewrites the chain from there on:
anchoring the heads elsewhere does (docs/audit.md).
"""

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from itertools import groupby
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Connection, Engine, and_, func, text, update
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from activities.stored import AuditRow, as_utc

GENESIS = "0" * 64  # the prev_hash of a subject's first row
# Every stored field but the row id and the hash: what a row's hash covers.
HASHED = (
    "key", "subject_type", "subject_id", "seq", "action", "actor", "reason", "at", "workflow_id", "run_id",
    "details", "signed_with", "recorded_at", "prev_hash", "hash_alg",
)  # fmt: skip
# A conflict on a subject's next seq is rare (PostgreSQL writers queue on the subject's lock, see
# append); when the attempts run out, the activity fails and Temporal retries it.
ATTEMPTS = 10


def _sm3(data: bytes) -> str:
    # cryptography's wheels bring their own OpenSSL with SM3; the system's may have it disabled.
    from cryptography.hazmat.primitives import hashes

    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize().hex()


ALGORITHMS = {"sha256": lambda data: hashlib.sha256(data).hexdigest(), "sm3": _sm3}


def configured_algorithm() -> str:
    from settings import get_settings

    return get_settings().audit_hash


def _instant(value: datetime) -> str:
    # Stored times come back in UTC with microseconds (SQLite naive, PostgreSQL in the session's
    # zone): hash the instant as it will be read, not as it was written.
    return as_utc(value).isoformat(timespec="microseconds")


def compute_hash(fields: Mapping[str, Any]) -> str:
    """The hash of a row given its HASHED fields, with the algorithm it names."""
    canonical = {name: fields[name] for name in HASHED}
    canonical["at"] = _instant(fields["at"])
    canonical["recorded_at"] = _instant(fields["recorded_at"])
    data = json.dumps(canonical, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return ALGORITHMS[fields["hash_alg"]](data.encode("utf-8"))


def _fields(row: Any) -> dict[str, Any]:
    return {name: getattr(row, name) for name in HASHED}


def append(session: Session, row: AuditRow, algorithm: str) -> None:
    """Add `row` as its subject's next link. Call inside `transaction(..., attempts=ATTEMPTS)`."""
    extend(session, [row], algorithm)


def extend(session: Session, rows: list[AuditRow], algorithm: str) -> None:
    """Add `rows`, in order, as the next links of their subjects' chains: each subject's head is
    read once. Call inside `transaction(..., attempts=ATTEMPTS)`.

    The unique index on (subject_type, subject_id, seq) is what keeps one chain: of two writers
    that read the same head, the second insert is refused and its transaction runs again on the
    new head, whatever code wrote it. The lock only saves that work: on PostgreSQL a subject's
    writers (worker replicas) queue for it instead of failing and redoing their transactions, up
    to 8 times in a row with 8 writers without it. SQLite lets one writer in at a time already
    (BEGIN IMMEDIATE).
    """
    heads: dict[tuple[str, str], tuple[int, str]] = {}
    for row in rows:
        subject = (row.subject_type, row.subject_id)
        if subject not in heads:
            heads[subject] = _head(session, *subject)
        seq, prev = heads[subject]
        row.seq, row.prev_hash, row.hash_alg = seq + 1, prev, algorithm
        row.hash = compute_hash(_fields(row))
        session.add(row)
        heads[subject] = (row.seq, row.hash)


def _head(session: Session, subject_type: str, subject_id: str) -> tuple[int, str]:
    """(seq, hash) of the subject's last row, (0, GENESIS) before its first; on PostgreSQL the
    subject's lock is taken first and held until the transaction ends."""
    if session.get_bind().dialect.name == "postgresql":
        # A hash collision only makes two subjects queue together.
        subject = f"audit\x1f{subject_type}\x1f{subject_id}"
        lock = text("SELECT pg_advisory_xact_lock(hashtextextended(:subject, 0))")
        session.connection().execute(lock, {"subject": subject})
    head = session.exec(
        select(AuditRow.seq, AuditRow.hash)
        .where(AuditRow.subject_type == subject_type, AuditRow.subject_id == subject_id)
        .where(col(AuditRow.seq).is_not(None))
        .order_by(col(AuditRow.seq).desc())
        .limit(1)
    ).first()
    return (head[0], head[1]) if head else (0, GENESIS)


def chain_existing_rows(conn: Connection, algorithm: str) -> int:
    """Chain the rows written before the chain existed, per subject in the order they happened.

    Run once, in the transaction that adds the chain's columns (activities/db.py), so no writer
    appends before them and no row written later is ever chained by it.
    """
    table = AuditRow.__table__
    rows = conn.execute(
        core_select(table).order_by(table.c.subject_type, table.c.subject_id, table.c.at, table.c.id)
    ).all()
    for _, subject_rows in groupby(rows, key=lambda r: (r.subject_type, r.subject_id)):
        prev = GENESIS
        for seq, row in enumerate(subject_rows, start=1):
            fields = {**_fields(row), "seq": seq, "prev_hash": prev, "hash_alg": algorithm}
            prev = compute_hash(fields)
            conn.execute(
                update(table).where(table.c.id == row.id).values(seq=seq, prev_hash=fields["prev_hash"],
                                                                 hash_alg=algorithm, hash=prev)
            )
    return len(rows)


# --- verification ------------------------------------------------------------------------------


class Head(BaseModel):
    """A subject's last link: write these down elsewhere and a rewritten chain shows."""

    subject_type: str
    subject_id: str
    seq: int
    hash: str
    hash_alg: str


class Break(BaseModel):
    """The first place a subject's chain does not hold."""

    subject_type: str
    subject_id: str
    seq: int | None  # where it broke (None: a row outside the chain, or no rows at all)
    key: str | None  # the row found there, if any
    problem: str  # changed | deleted | inserted | renumbered | unchained | unknown_algorithm | truncated | no_rows
    detail: str


class Verdict(BaseModel):
    intact: bool
    subjects: int
    rows: int
    algorithms: list[str]
    broken: list[Break]
    heads: list[Head]  # of the intact subjects only: the ones worth anchoring


def _check(subject: tuple[str, str], rows: Iterable[Any], anchor: Head | None) -> Break | Head:
    """Walk one subject's rows in seq order; the first break, or the verified head."""

    def broken(seq: int | None, row: Any, problem: str, detail: str) -> Break:
        return Break(subject_type=subject[0], subject_id=subject[1], seq=seq, key=row.key if row else None,
                     problem=problem, detail=detail)

    prev, last = GENESIS, None
    for row in rows:
        expected = last.seq + 1 if last else 1
        if row.seq is None:
            return broken(None, row, "unchained",
                          f"row id {row.id} ({row.action}, {row.key}) has no place in the chain: added outside "
                          "hallflow's chained writes (by hand, or by a worker from before the chain)")
        if row.hash_alg not in ALGORITHMS:
            return broken(row.seq, row, "unknown_algorithm", f"names the hash algorithm {row.hash_alg!r}")
        if row.seq < expected:
            return broken(row.seq, row, "inserted", f"a second row with seq {row.seq}: one was inserted")
        fields = _fields(row)
        if compute_hash(fields) != row.hash:
            moved = next((s for s in range(max(1, row.seq - 3), row.seq + 4)
                          if s != row.seq and compute_hash({**fields, "seq": s}) == row.hash), None)
            if moved is not None:
                what = "deleted before it" if moved > row.seq else "inserted before it"
                return broken(row.seq, row, "renumbered",
                              f"this row was seq {moved} and was renumbered: {abs(moved - row.seq)} row(s) "
                              f"{what}, at seq {min(moved, row.seq)}")
            return broken(row.seq, row, "changed",
                          f"its contents ({row.action}, {row.key}) no longer match its hash: changed after it "
                          "was written, or forged")
        if row.seq > expected:
            gap = f"seq {expected}" if row.seq == expected + 1 else f"seq {expected} to {row.seq - 1}"
            return broken(expected, None, "deleted", f"{gap} missing: deleted (next is seq {row.seq}, {row.key})")
        if row.prev_hash != prev:
            before = f"seq {row.seq - 1}" if last else "the start of the chain"
            return broken(row.seq, row, "inserted",
                          f"does not follow {before} (its prev_hash is not that row's hash): a row was inserted "
                          f"or replaced here, or {before} was rewritten with a new hash")
        if anchor and anchor.seq == row.seq and anchor.hash != row.hash:
            return broken(row.seq, row, "changed", f"seq {row.seq} is not the row anchored as this head: "
                          "the chain was rewritten from here on")
        prev, last = row.hash, row
    if last is None and anchor:
        return broken(1, None, "truncated", f"anchored up to seq {anchor.seq}, no row left: all were deleted")
    if last is None:
        return broken(None, None, "no_rows", "no audit rows for this subject (never recorded, or all deleted)")
    if anchor and anchor.seq > last.seq:
        return broken(last.seq + 1, None, "truncated",
                      f"anchored up to seq {anchor.seq}, the chain ends at seq {last.seq}: its last rows were deleted")
    return Head(subject_type=subject[0], subject_id=subject[1], seq=last.seq, hash=last.hash, hash_alg=last.hash_alg)


def _subjects(
    engine: Engine, subject_type: str | None, subject_id: str | None
) -> Iterator[tuple[tuple[str, str], list[AuditRow]]]:
    query = select(AuditRow)
    if subject_type is not None:
        query = query.where(AuditRow.subject_type == subject_type)
    if subject_id is not None:
        query = query.where(AuditRow.subject_id == subject_id)
    # Unchained rows last, so a chain is walked whole before what stands outside it.
    query = query.order_by(col(AuditRow.subject_type), col(AuditRow.subject_id), col(AuditRow.seq).is_(None),
                           col(AuditRow.seq), col(AuditRow.id))
    with Session(engine) as session:
        rows = session.exec(query.execution_options(yield_per=1000))
        for subject, group in groupby(rows, key=lambda r: (r.subject_type, r.subject_id)):
            yield subject, list(group)


def verify(
    engine: Engine, subject_type: str | None = None, subject_id: str | None = None, anchors: Iterable[Head] = ()
) -> Verdict:
    """Recompute the chains in scope (one subject, one subject type, or all); with `anchors`
    (heads written down earlier), also check that each anchored row is still there, unchanged."""
    pending: dict[tuple[str, str], Head | None] = {
        (a.subject_type, a.subject_id): a
        for a in anchors
        if subject_type in (None, a.subject_type) and subject_id in (None, a.subject_id)
    }
    if subject_type is not None and subject_id is not None:
        pending.setdefault((subject_type, subject_id), None)  # asked for by name: no rows is a finding
    broken: list[Break] = []
    verified: list[Head] = []
    count, algorithms = 0, set()
    for subject, rows in _subjects(engine, subject_type, subject_id):
        count += len(rows)
        algorithms.update(r.hash_alg for r in rows if r.hash_alg)
        found = _check(subject, rows, pending.pop(subject, None))
        if isinstance(found, Head):
            verified.append(found)
        else:
            broken.append(found)
    for subject, anchor in pending.items():  # anchored or named, and no row left
        broken.append(_check(subject, [], anchor))  # type: ignore[arg-type]
    return Verdict(intact=not broken, subjects=len(verified) + len(broken), rows=count,
                   algorithms=sorted(algorithms), broken=broken, heads=verified)


def heads(engine: Engine, subject_type: str | None = None, subject_id: str | None = None) -> list[Head]:
    """Each subject's last link as stored (not verified: `verify` gives verified heads)."""
    last = (
        select(AuditRow.subject_type, AuditRow.subject_id, func.max(AuditRow.seq).label("seq"))
        .group_by(AuditRow.subject_type, AuditRow.subject_id)
        .subquery()
    )
    query = select(AuditRow).join(
        last,
        and_(AuditRow.subject_type == last.c.subject_type, AuditRow.subject_id == last.c.subject_id,
             AuditRow.seq == last.c.seq),
    )
    if subject_type is not None:
        query = query.where(AuditRow.subject_type == subject_type)
    if subject_id is not None:
        query = query.where(AuditRow.subject_id == subject_id)
    with Session(engine) as session:
        rows = session.exec(query.order_by(col(AuditRow.subject_type), col(AuditRow.subject_id))).all()
        return [Head.model_validate(row, from_attributes=True) for row in rows]
