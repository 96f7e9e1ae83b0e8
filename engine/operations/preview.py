"""Campaign preview: render every recipient's message and plan the send, sending nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy.orm import Session

from engine.config.settings import Settings
from engine.domain.personalize import Template
from engine.domain.planning import PlanPolicy, SendPlan, plan_send
from engine.domain.sms_encoding import segment_info
from engine.store.contacts import iter_recipients


@dataclass(frozen=True)
class RenderedMessage:
    contact_id: int
    phone: str
    text: str
    encoding: str
    segments: int
    characters: int


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
                 "encoding": m.encoding, "segments": m.segments, "characters": m.characters}
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
    template = Template.parse(template_text)
    today = today or date.today()
    shown: list[RenderedMessage] = []
    recipients = segments = 0
    for contact_id, phone, values in iter_recipients(session, tag=tag):
        text = template.render(values, today=today, currency_format=settings.currency_format)
        info = segment_info(text)
        recipients += 1
        segments += info.segments
        if len(shown) < limit:
            shown.append(RenderedMessage(contact_id, phone, text, str(info.encoding),
                                         info.segments, info.characters))
    plan = plan_send(recipients, urgent=urgent, policy=PlanPolicy.from_settings(settings))
    return CampaignPreview(shown, recipients, segments, plan)
