"""What the Compose page shows while the operator types: one recipient's message, the
totals over all recipients (characters, segments, cost) and the send plan. Sends nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy.orm import Session

from engine.config.settings import Settings
from engine.domain.personalize import Template
from engine.domain.planning import PlanPolicy, SendPlan, plan_send
from engine.domain.sms_encoding import Encoding, segment_info
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


@dataclass(frozen=True)
class MessagePreview:
    index: int
    contact_id: int
    phone: str
    name: str
    text: str
    encoding: str
    characters: int
    segments: int


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
                ) -> MessagePreview | None:
    """The message of the ``index``-th recipient (id order); TemplateError for a bad template."""
    template = Template.parse(template_text)
    found = next(iter_recipients(session, tag=recipients.tag, ids=recipients.ids,
                                 offset=max(index, 0), limit=1), None)
    if found is None:
        return None
    contact_id, phone, values = found
    text = template.render(values, today=today or date.today(),
                           currency_format=settings.currency_format)
    info = segment_info(text)
    return MessagePreview(index, contact_id, phone, values.name, text, str(info.encoding),
                          info.characters, info.segments)


def summarize(session: Session, settings: Settings, template_text: str,
              recipients: Recipients, *, urgent: bool = False,
              today: date | None = None) -> ComposeSummary:
    """Totals over every recipient: each message is rendered, as the send will render it."""
    template = Template.parse(template_text)
    today = today or date.today()
    count = segments = characters = ucs2 = 0
    for _, _, values in iter_recipients(session, tag=recipients.tag, ids=recipients.ids):
        text = template.render(values, today=today, currency_format=settings.currency_format)
        info = segment_info(text)
        segments += info.segments
        characters += info.characters
        ucs2 += info.encoding is Encoding.UCS2
        count += 1
    plan = plan_send(count, urgent=urgent, policy=PlanPolicy.from_settings(settings)) \
        if count else None
    return ComposeSummary(count, segments, characters, ucs2,
                          settings.price_per_segment * segments, plan)

