"""Seeing a campaign before it is sent, for the Compose page (one recipient's message at a
time, and the totals while the operator types) and ``campaign preview`` (the first
messages, the totals and the send plan). Sends nothing.

Messages are rendered for the contacts in the database by render_for, which campaign send
uses too: the preview is what goes out.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from engine.config.settings import Settings
from engine.domain.personalize import Template
from engine.domain.planning import SendPlan, plan_send
from engine.domain.rendering import RenderedMessage, render_messages
from engine.domain.sms_encoding import Encoding
from engine.store.contacts import iter_recipients


@dataclass(frozen=True)
class Recipients:
    """Who a campaign goes to: everyone, a tag, or chosen contacts."""

    tag: str | None = None
    ids: tuple[int, ...] | None = None

    def describe(self) -> str:
        if self.ids is not None:
            return f"{len(self.ids):,} selected contact(s)"
        return f"contacts tagged '{self.tag}'" if self.tag else "all contacts"


def render_for(session: Session, settings: Settings, template: Template,
               recipients: Recipients, *, today: date, offset: int = 0,
               limit: int | None = None) -> Iterator[RenderedMessage]:
    """The messages of these contacts (id order), from the ``offset``-th, at most
    ``limit``; streamed, so a whole campaign is never held at once."""
    found = iter_recipients(session, tag=recipients.tag, ids=recipients.ids,
                            offset=offset, limit=limit)
    return render_messages(template, found, today=today,
                           currency_format=settings.currency_format, first_index=offset)


@dataclass(frozen=True)
class ComposeSummary:
    recipients: int
    segments: int
    characters: int
    ucs2: int  # messages that need UCS-2 (70 characters a segment instead of 160)
    cost: Decimal
    plan: SendPlan | None  # None when there is nobody to send to


def preview_one(session: Session, settings: Settings, template_text: str,
                recipients: Recipients, index: int, today: date | None = None
                ) -> RenderedMessage | None:
    """The message of the ``index``-th recipient (id order); TemplateError for a bad template."""
    template = Template.parse(template_text)
    return next(render_for(session, settings, template, recipients,
                           today=today or date.today(), offset=max(index, 0), limit=1), None)


def summarise(session: Session, settings: Settings, template_text: str,
              recipients: Recipients, *, urgent: bool = False,
              today: date | None = None) -> ComposeSummary:
    """Totals over every recipient: each message is rendered, as the send will render it."""
    template = Template.parse(template_text)
    count = segments = characters = ucs2 = 0
    for message in render_for(session, settings, template, recipients,
                              today=today or date.today()):
        segments += message.segments
        characters += message.characters
        ucs2 += message.encoding is Encoding.UCS2
        count += 1
    plan = plan_send(count, urgent=urgent, policy=settings.plan_policy()) \
        if count else None
    return ComposeSummary(count, segments, characters, ucs2,
                          settings.price_per_segment * segments, plan)


@dataclass(frozen=True)
class CampaignPreview:
    messages: list[RenderedMessage]  # the first `limit` recipients
    recipients: int
    segments: int
    plan: SendPlan

    def as_dict(self) -> dict[str, Any]:
        return {
            "messages": [
                {"contact_id": m.contact_id, "recipient": m.phone, "text": m.text,
                 "encoding": str(m.encoding), "segments": m.segments,
                 "characters": m.characters}
                for m in self.messages
            ],
            "totals": {"recipients": self.recipients, "segments": self.segments},
            "plan": {
                "route": str(self.plan.route),
                "queue": self.plan.queue,
                "jobs": self.plan.jobs,
                "chunks": self.plan.chunks,
                "chunk_size": self.plan.chunk_size,
                "estimated_duration_s": round(self.plan.estimated_duration_s, 1),
            },
        }


def preview_campaign(session: Session, settings: Settings, template_text: str, *,
                     tag: str | None = None, limit: int = 5, urgent: bool = False,
                     today: date | None = None) -> CampaignPreview:
    """Raises TemplateError for a bad template and PlanError when nobody would receive it."""
    today = today or date.today()
    recipients = Recipients(tag=tag)
    summary = summarise(session, settings, template_text, recipients, urgent=urgent,
                        today=today)
    # summarise plans no send for nobody; planning it anyway raises the PlanError that
    # says why.
    plan = summary.plan if summary.plan is not None else \
        plan_send(0, urgent=urgent, policy=settings.plan_policy())
    shown = list(render_for(session, settings, Template.parse(template_text), recipients,
                            today=today, limit=limit))
    return CampaignPreview(shown, summary.recipients, summary.segments, plan)
