"""The dead-letter store (failed_jobs): list, retry with a fresh budget, forget; one by one
or everything a FailedQuery matches, in SQL batches (100,000 records in seconds).

A retry never requeues a message whose number is on the opt-out list: the record stays,
not retried, and ``opted_out_ids`` / ``opted_out_matching`` count what a retry skips."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from engine.domain.phones import mask_phone
from engine.store.failed_query import FailedQuery, FailedRow, where
from engine.store.models import (
    Campaign,
    CampaignStatus,
    FailedJob,
    MessageStatus,
    OptOut,
    OutgoingMessage,
    utcnow,
)


def count_failed(session: Session) -> int:
    return session.scalar(select(func.count(FailedJob.id))
                          .where(FailedJob.retried_at.is_(None))) or 0


def failed_dict(job: FailedJob, *, full: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": job.id, "failed_at": job.failed_at.isoformat(), "campaign": job.campaign_id,
        "message": job.message_id, "recipient": mask_phone(job.recipient), "queue": job.queue,
        "task": job.task_name, "attempts": job.attempts, "error_type": job.exception_type,
        "last_error": job.last_error,
        "retried_at": job.retried_at.isoformat() if job.retried_at else None,
        "retry_of": job.retry_of_id,
    }
    if full:
        data.update(recipient=job.recipient, first_error=job.first_error,
                    first_failed_at=job.first_failed_at.isoformat(), payload=job.payload,
                    traceback=job.traceback, provider_response=job.provider_response)
    return data


def row_dict(row: FailedRow) -> dict[str, Any]:
    """A table row as the CLI prints it (the keys of failed_dict, and what became of it)."""
    return {
        "id": row.id, "failed_at": row.failed_at.isoformat(), "campaign": row.campaign_id,
        "campaign_name": row.campaign, "message": row.message_id, "recipient": row.recipient,
        "queue": row.queue, "task": row.task_name, "attempts": row.attempts,
        "error_type": row.error_type, "last_error": row.last_error,
        "retried_at": row.retried_at.isoformat() if row.retried_at else None,
        "retry_of": row.retry_of_id, "next": row.next_id, "retry_state": row.retry_state,
    }


BATCH = 1000  # ids per statement: bounded IN lists, bounded memory at 100,000 records


@dataclass(frozen=True)
class Requeued:
    """A dead message put back in its campaign's queue: what the caller schedules to send
    it (the store knows no jobs or scheduler; operations.failed_jobs does)."""

    campaign_id: int
    message_id: int
    queue: str


def _batches(session: Session, query: FailedQuery) -> Iterator[list[int]]:
    """The ids matching ``query``, a batch at a time in id order (keyset, not OFFSET: the
    batch just acted on may no longer match)."""
    last = 0
    while True:
        ids = list(session.scalars(select(FailedJob.id).where(*where(query))
                                   .where(FailedJob.id > last)
                                   .order_by(FailedJob.id).limit(BATCH)))
        if not ids:
            return
        yield ids
        last = ids[-1]


def _chunks(ids: Sequence[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), BATCH):
        yield list(ids[start:start + BATCH])


def _retry_batch(session: Session, failed_ids: list[int], now: datetime) -> list[Requeued]:
    # Each UPDATE re-checks its condition and says what it changed (RETURNING), so two
    # retries at once (the console and the CLI) cannot both requeue a message, nor put
    # one that was just sent back in the queue.
    candidates = select(FailedJob.message_id).where(FailedJob.id.in_(failed_ids),
                                                    FailedJob.retried_at.is_(None))
    opted_out = select(OptOut.phone).where(OptOut.phone == OutgoingMessage.phone).exists()
    requeued = session.execute(
        update(OutgoingMessage)
        .where(OutgoingMessage.id.in_(candidates), OutgoingMessage.status == MessageStatus.DEAD)
        .where(~opted_out)
        .values(status=MessageStatus.QUEUED, attempts=0, claimed_at=None, updated_at=now)
        .returning(OutgoingMessage.id, OutgoingMessage.campaign_id)).all()
    if not requeued:
        return []
    messages = dict(requeued)
    session.execute(update(FailedJob)
                    .where(FailedJob.id.in_(failed_ids), FailedJob.retried_at.is_(None),
                           FailedJob.message_id.in_(list(messages)))
                    .values(retried_at=now))
    campaigns = set(messages.values())
    session.execute(update(Campaign)
                    .where(Campaign.id.in_(campaigns))
                    .where(Campaign.status == CampaignStatus.COMPLETED)
                    .values(status=CampaignStatus.SENDING, finished_at=None))
    queues = dict(session.execute(select(Campaign.id, Campaign.queue)
                                  .where(Campaign.id.in_(campaigns))).all())
    return [Requeued(campaign_id, message_id, queues[campaign_id])
            for message_id, campaign_id in messages.items()]


def retry_ids(session: Session, ids: Sequence[int]) -> list[Requeued]:
    """Requeue the dead messages of these records with a fresh attempt budget; returns what
    to schedule (in the same transaction: if Redis refuses, nothing is marked).

    Each record stays, marked retried; if its message dies again, the new record points
    back to it. Records already retried, or whose message is no longer dead, are skipped.
    """
    now = utcnow()
    return [job for chunk in _chunks(ids) for job in _retry_batch(session, chunk, now)]


def retry_matching(session: Session, query: FailedQuery) -> list[Requeued]:
    """retry_ids for every record ``query`` matches, in batches."""
    now = utcnow()
    return [job for batch in _batches(session, replace(query, include_retried=False))
            for job in _retry_batch(session, batch, now)]


def _opted_out_batch(session: Session, failed_ids: list[int]) -> int:
    listed = select(OptOut.phone).where(OptOut.phone == FailedJob.recipient).exists()
    return session.scalar(select(func.count(FailedJob.id))
                          .where(FailedJob.id.in_(failed_ids), FailedJob.retried_at.is_(None))
                          .where(listed)) or 0


def opted_out_ids(session: Session, ids: Sequence[int]) -> int:
    """How many of these records (not retried yet) are to a number on the opt-out list:
    what retry_ids skips."""
    return sum(_opted_out_batch(session, chunk) for chunk in _chunks(ids))


def opted_out_matching(session: Session, query: FailedQuery) -> int:
    """opted_out_ids for every record ``query`` matches."""
    return sum(_opted_out_batch(session, batch)
               for batch in _batches(session, replace(query, include_retried=False)))


def _forget_batch(session: Session, ids: list[int]) -> int:
    # A dead message whose record is forgotten has settled now: retention counts its age
    # from here (its updated_at), not from when it died.
    session.execute(update(OutgoingMessage)
                    .where(OutgoingMessage.id.in_(select(FailedJob.message_id)
                                                  .where(FailedJob.id.in_(ids))),
                           OutgoingMessage.status == MessageStatus.DEAD)
                    .values(updated_at=utcnow())
                    .execution_options(synchronize_session=False))
    # Later records that point to a forgotten one lose the link, not their own history.
    session.execute(update(FailedJob).where(FailedJob.retry_of_id.in_(ids))
                    .values(retry_of_id=None))
    result = session.execute(delete(FailedJob).where(FailedJob.id.in_(ids)))
    return int(getattr(result, "rowcount", 0) or 0)


def forget_failed(session: Session, ids: Sequence[int]) -> int:
    """Remove records from the store (their messages stay dead)."""
    return sum(_forget_batch(session, chunk) for chunk in _chunks(ids))


def forget_matching(session: Session, query: FailedQuery) -> int:
    """forget_failed for every record ``query`` matches, in batches."""
    return sum(_forget_batch(session, batch) for batch in _batches(session, query))
