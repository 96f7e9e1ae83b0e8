"""Campaigns and their messages for the console's tables: a page at a time, counted and
filtered in SQL (by message status and by delivery status)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.domain.delivery import DeliveryStatus
from engine.store.campaign_state import message_totals
from engine.store.models import Campaign, MessageStatus, OutgoingMessage


@dataclass(frozen=True)
class CampaignRow:
    id: int
    name: str
    status: str
    route: str
    queue: str
    recipients: int
    segments: int
    created_at: datetime
    finished_at: datetime | None
    pause_reason: str | None
    counts: dict[str, int]  # its messages per MessageStatus
    delivery_counts: dict[str, int]  # its sent messages per DeliveryStatus
    # Of those, the settled ones retention removed (counted above; no longer listed).
    pruned: int

    @property
    def delivered(self) -> int:
        return self.delivery_counts.get(DeliveryStatus.DELIVERED, 0)

    @property
    def undelivered(self) -> int:
        return self.delivery_counts.get(DeliveryStatus.UNDELIVERED, 0)

    @property
    def sent(self) -> int:
        return self.counts.get(MessageStatus.SENT, 0)

    @property
    def dead(self) -> int:
        return self.counts.get(MessageStatus.DEAD, 0)

    @property
    def pending(self) -> int:
        return sum(self.counts.get(s, 0) for s in (MessageStatus.QUEUED, MessageStatus.SENDING))

    @property
    def retrying(self) -> int:
        return self.counts.get(MessageStatus.FAILED, 0)

    @property
    def cancelled(self) -> int:
        return self.counts.get(MessageStatus.CANCELLED, 0)


@dataclass(frozen=True)
class MessageRow:
    id: int
    phone: str
    status: str
    attempts: int
    segments: int
    last_error: str | None
    updated_at: datetime
    sent_at: datetime | None
    body: str
    delivery: str | None  # DeliveryStatus once sent; None before
    delivery_error: str | None  # the provider's reason when undelivered


def count_campaigns(session: Session) -> int:
    return session.scalar(select(func.count(Campaign.id))) or 0


def campaign_page(session: Session, offset: int, limit: int) -> list[CampaignRow]:
    """Newest first, each with its message counts per status and per delivery status (one
    grouped query for the page), pruned messages included."""
    campaigns = list(session.scalars(
        select(Campaign).order_by(Campaign.id.desc()).offset(offset).limit(limit)))
    counts: dict[int, dict[str, int]] = {c.id: {} for c in campaigns}
    deliveries: dict[int, dict[str, int]] = {c.id: {} for c in campaigns}
    pruned: dict[int, int] = {}
    if campaigns:
        # Messages retention pruned count as before (message_totals).
        for campaign_id, status, delivery, count, _, was_pruned in session.execute(
                message_totals(list(counts))):
            if was_pruned:
                pruned[campaign_id] = pruned.get(campaign_id, 0) + count
            found = counts[campaign_id]
            found[status] = found.get(status, 0) + count
            if delivery is not None:
                delivered = deliveries[campaign_id]
                delivered[delivery] = delivered.get(delivery, 0) + count
    return [CampaignRow(c.id, c.name, c.status, c.route, c.queue, c.recipients, c.segments,
                        c.created_at, c.finished_at, c.pause_reason, counts[c.id],
                        deliveries[c.id], pruned.get(c.id, 0))
            for c in campaigns]


def _filtered(stmt: Any, campaign_id: int, status: str | None,
              delivery: str | None) -> Any:
    stmt = stmt.where(OutgoingMessage.campaign_id == campaign_id)
    if status:
        stmt = stmt.where(OutgoingMessage.status == status)
    if delivery:
        stmt = stmt.where(OutgoingMessage.delivery == delivery)
    return stmt


def count_messages(session: Session, campaign_id: int, status: str | None = None,
                   delivery: str | None = None) -> int:
    """How many of the campaign's messages have ``status`` and ``delivery`` (None: any)."""
    stmt = _filtered(select(func.count(OutgoingMessage.id)), campaign_id, status, delivery)
    return session.scalar(stmt) or 0


def message_page(session: Session, campaign_id: int, status: str | None, offset: int,
                 limit: int, delivery: str | None = None) -> list[MessageRow]:
    """The campaign's messages in id order, filtered as count_messages counts them."""
    stmt = select(OutgoingMessage.id, OutgoingMessage.phone, OutgoingMessage.status,
                  OutgoingMessage.attempts, OutgoingMessage.segments,
                  OutgoingMessage.last_error, OutgoingMessage.updated_at,
                  OutgoingMessage.sent_at, OutgoingMessage.body, OutgoingMessage.delivery,
                  OutgoingMessage.delivery_error)
    stmt = _filtered(stmt, campaign_id, status, delivery)
    rows = session.execute(stmt.order_by(OutgoingMessage.id).offset(offset).limit(limit))
    return [MessageRow(*row) for row in rows]
