"""Creating and queueing a campaign: rows first, in one transaction, then few publishes.

A campaign is written whole (campaign row plus one outgoing_messages row per recipient)
or not at all; if queueing it then fails, the rows are removed again, so a failed send
never leaves a half-created campaign behind.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, cast

from sqlalchemy import Table, delete, insert, update
from sqlalchemy.orm import Session

from engine.config.settings import Settings
from engine.domain.errors import OperatorError
from engine.domain.personalize import Recipient, Template
from engine.domain.planning import Route, SendPlan, plan_send
from engine.domain.rendering import RenderedMessage, render_messages
from engine.infra import scheduler
from engine.infra.celery_app import publish
from engine.operations.preview import Recipients, render_for
from engine.pipeline.sender import PROCESS_BULK, paced_message_jobs
from engine.store import delivery_state
from engine.store.db import Database
from engine.store.models import Campaign, CampaignStatus, MessageStatus, OutgoingMessage, utcnow

_MESSAGES = cast(Table, OutgoingMessage.__table__)
_INSERT_BATCH = 5000
MAX_CAMPAIGN_NAME = 200  # the campaigns.name column (String(200))


class CampaignError(OperatorError, RuntimeError):
    """A campaign could not be queued; nothing of it was kept."""


@dataclass(frozen=True)
class CreatedCampaign:
    id: int
    plan: SendPlan
    segments: int


def check_campaign(template_text: str, name: str | None) -> None:
    """Refuse, before anything is created, what no campaign can be (CampaignError): an
    empty message, or a name the database cannot hold."""
    if not template_text.strip():
        raise CampaignError("the message is empty: write the text to send (the template), "
                            "then send again; nothing was created.")
    length = len((name or "").strip())
    if length > MAX_CAMPAIGN_NAME:
        raise CampaignError(f"the campaign name is {length:,} characters long; at most "
                            f"{MAX_CAMPAIGN_NAME} fit. Shorten it and send again; nothing was "
                            "created.")


def create_campaign(db: Database, settings: Settings, template_text: str, *,
                    tag: str | None = None, contact_ids: Sequence[int] | None = None,
                    urgent: bool = False, name: str | None = None,
                    today: date | None = None) -> CreatedCampaign:
    """Render every message and store the campaign as queued (CampaignError, TemplateError,
    PlanError). Recipients: every contact, those with ``tag``, or the contacts
    ``contact_ids``."""
    check_campaign(template_text, name)
    template = Template.parse(template_text)
    recipients = Recipients(tag=tag, ids=None if contact_ids is None else tuple(contact_ids))
    with db.session() as session:
        messages = render_for(session, settings, template, recipients,
                              today=today or date.today())
        return _store_campaign(session, settings, template, messages,
                               tag=tag, urgent=urgent, name=name)


def create_campaign_to(db: Database, settings: Settings, template_text: str,
                       recipients: Iterable[tuple[int | None, str, Recipient]], *,
                       urgent: bool = False, name: str | None = None,
                       today: date | None = None) -> CreatedCampaign:
    """Like create_campaign, for explicit ``(contact id or None, phone, values)`` recipients
    (a test send): the same rows and plan, so it travels the same pipeline."""
    check_campaign(template_text, name)
    template = Template.parse(template_text)
    messages = render_messages(template, recipients, today=today or date.today(),
                               currency_format=settings.currency_format)
    with db.session() as session:
        return _store_campaign(session, settings, template, messages, tag=None,
                               urgent=urgent, name=name)


def _store_campaign(session: Session, settings: Settings, template: Template,
                    messages: Iterable[RenderedMessage], *,
                    tag: str | None, urgent: bool, name: str | None) -> CreatedCampaign:
    template_text = template.source
    now = utcnow()
    name = (name or "").strip() or f"Campaign {now:%Y-%m-%d %H:%M}"
    campaign = Campaign(name=name, template=template_text,
                        tag_filter=tag, urgent=urgent, status=CampaignStatus.DRAFT,
                        route="", queue="", created_at=now)
    session.add(campaign)
    session.flush()
    rows: list[dict[str, Any]] = []
    segments = 0
    for message in messages:
        segments += message.segments
        rows.append({"campaign_id": campaign.id, "contact_id": message.contact_id,
                     "phone": message.phone, "body": message.text,
                     "encoding": str(message.encoding), "segments": message.segments,
                     "status": MessageStatus.QUEUED, "attempts": 0, "created_at": now,
                     "updated_at": now})
    plan = plan_send(len(rows), urgent=urgent, policy=settings.plan_policy())
    for start in range(0, len(rows), _INSERT_BATCH):
        session.execute(insert(_MESSAGES), rows[start:start + _INSERT_BATCH])
    campaign.route = str(plan.route)
    campaign.queue = plan.queue
    campaign.recipients = len(rows)
    campaign.segments = segments
    campaign.status = CampaignStatus.QUEUED
    return CreatedCampaign(campaign.id, plan, segments)


def enqueue_campaign(db: Database, client: Any, settings: Settings,
                     created: CreatedCampaign) -> None:
    """Hand the campaign to the workers: one bulk job, or individual jobs paced in Redis."""
    plan = created.plan
    if plan.route is Route.BULK:
        publish(PROCESS_BULK, [created.id], plan.queue)
        return
    with db.session() as session:
        ids = delivery_state.message_ids(session, created.id, MessageStatus.QUEUED)
        session.execute(update(Campaign).where(Campaign.id == created.id)
                        .values(status=CampaignStatus.SENDING, started_at=utcnow()))
    scheduler.schedule(client, paced_message_jobs(created.id, ids, plan.queue, time.time(),
                                                  settings.pacing_individual_s))


def send_campaign(db: Database, client: Any, settings: Settings, template_text: str, *,
                  tag: str | None = None, contact_ids: Sequence[int] | None = None,
                  urgent: bool = False, name: str | None = None) -> CreatedCampaign:
    check_campaign(template_text, name)  # what the operator must fix comes first
    _require_redis(client)
    created = create_campaign(db, settings, template_text, tag=tag, contact_ids=contact_ids,
                              urgent=urgent, name=name)
    _enqueue_or_discard(db, client, settings, created)
    return created


def send_campaign_to(db: Database, client: Any, settings: Settings, template_text: str,
                     recipients: Iterable[tuple[int | None, str, Recipient]], *,
                     urgent: bool = False, name: str | None = None) -> CreatedCampaign:
    """send_campaign for explicit recipients (see create_campaign_to)."""
    check_campaign(template_text, name)
    _require_redis(client)
    created = create_campaign_to(db, settings, template_text, recipients, urgent=urgent,
                                 name=name)
    _enqueue_or_discard(db, client, settings, created)
    return created


def _require_redis(client: Any) -> None:
    try:
        client.ping()
    except Exception as exc:
        raise CampaignError(f"Redis is unreachable ({type(exc).__name__}); nothing was "
                            "created. Start RelayDesk's Redis or check "
                            "RELAYDESK_REDIS_URL.") from None


def _enqueue_or_discard(db: Database, client: Any, settings: Settings,
                        created: CreatedCampaign) -> None:
    try:
        enqueue_campaign(db, client, settings, created)
    except Exception as exc:
        with db.session() as session:
            session.execute(delete(Campaign).where(Campaign.id == created.id))
        raise CampaignError(f"the campaign could not be queued ({type(exc).__name__}: {exc}); "
                            "it was not kept and nothing was sent.") from None
