"""Writing a campaign: its row, then one outgoing_messages row per recipient, in the caller's
transaction, so a campaign exists whole or not at all.

A campaign sent now is written and filled at once; a scheduled one is written now and
filled when it becomes due (engine.pipeline.campaign_start), so its messages carry the
figures of that day.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table
from sqlalchemy.orm import Session

from engine.domain.audience import Audience
from engine.domain.planning import PlanPolicy, SendPlan, plan_send
from engine.domain.rendering import RenderedMessage
from engine.domain.send_window import SendWindow
from engine.store.audience_query import all_opted_out
from engine.store.bulk_sql import insert_rows
from engine.store.models import Campaign, CampaignStatus, MessageStatus, OutgoingMessage, utcnow

_MESSAGES = cast(Table, OutgoingMessage.__table__)
_MESSAGE_COLUMNS = ("contact_id", "phone", "body", "encoding", "segments")


@dataclass(frozen=True)
class CreatedCampaign:
    id: int
    plan: SendPlan  # for a scheduled campaign, the plan as it would be today
    segments: int
    suppressed: int = 0  # matched contacts left out because they opted out
    scheduled_at: datetime | None = None  # None: queued now


def new_campaign(session: Session, *, name: str | None, template_text: str,
                 audience: Audience, window: SendWindow, urgent: bool,
                 scheduled_at: datetime | None = None, tag: str | None = None) -> Campaign:
    """The campaign row: a draft to fill now, or scheduled for ``scheduled_at``."""
    now = utcnow()
    campaign = Campaign(
        name=(name or "").strip() or f"Campaign {now:%Y-%m-%d %H:%M}",
        template=template_text, tag_filter=tag,
        audience=None if audience.is_everyone else audience.to_json(),
        timezone=window.timezone,
        quiet_hours=str(window.quiet_hours) if window.quiet_hours else None,
        urgent=urgent, scheduled_at=scheduled_at, route="", queue="", created_at=now,
        status=CampaignStatus.SCHEDULED if scheduled_at else CampaignStatus.DRAFT)
    session.add(campaign)
    session.flush()
    return campaign


def campaign_audience(campaign: Campaign) -> Audience:
    """Who the campaign was sent to; a campaign from before audiences kept only its tag."""
    if campaign.audience:
        return Audience.from_json(campaign.audience)
    return Audience(tags=(campaign.tag_filter,)) if campaign.tag_filter else Audience()


def campaign_window(campaign: Campaign) -> SendWindow:
    """The send window the campaign recorded when it was created."""
    return SendWindow.of(campaign.timezone or "UTC", campaign.quiet_hours)


def fill_campaign(session: Session, campaign: Campaign, messages: Iterable[RenderedMessage],
                  *, suppressed: int, policy: PlanPolicy) -> CreatedCampaign:
    """Add the messages, plan the send and mark the campaign queued (PlanError when there
    is nobody to send to: the caller's transaction then keeps nothing). ``messages`` is
    read while the rows are written, so it must not read from the session's connection
    meanwhile (render_audience(..., batch=None) reads its rows first)."""
    now = utcnow()
    segments = 0

    def rows() -> Iterator[tuple[int | None, str, str, str, int]]:
        nonlocal segments
        for message in messages:
            segments += message.segments
            yield (message.contact_id, message.phone, message.text, message.encoding.value,
                   message.segments)

    # Streamed into the table: 100,000 messages are never all in memory, and the database
    # stores the first while the next are rendered.
    count = insert_rows(session, _MESSAGES, _MESSAGE_COLUMNS, rows(),
                        same={"campaign_id": campaign.id, "status": MessageStatus.QUEUED.value,
                              "attempts": 0, "created_at": now, "updated_at": now})
    if not count and suppressed:
        raise all_opted_out(suppressed)
    plan = plan_send(count, urgent=campaign.urgent, policy=policy)
    campaign.route = str(plan.route)
    campaign.queue = plan.queue
    campaign.recipients = count
    campaign.segments = segments
    campaign.suppressed = suppressed
    campaign.status = CampaignStatus.QUEUED
    return CreatedCampaign(campaign.id, plan, segments, suppressed)
