"""Seeing a campaign before it is sent, for the Compose page (one recipient's message at a
time, and the totals while the operator types) and ``campaign preview`` (the first
messages, the totals and the send plan). Sends nothing.

Messages are rendered by engine.store.audience_query.render_audience, which campaign send
uses too: the preview is what goes out. A campaign to be sent ``at`` a later time is
previewed with the figures of its send day.

Unicode hints: the characters that force UCS-2 come with the totals, each with where it
comes from, so the operator knows what to fix. ``ComposeSummary`` (and ``CampaignPreview``)
carry ``ucs2_characters`` (a tuple of ``Ucs2Character``: ``char``, ``count`` over the
rendered messages, ``source`` (``Source``), ``replacement`` (None: no GSM-7 equivalent),
for source ``contacts`` the first ``contacts`` ids and ``contacts_total``),
``unicode_extra_segments`` (segments the replaceable characters add over all messages) and
``unicode_extra_cost`` (those segments at ``price_per_segment``). The preview JSON has
``ucs2_characters`` at the top level and ``totals.unicode_extra_segments`` /
``totals.unicode_extra_cost``; ``unicode_hint(...)`` says it all in one line.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy.orm import Session

from engine.config.settings import Settings
from engine.domain.audience import EVERYONE, Audience
from engine.domain.errors import OperatorError
from engine.domain.personalize import Template
from engine.domain.planning import SendPlan, plan_send
from engine.domain.rendering import RenderedMessage
from engine.domain.sms_encoding import (
    GSM7_ALL,
    GSM7_EQUIVALENTS,
    Encoding,
    character_name,
    segments_if_replaced,
)
from engine.store.audience_query import all_opted_out, count_audience, render_audience
from engine.store.campaign_rows import campaign_audience, campaign_window
from engine.store.models import Campaign, CampaignStatus, utcnow


def send_day(settings: Settings, *, urgent: bool = False, at: datetime | None = None,
             now: datetime | None = None) -> date:
    """The "today" a campaign created now (or sent ``at``) renders with: in its zone."""
    return settings.send_window(urgent=urgent).today(at or now or utcnow())


class Source(StrEnum):
    """Where a UCS-2 character of the rendered messages comes from, i.e. where to fix it."""

    TEMPLATE = "template"  # the template's own text: edit the template
    CONTACTS = "contacts"  # a contact's value, e.g. a name: edit those contacts
    SETTINGS = "settings"  # the currency format (RELAYDESK_CURRENCY_FORMAT), in amounts


CONTACTS_LISTED = 20  # contact ids named per character; contacts_total counts them all
AMOUNT_TAGS = frozenset({"pledge", "paid_amount", "balance"})  # rendered by currency_format


@dataclass(frozen=True)
class Ucs2Character:
    char: str
    count: int  # occurrences across the rendered messages, from this source
    source: Source
    replacement: str | None  # its GSM-7 equivalent ("" = remove it); None: there is none
    contacts: tuple[int, ...] = ()  # source CONTACTS: the first affected contact ids
    contacts_total: int = 0  # source CONTACTS: every affected contact

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"char": self.char, "name": character_name(self.char),
                               "count": self.count, "source": str(self.source)}
        if self.replacement is not None:
            out["replacement"] = self.replacement
        if self.source is Source.CONTACTS:
            out["contacts"] = list(self.contacts)
            out["contacts_total"] = self.contacts_total
        return out


class _Ucs2Tally:
    """Counts, message by message, the UCS-2 characters and where they come from, and what
    they cost. Every message holds the template's literal text (and the currency format's,
    once per amount tag), so whatever a message has beyond that came from its contact."""

    def __init__(self, template: Template, currency_format: str) -> None:
        literal = "".join(template.parts[0::2])
        amounts = sum(tag in AMOUNT_TAGS for tag in template.parts[1::2])
        around_amount = currency_format.replace("{amount}", "") if amounts else ""
        self.fixed: dict[tuple[str, Source], int] = {}  # per message
        for text, source, times in ((literal, Source.TEMPLATE, 1),
                                    (around_amount, Source.SETTINGS, amounts)):
            for ch in set(text) - GSM7_ALL:
                self.fixed[ch, source] = text.count(ch) * times
        self.fixed_per_char: Counter[str] = Counter()
        for (ch, _), n in self.fixed.items():
            self.fixed_per_char[ch] += n
        self.messages = 0
        self.extra_segments = 0
        self.from_contacts: Counter[str] = Counter()
        self.contact_ids: dict[str, list[int]] = {}
        self.contacts_total: Counter[str] = Counter()

    def add(self, message: RenderedMessage) -> None:
        self.messages += 1
        if message.encoding is Encoding.GSM7:
            return
        found = set(message.text) - GSM7_ALL
        if not found.isdisjoint(GSM7_EQUIVALENTS):
            self.extra_segments += message.segments - segments_if_replaced(message.text)
        for ch in found:
            beyond = message.text.count(ch) - self.fixed_per_char[ch]
            if beyond <= 0:
                continue
            self.from_contacts[ch] += beyond
            self.contacts_total[ch] += 1
            listed = self.contact_ids.setdefault(ch, [])
            if message.contact_id is not None and len(listed) < CONTACTS_LISTED:
                listed.append(message.contact_id)

    def characters(self) -> tuple[Ucs2Character, ...]:
        found = [Ucs2Character(ch, n * self.messages, source, GSM7_EQUIVALENTS.get(ch))
                 for (ch, source), n in self.fixed.items() if self.messages]
        found += [Ucs2Character(ch, n, Source.CONTACTS, GSM7_EQUIVALENTS.get(ch),
                                tuple(self.contact_ids[ch]), self.contacts_total[ch])
                  for ch, n in self.from_contacts.items()]
        order = list(Source)
        return tuple(sorted(found, key=lambda c: (-c.count, order.index(c.source), c.char)))


def _shown(ch: str) -> str:
    return ch if ch.isprintable() and not ch.isspace() else character_name(ch)


def _advice(c: Ucs2Character) -> str:
    where = {Source.TEMPLATE: "template", Source.SETTINGS: "currency format"}.get(
        c.source, f"{c.contacts_total:,} contact(s)")
    if c.replacement is None:
        return f"{where}; no GSM-7 equivalent"
    use = {"": "remove it", " ": "use a space", "\n": "use a line break"}
    return f"{where}; {use.get(c.replacement, 'use ' + c.replacement)}"


def unicode_hint(characters: tuple[Ucs2Character, ...], extra_segments: int,
                 extra_cost: Decimal, *, shown: int = 4) -> str:
    """One line on the characters that force UCS-2 and their cost ("" when there are none):
    ``Unicode: ’ ×130 (template; use '); costs 130 extra segment(s) (104.00)``."""
    if not characters:
        return ""
    listed = ", ".join(f"{_shown(c.char)} ×{c.count:,} ({_advice(c)})"
                       for c in characters[:shown])
    more = f" and {len(characters) - shown} more" if len(characters) > shown else ""
    cost = "no extra segment" if not extra_segments else \
        f"{extra_segments:,} extra segment(s)" + (f" ({extra_cost:,.2f})" if extra_cost else "")
    return f"Unicode: {listed}{more}; costs {cost}"


@dataclass(frozen=True)
class ComposeSummary:
    recipients: int
    suppressed: int  # matched by the filter, left out because they opted out
    segments: int
    characters: int
    ucs2: int  # messages that need UCS-2 (70 characters a segment instead of 160)
    cost: Decimal
    plan: SendPlan | None  # None when there is nobody to send to
    ucs2_characters: tuple[Ucs2Character, ...] = ()  # most frequent first
    unicode_extra_segments: int = 0  # saved if every replaceable character were replaced
    unicode_extra_cost: Decimal = Decimal(0)  # those segments at price_per_segment


def preview_one(session: Session, settings: Settings, template_text: str,
                audience: Audience, index: int, today: date | None = None
                ) -> RenderedMessage | None:
    """The message of the ``index``-th recipient (id order); TemplateError for a bad template."""
    template = Template.parse(template_text)
    today = today or send_day(settings)
    return next(render_audience(session, template, audience, today,
                                settings.currency_format, offset=max(index, 0), limit=1), None)


CHECKPOINT_EVERY = 1000  # recipients between two checkpoint() calls: ~10 ms of rendering


def summarise(session: Session, settings: Settings, template_text: str,
              audience: Audience, *, urgent: bool = False, today: date | None = None,
              checkpoint: Callable[[], None] | None = None) -> ComposeSummary:
    """Totals over every recipient: each message is rendered, as the send will render it.
    ``checkpoint()`` is called every CHECKPOINT_EVERY recipients; whatever it raises stops
    the totals there (Compose: the operator typed on, so these totals are not wanted)."""
    template = Template.parse(template_text)
    today = today or send_day(settings, urgent=urgent)
    count = segments = characters = ucs2 = 0
    tally = _Ucs2Tally(template, settings.currency_format)
    for message in render_audience(session, template, audience, today,
                                   settings.currency_format):
        segments += message.segments
        characters += message.characters
        ucs2 += message.encoding is Encoding.UCS2
        count += 1
        tally.add(message)
        if checkpoint is not None and count % CHECKPOINT_EVERY == 0:
            checkpoint()
    suppressed = count_audience(session, audience, today).suppressed
    plan = plan_send(count, urgent=urgent, policy=settings.plan_policy()) \
        if count else None
    price = settings.price_per_segment
    return ComposeSummary(count, suppressed, segments, characters, ucs2, price * segments,
                          plan, tally.characters(), tally.extra_segments,
                          price * tally.extra_segments)


@dataclass(frozen=True)
class CampaignPreview:
    messages: list[RenderedMessage]  # the first `limit` recipients
    recipients: int
    suppressed: int
    segments: int
    plan: SendPlan
    send_day: date
    ucs2_characters: tuple[Ucs2Character, ...] = ()
    unicode_extra_segments: int = 0
    unicode_extra_cost: Decimal = Decimal(0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "messages": [
                {"contact_id": m.contact_id, "recipient": m.phone, "text": m.text,
                 "encoding": str(m.encoding), "segments": m.segments,
                 "characters": m.characters}
                for m in self.messages
            ],
            "totals": {"recipients": self.recipients, "suppressed": self.suppressed,
                       "segments": self.segments,
                       "unicode_extra_segments": self.unicode_extra_segments,
                       "unicode_extra_cost": f"{self.unicode_extra_cost:.2f}"},
            "ucs2_characters": [c.as_dict() for c in self.ucs2_characters],
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
    return _preview(session, settings, template_text, audience, limit, urgent, today)


class PreviewError(OperatorError, ValueError):
    """There is nothing to preview this way; the text says what to look at instead."""


def preview_scheduled(session: Session, settings: Settings, campaign_id: int, *,
                      limit: int = 5) -> CampaignPreview:
    """A scheduled campaign as it will go out: its template and audience, with the figures
    of its send day in the time zone it recorded (PreviewError when it is not scheduled)."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise PreviewError(f"there is no campaign {campaign_id}: see 'relaydesk campaign "
                           "list' for the ids")
    if campaign.status != CampaignStatus.SCHEDULED or campaign.scheduled_at is None:
        raise PreviewError(f"campaign {campaign_id} is {campaign.status}, not scheduled: "
                           "only a scheduled campaign is previewed this way; see 'relaydesk "
                           f"campaign status {campaign_id}' for what it did")
    today = campaign_window(campaign).today(campaign.scheduled_at)
    return _preview(session, settings, campaign.template, campaign_audience(campaign), limit,
                    campaign.urgent, today)


def _preview(session: Session, settings: Settings, template_text: str, audience: Audience,
             limit: int, urgent: bool, today: date) -> CampaignPreview:
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
                           summary.plan, today, summary.ucs2_characters,
                           summary.unicode_extra_segments, summary.unicode_extra_cost)
