"""Creating and queueing a campaign: rows first, in one transaction, then few publishes.

A campaign is written whole (campaign row plus one outgoing_messages row per recipient)
or not at all; if queueing it then fails, the rows are removed again, so a failed send
never leaves a half-created campaign behind. A campaign sent ``at`` a later time is written
now without messages; it is rendered, for its audience of that day, when it becomes due
(engine.pipeline.campaign_start).

Sending again to the undelivered (``resend_undelivered``) is an ordinary campaign whose
audience is ``Audience(undelivered_of=ID)``: previewed, planned and sent like any other.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete

from engine.config.settings import Settings
from engine.domain.audience import EVERYONE, Audience
from engine.domain.errors import OperatorError
from engine.domain.personalize import Recipient, Template
from engine.domain.planning import plan_send
from engine.domain.rendering import render_messages
from engine.domain.send_window import ScheduleError, SendWindow
from engine.pipeline.campaign_start import enqueue_campaign, fill_now
from engine.store.audience_query import all_opted_out, count_audience
from engine.store.campaign_rows import CreatedCampaign, fill_campaign, new_campaign
from engine.store.campaign_state import campaign_counts, pruned_counts
from engine.store.db import Database
from engine.store.models import Campaign, utcnow

MAX_CAMPAIGN_NAME = 200  # the campaigns.name column (String(200))

AGAIN_PREFIX = "Again: "

__all__ = ["CampaignError", "CreatedCampaign", "check_campaign", "create_campaign",
           "create_campaign_to", "enqueue_campaign", "resend_audience", "resend_undelivered",
           "send_campaign", "send_campaign_to"]


class CampaignError(OperatorError, RuntimeError):
    """A campaign could not be queued; nothing of it was kept."""


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


def _check_time(window: SendWindow, at: datetime, now: datetime) -> None:
    try:  # checked when typed too, but a confirmation can stay open for long
        window.check_send_time(at, now)
    except ScheduleError as exc:
        raise CampaignError(f"{exc}; nothing was created.") from None


def create_campaign(db: Database, settings: Settings, template_text: str, *,
                    audience: Audience = EVERYONE, urgent: bool = False,
                    name: str | None = None, at: datetime | None = None,
                    now: datetime | None = None) -> CreatedCampaign:
    """Store the campaign (CampaignError, TemplateError, PlanError): rendered and queued
    now, or, with ``at``, scheduled for then (its recipients counted as of that day)."""
    check_campaign(template_text, name)
    Template.parse(template_text)
    now = now or utcnow()
    window = settings.send_window(urgent=urgent)
    if at is not None:
        _check_time(window, at, now)
    with db.session() as session:
        campaign = new_campaign(session, name=name, template_text=template_text,
                                audience=audience, window=window, urgent=urgent,
                                scheduled_at=at,
                                tag=audience.tags[0] if len(audience.tags) == 1 else None)
        if at is None:
            return fill_now(session, settings, campaign, now)
        counted = count_audience(session, audience, window.today(at))
        if counted.recipients == 0:
            fill_campaign(session, campaign, [], suppressed=counted.suppressed,
                          policy=settings.plan_policy())  # raises the PlanError that says why
        plan = plan_send(counted.recipients, urgent=urgent, policy=settings.plan_policy())
        # Estimates until it is due; its start writes the real figures.
        campaign.recipients = counted.recipients
        campaign.suppressed = counted.suppressed
        return CreatedCampaign(campaign.id, plan, 0, counted.suppressed, at)


def create_campaign_to(db: Database, settings: Settings, template_text: str,
                       recipients: Iterable[tuple[int | None, str, Recipient]], *,
                       urgent: bool = False, name: str | None = None,
                       now: datetime | None = None) -> CreatedCampaign:
    """Like create_campaign, for explicit ``(contact id or None, phone, values)`` recipients
    (a test send): the same rows and plan, so it travels the same pipeline."""
    check_campaign(template_text, name)
    template = Template.parse(template_text)
    window = settings.send_window(urgent=urgent)
    messages = render_messages(template, recipients, today=window.today(now or utcnow()),
                               currency_format=settings.currency_format)
    with db.session() as session:
        campaign = new_campaign(session, name=name, template_text=template_text,
                                audience=EVERYONE, window=window, urgent=urgent)
        return fill_campaign(session, campaign, messages, suppressed=0,
                             policy=settings.plan_policy())


def send_campaign(db: Database, client: Any, settings: Settings, template_text: str, *,
                  audience: Audience = EVERYONE, urgent: bool = False,
                  name: str | None = None, at: datetime | None = None) -> CreatedCampaign:
    """Create the campaign and queue it for the workers, or schedule it for ``at``."""
    check_campaign(template_text, name)  # what the operator must fix comes first
    if at is not None:  # the workers find it in the database when it is due
        return create_campaign(db, settings, template_text, audience=audience,
                               urgent=urgent, name=name, at=at)
    _require_redis(client)
    created = create_campaign(db, settings, template_text, audience=audience, urgent=urgent,
                              name=name)
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


@dataclass(frozen=True)
class Resend:
    """What sending again to a campaign's undelivered starts from: its audience, and the
    original's template, name and urgency as defaults."""

    audience: Audience
    template: str
    name: str
    urgent: bool


