"""Seeing a campaign before it is sent, for the Compose page (one recipient's message at a
time, and the totals while the operator types) and ``campaign preview`` (the first
messages, the totals and the send plan). Sends nothing.

Messages are rendered by engine.store.audience_query.render_audience, which campaign send
uses too: the preview is what goes out. A campaign to be sent ``at`` a later time is
previewed with the figures of its send day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from engine.config.settings import Settings
from engine.domain.audience import EVERYONE, Audience
from engine.domain.personalize import Template
from engine.domain.planning import SendPlan, plan_send
from engine.domain.rendering import RenderedMessage
from engine.domain.sms_encoding import Encoding
from engine.store.audience_query import all_opted_out, count_audience, render_audience
from engine.store.models import utcnow


def send_day(settings: Settings, *, urgent: bool = False, at: datetime | None = None,
             now: datetime | None = None) -> date:
    """The "today" a campaign created now (or sent ``at``) renders with: in its zone."""
    return settings.send_window(urgent=urgent).today(at or now or utcnow())


@dataclass(frozen=True)
class ComposeSummary:
    recipients: int
    suppressed: int  # matched by the filter, left out because they opted out
    segments: int
    characters: int
    ucs2: int  # messages that need UCS-2 (70 characters a segment instead of 160)
    cost: Decimal
    plan: SendPlan | None  # None when there is nobody to send to


def preview_one(session: Session, settings: Settings, template_text: str,
                audience: Audience, index: int, today: date | None = None
                ) -> RenderedMessage | None:
    """The message of the ``index``-th recipient (id order); TemplateError for a bad template."""
    template = Template.parse(template_text)
    today = today or send_day(settings)
    return next(render_audience(session, template, audience, today,
                                settings.currency_format, offset=max(index, 0), limit=1), None)


def summarise(session: Session, settings: Settings, template_text: str,
              audience: Audience, *, urgent: bool = False,
              today: date | None = None) -> ComposeSummary:
    """Totals over every recipient: each message is rendered, as the send will render it."""
    template = Template.parse(template_text)
    today = today or send_day(settings, urgent=urgent)
    count = segments = characters = ucs2 = 0
    for message in render_audience(session, template, audience, today,
                                   settings.currency_format):
        segments += message.segments
        characters += message.characters
        ucs2 += message.encoding is Encoding.UCS2
        count += 1
    suppressed = count_audience(session, audience, today).suppressed
    plan = plan_send(count, urgent=urgent, policy=settings.plan_policy()) \
        if count else None
    return ComposeSummary(count, suppressed, segments, characters, ucs2,
                          settings.price_per_segment * segments, plan)


@dataclass(frozen=True)
class CampaignPreview:
    messages: list[RenderedMessage]  # the first `limit` recipients
    recipients: int
    suppressed: int
    segments: int
    plan: SendPlan
    send_day: date

    def as_dict(self) -> dict[str, Any]:
        return {
            "messages": [
                {"contact_id": m.contact_id, "recipient": m.phone, "text": m.text,
                 "encoding": str(m.encoding), "segments": m.segments,
                 "characters": m.characters}
                for m in self.messages
            ],
            "totals": {"recipients": self.recipients, "suppressed": self.suppressed,
                       "segments": self.segments},
            "plan": {
                "route": str(self.plan.route),
                "queue": self.plan.queue,
                "jobs": self.plan.jobs,
                "chunks": self.plan.chunks,
                "chunk_size": self.plan.chunk_size,
                "estimated_duration_s": round(self.plan.estimated_duration_s, 1),
            },
            "send_day": self.send_day.isoformat(),
        }


def preview_campaign(session: Session, settings: Settings, template_text: str, *,
                     audience: Audience = EVERYONE, limit: int = 5, urgent: bool = False,
                     at: datetime | None = None, now: datetime | None = None
                     ) -> CampaignPreview:
    """Raises TemplateError for a bad template and PlanError when nobody would receive it."""
    today = send_day(settings, urgent=urgent, at=at, now=now)
    summary = summarise(session, settings, template_text, audience, urgent=urgent,
                        today=today)
    if summary.plan is None:
        # Planning nobody raises the PlanError that says why; all opted out says so.
        if summary.suppressed:
            raise all_opted_out(summary.suppressed)
        plan_send(0, urgent=urgent, policy=settings.plan_policy())
    assert summary.plan is not None
    shown = list(render_audience(session, Template.parse(template_text), audience, today,
                                 settings.currency_format, limit=limit))
    return CampaignPreview(shown, summary.recipients, summary.suppressed, summary.segments,
                           summary.plan, today)
