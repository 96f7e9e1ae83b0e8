"""The Celery tasks. Each is idempotent: running one twice sends nothing twice."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import update

from engine.infra import scheduler
from engine.infra.celery_app import app
from engine.pipeline import quiet_hold
from engine.pipeline.runtime import runtime
from engine.pipeline.sender import (
    PROCESS_BULK,
    SEND_CHUNK,
    SEND_MESSAGE,
    chunk_jobs,
    send_messages,
)
from engine.store import delivery_state
from engine.store.campaign_rows import campaign_window
from engine.store.models import Campaign, CampaignStatus, MessageStatus, utcnow


@app.task(name=PROCESS_BULK)
def process_bulk(campaign_id: int) -> int:
    """Split a bulk campaign's queued messages into chunks, paced durably in Redis; the
    first due now, or at the end of the campaign's quiet hours if it starts inside them."""
    rt = runtime()
    with rt.db.session() as session:
        campaign = session.get(Campaign, campaign_id)
        if campaign is None or campaign.status not in (CampaignStatus.QUEUED,
                                                       CampaignStatus.SENDING):
            return 0
        ids = delivery_state.message_ids(session, campaign_id, MessageStatus.QUEUED)
        queue, window = campaign.queue, campaign_window(campaign)
        started = session.execute(
            update(Campaign).where(Campaign.id == campaign_id)
            .where(Campaign.status.in_([CampaignStatus.QUEUED, CampaignStatus.SENDING]))
            .values(status=CampaignStatus.SENDING, started_at=utcnow()))
        if not getattr(started, "rowcount", 0):
            return 0  # paused or cancelled since the read: resume re-plans it
    start = quiet_hold.first_start(rt.redis, window, campaign_id, datetime.now(UTC))
    return scheduler.schedule(rt.redis, chunk_jobs(
        campaign_id, ids, queue, rt.settings.chunk_size, start, rt.settings.pacing_chunk_s))


@app.task(name=SEND_CHUNK)
def send_chunk(campaign_id: int, message_ids: list[int]) -> None:
    send_messages(runtime(), campaign_id, message_ids, [MessageStatus.QUEUED], SEND_CHUNK)


@app.task(name=SEND_MESSAGE)
def send_message(campaign_id: int, message_id: int, retry: bool = False) -> None:
    allowed = [MessageStatus.FAILED] if retry else [MessageStatus.QUEUED]
    send_messages(runtime(), campaign_id, [message_id], allowed, SEND_MESSAGE)