def resend_audience(db: Database, settings: Settings, campaign_id: int) -> Resend:
    """The audience and defaults of sending again to campaign ``campaign_id``'s undelivered
    (CampaignError when it does not exist or no contact of it is undelivered, PlanError
    when every one of them opted out); the preview and the send both start here."""
    audience = Audience(undelivered_of=campaign_id)
    with db.session() as session:
        campaign = session.get(Campaign, campaign_id)
        if campaign is None:
            raise CampaignError(f"there is no campaign {campaign_id}: see 'relaydesk campaign "
                                "list' for the ids")
        counted = count_audience(session, audience, settings.send_window().today(utcnow()))
        if counted.matched == 0:
            # The totals keep what retention pruned; those messages can no longer be reached.
            pruned = pruned_counts(session, campaign_id).get("undelivered", 0)
            undelivered = campaign_counts(session, campaign_id)["undelivered"] - pruned
            raise CampaignError(_nothing_undelivered(campaign_id, undelivered, pruned))
        if counted.recipients == 0:
            raise all_opted_out(counted.suppressed)  # before anything needs Redis
        return Resend(audience, campaign.template,
                      (AGAIN_PREFIX + campaign.name)[:MAX_CAMPAIGN_NAME], campaign.urgent)


def _nothing_undelivered(campaign_id: int, undelivered: int, pruned: int = 0) -> str:
    if pruned and not undelivered:
        return (f"campaign {campaign_id}'s {pruned:,} undelivered message(s) were removed by "
                "retention ('relaydesk db prune' or RELAYDESK_KEEP_MESSAGES) and can no longer "
                "be sent again. Nothing was created.")
    if undelivered:
        return (f"campaign {campaign_id}'s {undelivered:,} undelivered message(s) went to "
                "numbers that are no longer, or never were, contacts (a test send, a reply, "
                "a deleted contact); send to such a number with 'relaydesk campaign "
                "test-send --to NUMBER'. Nothing was created.")
    return (f"campaign {campaign_id} has no undelivered message, so there is nobody to send "
            f"again to (see 'relaydesk campaign status {campaign_id}': messages still "
            "awaiting a report may turn undelivered later). Nothing was created.")


def resend_undelivered(db: Database, client: Any, settings: Settings, campaign_id: int,
                       template_text: str | None = None, name: str | None = None, *,
                       urgent: bool | None = None, at: datetime | None = None
                       ) -> CreatedCampaign:
    """A new campaign to exactly the contacts whose message in campaign ``campaign_id``
    ended undelivered (minus the opt-out list), rendered with today's figures; the
    template, name ("Again: <name>") and urgency default to the original's. CampaignError
    when there is nobody to send again to."""
    resend = resend_audience(db, settings, campaign_id)
    return send_campaign(db, client, settings,
                         resend.template if template_text is None else template_text,
                         audience=resend.audience,
                         urgent=resend.urgent if urgent is None else urgent,
                         name=name if (name or "").strip() else resend.name, at=at)


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
