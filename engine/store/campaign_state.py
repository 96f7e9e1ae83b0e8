"""A campaign's state in the database: what its messages add up to, and the two status
changes that follow from them (finished when none is left to send, paused by the sender on
an account error).

The per-message transitions (claim, sent, retry, dead) are engine.store.delivery_state;
what an operator may do to a campaign (pause, resume, cancel) is engine.operations.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Select, false, func, select, true, union_all, update
from sqlalchemy.orm import Session

from engine.domain.delivery import DeliveryStatus
from engine.store.campaign_rows import campaign_audience, campaign_window
from engine.store.models import (
    Campaign,
    CampaignStatus,
    MessageCount,
    MessageStatus,
    OutgoingMessage,
    PrunedCount,
    utcnow,
)

PENDING = (MessageStatus.QUEUED, MessageStatus.SENDING, MessageStatus.FAILED)


def pause_campaign(session: Session, campaign_id: int, reason: str) -> None:
    session.execute(
        update(Campaign).where(Campaign.id == campaign_id)
        .where(Campaign.status.in_([CampaignStatus.QUEUED, CampaignStatus.SENDING]))
        .values(status=CampaignStatus.PAUSED, pause_reason=reason)
    )


def finish_campaign_if_done(session: Session, campaign_id: int) -> bool:
    # Whether any is pending, not how many: every job asks, and counting the pending ones
    # of a 100,000-message campaign took 40-80 ms per job.
    pending = session.scalar(select(
        select(OutgoingMessage.id)
        .where(OutgoingMessage.campaign_id == campaign_id)
        .where(OutgoingMessage.status.in_([str(s) for s in PENDING])).exists()))
    if pending:
        return False
    result = session.execute(
        update(Campaign).where(Campaign.id == campaign_id)
        .where(Campaign.status.in_([CampaignStatus.QUEUED, CampaignStatus.SENDING]))
        .values(status=CampaignStatus.COMPLETED, finished_at=utcnow()))
    return bool(getattr(result, "rowcount", 0))


def message_totals(campaign_ids: list[int]) -> Select[int, str, str | None, int, int, bool]:
    """(campaign id, status, delivery status, messages, attempts, pruned) of these
    campaigns' messages, from their maintained counts (models.MessageCount: no message is
    read), and of the messages retention pruned from them (engine.store.retention,
    campaign_pruned_counts; ``pruned`` true): one statement, so it reads one snapshot even
    while a prune moves messages from the one to the other. Add the rows up per key."""
    messages = (select(MessageCount.campaign_id, MessageCount.status,
                       func.nullif(MessageCount.delivery, ""), func.sum(MessageCount.messages),
                       func.sum(MessageCount.attempts), false())
                .where(MessageCount.campaign_id.in_(campaign_ids))
                .group_by(MessageCount.campaign_id, MessageCount.status, MessageCount.delivery)
                .having(func.sum(MessageCount.messages) != 0))
    pruned = (select(PrunedCount.campaign_id, PrunedCount.status,
                     func.nullif(PrunedCount.delivery, ""), PrunedCount.messages,
                     PrunedCount.attempts, true())
              .where(PrunedCount.campaign_id.in_(campaign_ids)))
    return cast(Select[int, str, str | None, int, int, bool],
                select(union_all(messages, pruned).subquery()))


def campaign_counts(session: Session, campaign_id: int) -> dict[str, int]:
    """The campaign's messages per status (``queued`` ... ``suppressed``), per delivery
    status of the sent ones (``awaiting_report``, ``delivered``, ``undelivered``,
    ``expired``), and its ``attempts``, pruned ones included (message_totals). The two
    sets of names do not overlap, so one dict holds both; a message counts once in each."""
    rows = session.execute(message_totals([campaign_id]))
    counts = {str(s): 0 for s in MessageStatus} | {str(d): 0 for d in DeliveryStatus}
    attempts = 0
    for _, status, delivery, count, tried, _ in rows:
        counts[status] = counts.get(status, 0) + count
        if delivery is not None:
            counts[delivery] = counts.get(delivery, 0) + count
        attempts += tried or 0
    counts["attempts"] = attempts
    return counts


def pruned_counts(session: Session, campaign_id: int) -> dict[str, int]:
    """What retention pruned from the campaign (counted in campaign_counts too): its
    ``messages``, and per status and delivery status as campaign_counts names them."""
    counts: dict[str, int] = {"messages": 0}
    for status, delivery, messages in session.execute(
            select(PrunedCount.status, PrunedCount.delivery, PrunedCount.messages)
            .where(PrunedCount.campaign_id == campaign_id)):
        counts["messages"] += messages
        counts[status] = counts.get(status, 0) + messages
        if delivery:
            counts[delivery] = counts.get(delivery, 0) + messages
    return counts


def delivery_rate(delivered: int, undelivered: int) -> float | None:
    """Delivered out of the messages with a final report; None before any."""
    final = delivered + undelivered
    return round(delivered / final, 4) if final else None


def stalled_campaigns(session: Session, stall_s: float) -> list[tuple[int, str]]:
    """(id, queue) of campaigns with queued messages and no progress for ``stall_s``.

    The broker can lose a job (a task that failed while Redis restarted is acked and gone);
    the database still knows the messages are queued, so the campaign can be resumed.

    Only queued and sending campaigns: a scheduled one (missed or not) waits on purpose and
    has no message yet, a paused one waits for its operator. The clock that matters is the
    messages' ``updated_at``: they are written when the campaign is filled, which for a
    scheduled campaign is its start, long after its ``created_at``; so a campaign whose
    starter died between filling it and publishing its jobs is found ``stall_s`` after its
    start, and one being published right now is not.
    """
    stale = utcnow() - timedelta(seconds=stall_s)
    has_queued = select(OutgoingMessage.id).where(
        OutgoingMessage.campaign_id == Campaign.id,
        OutgoingMessage.status == MessageStatus.QUEUED).exists()
    last_change = select(func.max(OutgoingMessage.updated_at)).where(
        OutgoingMessage.campaign_id == Campaign.id).scalar_subquery()
    rows = session.execute(
        select(Campaign.id, Campaign.queue)
        .where(Campaign.status.in_([CampaignStatus.QUEUED, CampaignStatus.SENDING]))
        .where(Campaign.created_at < stale)
        .where(has_queued)
        .where(last_change < stale))
    return [(id_, queue) for id_, queue in rows]


def campaign_summary(session: Session, campaign_id: int,
                     now: datetime | None = None) -> dict[str, Any] | None:
    """The campaign's figures as ``campaign status --json`` prints them, as of ``now``
    (which decides whether it is waiting for its send window)."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        return None
    counts = campaign_counts(session, campaign_id)
    held = held_until(campaign, counts, now or datetime.now(UTC))
    return {
        "campaign": campaign.id, "name": campaign.name, "status": campaign.status,
        "route": campaign.route, "queue": campaign.queue, "recipients": campaign.recipients,
        "segments": campaign.segments, "sent": counts["sent"], "dead": counts["dead"],
        "pending": counts["queued"] + counts["sending"], "retrying": counts["failed"],
        "cancelled": counts["cancelled"], "attempts": counts["attempts"],
        # Left out at planning (no message row) and stopped at send time (a row).
        "suppressed": campaign.suppressed + counts["suppressed"],
        # What the provider reported about the sent ones.
        "delivered": counts[DeliveryStatus.DELIVERED],
        "undelivered": counts[DeliveryStatus.UNDELIVERED],
        "awaiting_report": counts[DeliveryStatus.AWAITING_REPORT],
        "expired": counts[DeliveryStatus.EXPIRED],
        "delivery_rate": delivery_rate(counts[DeliveryStatus.DELIVERED],
                                       counts[DeliveryStatus.UNDELIVERED]),
        "audience": campaign_audience(campaign).describe(),
        "timezone": campaign.timezone,
        "quiet_hours": campaign.quiet_hours,
        "scheduled_at": campaign.scheduled_at.isoformat() if campaign.scheduled_at else None,
        "pause_reason": campaign.pause_reason,
        # Inside its quiet hours with work left: the workers hold its jobs until then.
        "held_until": held.isoformat() if held else None,
        "state_note": campaign_window(campaign).describe_hold(held) if held else None,
    }


def held_until(campaign: Campaign, counts: Mapping[str, int], now: datetime) -> datetime | None:
    """When a running campaign's quiet hours end, if ``now`` is inside them and it still
    has messages to send (``counts``: its messages per status); None otherwise (a paused
    campaign says why it is paused). ``campaign_window(campaign).describe_hold(until)``
    says it in words."""
    if campaign.status not in (CampaignStatus.QUEUED, CampaignStatus.SENDING):
        return None
    if not sum(counts.get(str(status), 0) for status in PENDING):
        return None
    return campaign_window(campaign).held_until(now)


def is_settled(summary: dict[str, Any]) -> bool:
    """Nothing more will happen without the operator: all delivered or dead, or paused."""
    return (summary["pending"] == 0 and summary["retrying"] == 0) or \
        summary["status"] in (CampaignStatus.PAUSED, CampaignStatus.CANCELLED)
