"""Retention: settled messages and resolved failed jobs leave the database in short
batches, each written to an archive first if asked (engine.store.retention_archive), while
each campaign keeps its totals (campaign_pruned_counts, written in the batch's
transaction).

A message is settled, and its age counted from, (the column in brackets):

- sent, with a final delivery status: delivered, undelivered or expired (delivery_at: when
  the final report arrived, or when it expired);
- sent before delivery status existed (delivery NULL, from before migration 0004; nothing
  reports on those) (sent_at);
- cancelled or suppressed (updated_at: the cancel, or the claim or the provider's answer
  that found the number opted out);
- dead, once no failed job of it waits for review: its record was forgotten (updated_at:
  forgetting sets it), or retried and the message died again and that was forgotten.

Never pruned: queued, sending, failed (a retry is due), sent and awaiting a report, and any
message with a failed job not retried (retried_at NULL) — a dead letter waiting for review,
whatever its message's status. A failed job goes with its message (its every record is
retried or gone by then); a retried one whose message is gone already (message_id NULL)
goes when its retried_at is older than the cutoff. Replies (inbound_messages) point to
campaigns, not messages, and stay.

What can no longer be done for a pruned message: it has no row, so it is not in its
campaign's message list, "send again to the undelivered" does not reach it, and a report
that comes for it later is kept unmatched (and pruned after a week) instead of changing it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    bindparam,
    delete,
    func,
    or_,
    select,
    text,
    tuple_,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from engine.store.db import Database
from engine.store.lock_sharing import rest_after_step
from engine.store.models import (
    ENDED_CONDITION,
    ENDED_STATUSES,
    FINAL_DELIVERIES,
    REPORTED_CONDITION,
    UNREPORTED_CONDITION,
    DeliveryAttempt,
    DeliveryReport,
    FailedJob,
    MessageStatus,
    OutgoingMessage,
    PrunedCount,
    utcnow,
)
from engine.store.retention_archive import Archive, jsonable
from engine.store.table_query import scanned
from engine.store.vacuum import give_back_space

log = logging.getLogger(__name__)

# Messages per transaction (with their reports and attempts, about 1,500 rows). On SQLite
# each batch holds the one write lock while its rows are deleted and archived: measured
# here, 100 ms per batch of 500 with the machine's 2 cores loaded 6x over (446 ms for
# 2,000), and the same throughput as larger batches; so sending goes on in between.
BATCH = 500

_MESSAGES = cast(Table, OutgoingMessage.__table__)
_ATTEMPTS = cast(Table, DeliveryAttempt.__table__)
_REPORTS = cast(Table, DeliveryReport.__table__)
_JOBS = cast(Table, FailedJob.__table__)
_PRUNED = cast(Table, PrunedCount.__table__)


@dataclass
class PruneResult:
    """What a prune removed (or, from count_prunable, would remove)."""

    messages: int = 0
    failed_jobs: int = 0
    delivery_reports: int = 0
    delivery_attempts: int = 0
    batches: int = 0
    archive: Path | None = None  # the file written; None when nothing was archived
    cutoff: datetime | None = None  # what settled before this was pruned

    def as_dict(self) -> dict[str, Any]:
        return {"messages": self.messages, "failed_jobs": self.failed_jobs,
                "archive": str(self.archive) if self.archive else None,
                "delivery_reports": self.delivery_reports,
                "delivery_attempts": self.delivery_attempts,
                "cutoff": self.cutoff.isoformat() if self.cutoff else None}


def archive_path(folder: Path, now: datetime) -> Path:
    """A new file for the daily prune's archive in ``folder``:
    ``relaydesk-prune-20270110T030000Z.jsonl.gz`` (``…Z-2.jsonl.gz`` if that is taken)."""
    stamp = f"relaydesk-prune-{now:%Y%m%dT%H%M%SZ}"
    path, n = folder / f"{stamp}.jsonl.gz", 1
    while path.exists():
        n += 1
        path = folder / f"{stamp}-{n}.jsonl.gz"
    return path


# --- what is settled ---------------------------------------------------------------------

def _listed(condition: str) -> ColumnElement[bool]:
    # A partial index's own condition, word for word (engine.store.models): SQLite uses the
    # index only for a query that repeats it, not for the same test with bound values.
    return cast(ColumnElement[bool], text(condition))


def _no_waiting_job() -> ColumnElement[bool]:
    """No failed job of the message waits for review."""
    return ~select(FailedJob.id).where(FailedJob.message_id == OutgoingMessage.id,
                                       FailedJob.retried_at.is_(None)
                                       ).correlate(OutgoingMessage).exists()


@dataclass(frozen=True)
class _Kind:
    """One way a message settles: the condition, and the column holding when."""

    name: str
    condition: Callable[[], ColumnElement[bool]]
    settled_at: Any  # the column


def _kinds() -> tuple[_Kind, ...]:
    # One kind per status value: each is one range of its index (equal status, then by
    # time), which the database's planner always prefers to the status index (which
    # would sort them all).
    def reported(delivery: str) -> Callable[[], ColumnElement[bool]]:
        return lambda: and_(_listed(REPORTED_CONDITION), OutgoingMessage.delivery == delivery,
                            OutgoingMessage.status == MessageStatus.SENT)

    def ended(status: str) -> Callable[[], ColumnElement[bool]]:
        return lambda: and_(_listed(ENDED_CONDITION), OutgoingMessage.status == status)

    return (
        *(_Kind(f"sent, {d}", reported(d), OutgoingMessage.delivery_at)
          for d in FINAL_DELIVERIES),
        _Kind("sent before delivery status", lambda: _listed(UNREPORTED_CONDITION),
              OutgoingMessage.sent_at),
        *(_Kind(str(s), ended(s), OutgoingMessage.updated_at) for s in ENDED_STATUSES),
    )


KINDS = _kinds()


def _settled_before(kind: _Kind, cutoff: datetime) -> ColumnElement[bool]:
    return and_(kind.condition(), kind.settled_at < cutoff, _no_waiting_job())


def prunable(cutoff: datetime) -> ColumnElement[bool]:
    """A message that settled before ``cutoff`` and may go."""
    return or_(*(_settled_before(kind, cutoff) for kind in KINDS))


def _orphan_job(cutoff: datetime) -> ColumnElement[bool]:
    """A retried failed job whose message is gone, retried before ``cutoff``."""
    return and_(FailedJob.message_id.is_(None), FailedJob.retried_at.is_not(None),
                FailedJob.retried_at < cutoff)


def _ids(values: Sequence[int]) -> list[int]:
    # Bound one parameter each (a batch is well under every database's limit): the
    # statement is compiled once and cached, not written anew for every batch.
    return list(values)


# --- counting ----------------------------------------------------------------------------

def count_prunable(db: Database, older_than: timedelta, *,
                   now: datetime | None = None) -> PruneResult:
    """What prune would remove now (messages and failed jobs; reports and attempts are
    not counted)."""
    cutoff = (now or utcnow()) - older_than
    found = PruneResult(cutoff=cutoff)
    with db.session() as session:
        for kind in KINDS:
            settled = _settled_before(kind, cutoff)
            found.messages += session.scalar(
                select(func.count()).select_from(OutgoingMessage).where(settled)) or 0
            found.failed_jobs += session.scalar(
                select(func.count(FailedJob.id)).where(FailedJob.message_id.in_(
                    select(OutgoingMessage.id).where(settled)))) or 0
        found.failed_jobs += session.scalar(
            select(func.count(FailedJob.id)).where(_orphan_job(cutoff))) or 0
    return found


# --- pruning -----------------------------------------------------------------------------

OnBatch = Callable[[PruneResult], bool]


def prune(db: Database, older_than: timedelta, *, archive: Path | None = None,
          now: datetime | None = None, batch: int = BATCH,
          on_batch: OnBatch | None = None) -> PruneResult:
    """Delete the messages that settled more than ``older_than`` before ``now`` (with
    their delivery reports, attempts and failed jobs) and the retried failed jobs of
    messages gone already, ``batch`` messages a transaction; write each batch to
    ``archive`` (a new .jsonl.gz file; ArchiveError if it exists) before deleting it.
    ``on_batch`` is told the running totals after each batch and may stop the prune
    (False). SQLite then gives the freed pages back to the file system."""
    if older_than <= timedelta(0):
        raise ValueError("older_than must be more than zero")
    now = now or utcnow()
    cutoff = now - older_than
    result = PruneResult(cutoff=cutoff)
    header = {"created_at": now, "cutoff": cutoff,
              "older_than_s": int(older_than.total_seconds())}
    with Archive(archive, header) as out:
        try:
            for ids, pruning in _batches(db, cutoff, batch):
                started = time.monotonic()
                pruning(db, ids, cutoff, out, result)
                held = time.monotonic() - started
                result.batches += 1
                if on_batch is not None and on_batch(result) is False:
                    break
                rest_after_step(db, held)  # SQLite: the workers' turn at the write lock
        finally:
            result.archive = archive if out.written else None
    if result.messages or result.failed_jobs:
        give_back_space(db)
    return result


_Pruning = Callable[[Database, list[int], datetime, Archive, PruneResult], None]


def _batches(db: Database, cutoff: datetime, size: int
             ) -> Iterator[tuple[list[int], _Pruning]]:
    """Candidate ids, a batch at a time, each kind in order of settling (keyset: rows a
    batch leaves behind, such as dead messages whose failed job waits, are passed over,
    not read again); each batch re-checks them in its own transaction."""
    for kind in KINDS:
        last: tuple[Any, int] | None = None
        while True:
            stmt = (select(OutgoingMessage.id, kind.settled_at)
                    .where(_settled_before(kind, cutoff))
                    .order_by(kind.settled_at, OutgoingMessage.id).limit(size))
            if last is not None:
                after = tuple_(bindparam("last_at", last[0], type_=kind.settled_at.type),
                               bindparam("last_id", last[1]))
                stmt = stmt.where(tuple_(kind.settled_at, OutgoingMessage.id) > after)
            with db.session() as session:
                rows = session.execute(stmt).all()
            if not rows:
                break
            yield [id_ for id_, _ in rows], _prune_messages
            last = (rows[-1][1], rows[-1][0])
    last_job = 0
    while True:
        with db.session() as session:
            ids = list(session.scalars(select(FailedJob.id).where(
                _orphan_job(cutoff), FailedJob.id > last_job).order_by(FailedJob.id)
                .limit(size)))
        if not ids:
            return
        yield ids, _prune_orphan_jobs
        last_job = ids[-1]


def _write_lock(session: Session) -> None:
    """Take the database's write lock before reading what this batch deletes, so that
    nothing read can change before it is deleted. SQLite: BEGIN IMMEDIATE (a transaction
    that read first and wrote later would fail if a worker wrote in between). PostgreSQL
    locks the rows themselves (SELECT ... FOR UPDATE, below)."""
    if session.get_bind().dialect.name == "sqlite":
        session.connection().exec_driver_sql("BEGIN IMMEDIATE")


def _prune_messages(db: Database, ids: list[int], cutoff: datetime, out: Archive,
                    result: PruneResult) -> None:
    with db.session() as session:
        _write_lock(session)
        # The batch's rows looked up by id, the condition tested on each: as a plain term,
        # SQLite answers the OR of indexed kinds by reading every settled message from the
        # partial indexes (measured: seconds per batch at 3,000,000 messages, all of it
        # inside the write lock).
        kept = list(session.scalars(
            select(_MESSAGES.c.id).where(_MESSAGES.c.id.in_(_ids(ids)),
                                         scanned(prunable(cutoff).self_group()))
            .with_for_update(of=_MESSAGES)))
        if not kept:
            return
        # Each DELETE hands back the rows it removed: one pass over them, not a read and
        # then a delete. Nothing is removed until the commit below, after the archive has
        # them on disk. The message's rows first: deleting it would take its reports and
        # attempts along (ON DELETE CASCADE) without handing them back.
        reports = _by_message(_deleted(session, _REPORTS, _REPORTS.c.message_id, kept))
        attempts = _by_message(_deleted(session, _ATTEMPTS, _ATTEMPTS.c.message_id, kept))
        jobs = _deleted(session, _JOBS, _JOBS.c.message_id, kept)
        messages = _deleted(session, _MESSAGES, _MESSAGES.c.id, kept)
        out.write([*(_message_line(m, attempts, reports) for m in messages),
                   *({"type": "failed_job", **jsonable(j)} for j in jobs)])
        _count_pruned(session, messages)
    result.messages += len(messages)
    result.failed_jobs += len(jobs)
    result.delivery_reports += sum(len(r) for r in reports.values())
    result.delivery_attempts += sum(len(a) for a in attempts.values())


def _prune_orphan_jobs(db: Database, ids: list[int], cutoff: datetime, out: Archive,
                       result: PruneResult) -> None:
    with db.session() as session:
        _write_lock(session)
        kept = list(session.scalars(select(_JOBS.c.id).where(_JOBS.c.id.in_(_ids(ids)),
                                                            _orphan_job(cutoff))
                                    .with_for_update()))
        if not kept:
            return
        # Later records that pointed to one lose the link, not their own history (as
        # forgetting does).
        session.execute(_JOBS.update().where(_JOBS.c.retry_of_id.in_(kept))
                        .values(retry_of_id=None))
        jobs = _deleted(session, _JOBS, _JOBS.c.id, kept)
        out.write([{"type": "failed_job", **jsonable(j)} for j in jobs])
    result.failed_jobs += len(jobs)


def _deleted(session: Session, table: Table, column: Any,
             ids: list[int]) -> list[dict[str, Any]]:
    """DELETE the rows of ``table`` whose ``column`` is one of ``ids``; the rows removed,
    in id order, as the archive writes them."""
    rows = session.execute(delete(table).where(column.in_(_ids(ids)))
                           .returning(*table.c)).mappings().all()
    return sorted((jsonable(row) for row in rows), key=lambda row: row["id"])


def _by_message(rows: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    found: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        found.setdefault(row.pop("message_id"), []).append(row)
    return found


def _message_line(message: dict[str, Any], attempts: dict[int, list[dict[str, Any]]],
                  reports: dict[int, list[dict[str, Any]]]) -> dict[str, Any]:
    return {"type": "message", **message,
            "delivery_attempts": attempts.get(message["id"], []),
            "delivery_reports": reports.get(message["id"], [])}


def _count_pruned(session: Session, messages: list[dict[str, Any]]) -> None:
    """Add these messages to their campaigns' pruned counts, in the batch's transaction."""
    totals: dict[tuple[int, str, str], list[int]] = {}
    for m in messages:
        key = (m["campaign_id"], m["status"], m["delivery"] or "")
        count = totals.setdefault(key, [0, 0])
        count[0] += 1
        count[1] += m["attempts"] or 0
    rows = [{"campaign_id": c, "status": s, "delivery": d, "messages": n, "attempts": a}
            for (c, s, d), (n, a) in sorted(totals.items())]
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(_PRUNED).values(rows)
    session.execute(stmt.on_conflict_do_update(
        index_elements=[_PRUNED.c.campaign_id, _PRUNED.c.status, _PRUNED.c.delivery],
        set_={"messages": _PRUNED.c.messages + stmt.excluded.messages,
              "attempts": _PRUNED.c.attempts + stmt.excluded.attempts}))
