"""The dead-letter store (failed_jobs): list, retry with a fresh budget, forget."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, delete, func, select, update
from sqlalchemy.orm import Session

from engine.models import (
    Campaign,
    CampaignStatus,
    FailedJob,
    MessageStatus,
    OutgoingMessage,
    utcnow,
)
from engine.phones import mask_phone
from engine.scheduler import Job
from engine.sender import message_job


def _query(campaign_id: int | None, include_retried: bool) -> Select[FailedJob]:
    stmt = select(FailedJob).order_by(FailedJob.failed_at.desc(), FailedJob.id.desc())
    if campaign_id is not None:
        stmt = stmt.where(FailedJob.campaign_id == campaign_id)
    if not include_retried:
        stmt = stmt.where(FailedJob.retried_at.is_(None))
    return stmt


def list_failed(session: Session, *, campaign_id: int | None = None,
                include_retried: bool = False, limit: int | None = None) -> list[FailedJob]:
    return list(session.scalars(_query(campaign_id, include_retried).limit(limit)))


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


def retry_failed(session: Session, ids: Sequence[int] | None = None, *,
                 campaign_id: int | None = None) -> list[Job]:
    """Requeue dead messages with a fresh attempt budget; returns the jobs to schedule.

    The failed_jobs record stays (marked retried); if the message dies again, its new
    record points back to this one.
    """
    stmt = select(FailedJob, OutgoingMessage, Campaign).join(
        OutgoingMessage, OutgoingMessage.id == FailedJob.message_id).join(
        Campaign, Campaign.id == OutgoingMessage.campaign_id).where(
        FailedJob.retried_at.is_(None)).where(OutgoingMessage.status == MessageStatus.DEAD)
    if ids is not None:
        stmt = stmt.where(FailedJob.id.in_(ids))
    if campaign_id is not None:
        stmt = stmt.where(FailedJob.campaign_id == campaign_id)
    now = utcnow()
    jobs: list[Job] = []
    for failed, message, campaign in session.execute(stmt):
        failed.retried_at = now
        message.status = MessageStatus.QUEUED
        message.attempts = 0
        message.claimed_at = None
        message.updated_at = now
        if campaign.status == CampaignStatus.COMPLETED:
            campaign.status = CampaignStatus.SENDING
            campaign.finished_at = None
        jobs.append(message_job(campaign.id, message.id, campaign.queue, retry=False))
    return jobs


def forget_failed(session: Session, ids: Sequence[int]) -> int:
    # Later records that point to a forgotten one lose the link, not their own history.
    session.execute(update(FailedJob).where(FailedJob.retry_of_id.in_(ids))
                    .values(retry_of_id=None))
    result = session.execute(delete(FailedJob).where(FailedJob.id.in_(ids)))
    return int(getattr(result, "rowcount", 0) or 0)
