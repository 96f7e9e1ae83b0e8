"""Applying what providers report: delivery reports to the messages' delivery status,
replies to the inbox, STOP / START and provider opt-out notices to the opt-out list.

``apply_reports`` works in the caller's transaction, for a batch at a time (a few hundred:
engine.pipeline.report_applier reads them from the receiver's Redis list):

- Idempotent by ``Report.receipt``: a report whose receipt is already stored (the applier
  died between its commit and trimming the list, and applies the batch again) is skipped,
  by a look-up first and by the tables' unique receipts for anything racing it. Every kind
  stores its receipt: a delivery report in delivery_reports, a reply and a provider's
  opt-out notice in inbound_messages (the notice as a row with keyword 'optout' and
  OPTOUT_NOTICE_TEXT, so it also shows in the Inbox), so a batch applied again cannot list
  again a number that a later START took off.
- In arrival order where order matters: replies and opt-out notices change the opt-out
  list one by one, in the order they came (a notice then a START ends off the list; a
  START then a notice, on it). Delivery reports are applied by set, forward only, which
  needs no order.
- Forward only (engine.domain.delivery.advances): reports arrive more than once and out of
  order. Each message's UPDATE also names the statuses it may move from, so a concurrent
  writer (the expiry sweep, the Twilio poller) can never be overwritten backwards.
- A delivery report whose message is not found is kept unmatched (``message_id`` NULL):
  it can arrive before the send that it reports on has committed its provider id.
  ``rematch_unmatched`` applies such reports once their message exists; they are counted
  (``count_unmatched``, Applied.unmatched) and ``prune_unmatched`` deletes the old ones.

Set-based: a batch costs a handful of statements whatever its size (look-ups with IN
lists, one multi-row INSERT, one executemany UPDATE per final status); only STOP / START
replies and opt-out notices, which are rare, touch the opt-out list one by one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ARRAY,
    Integer,
    String,
    Table,
    Text,
    bindparam,
    delete,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.orm import Session

from engine.domain.delivery import (
    DeliveryStatus,
    ReplyKeyword,
    Report,
    ReportKind,
    advances,
    normalise_keyword,
    reply_keyword,
)
from engine.store.bulk_sql import batched, insert_ignoring
from engine.store.models import (
    Contact,
    DeliveryReport,
    InboundMessage,
    OptSource,
    OutgoingMessage,
    UTCDateTime,
    utcnow,
)
from engine.store.optouts import list_number, opt_in_by_reply

_MESSAGES = cast(Table, OutgoingMessage.__table__)
_REPORTS = cast(Table, DeliveryReport.__table__)
# The inbox text of a provider's opt-out notice (it carries no text of its own).
OPTOUT_NOTICE_TEXT = "(opt-out notice from the provider)"


@dataclass
class Tally:
    """Counts for one provider or one campaign."""

    reports: int = 0
    delivered: int = 0
    undelivered: int = 0
    inbound: int = 0
    unmatched: int = 0

    def add(self, other: Tally) -> None:
        self.reports += other.reports
        self.delivered += other.delivered
        self.undelivered += other.undelivered
        self.inbound += other.inbound
        self.unmatched += other.unmatched


@dataclass(frozen=True)
class DeliveryTime:
    """How long a delivered message took from its send to its delivery report."""

    provider: str
    campaign_id: int
    ms: float


@dataclass
class Applied:
    """What a batch did. ``reports`` counts the reports applied (not the duplicates);
    ``delivered`` / ``undelivered`` the messages that reached that status (a message
    counts once per batch, at the status it ended at); ``unmatched`` the delivery reports
    kept without their message (yet)."""

    reports: int = 0
    duplicates: int = 0
    delivered: int = 0
    undelivered: int = 0
    inbound: int = 0
    unmatched: int = 0
    by_campaign: dict[int, Tally] = field(default_factory=dict)
    by_provider: dict[str, Tally] = field(default_factory=dict)
    delivery_times: list[DeliveryTime] = field(default_factory=list)
    # Numbers a STOP reply in this batch put on the opt-out list (for the confirmation).
    opted_out_by_reply: list[str] = field(default_factory=list)

    def provider(self, name: str) -> Tally:
        return self.by_provider.setdefault(name, Tally())

    def campaign(self, campaign_id: int) -> Tally:
        return self.by_campaign.setdefault(campaign_id, Tally())

    def add(self, other: Applied) -> None:
        """Count ``other`` (another batch) in as well."""
        self.reports += other.reports
        self.duplicates += other.duplicates
        self.delivered += other.delivered
        self.undelivered += other.undelivered
        self.inbound += other.inbound
        self.unmatched += other.unmatched
        for name, tally in other.by_provider.items():
            self.provider(name).add(tally)
        for campaign_id, tally in other.by_campaign.items():
            self.campaign(campaign_id).add(tally)
        self.delivery_times += other.delivery_times
        self.opted_out_by_reply += other.opted_out_by_reply


# --- helpers --------------------------------------------------------------------------------

def _clean(text: str, limit: int | None = None) -> str:
    """A provider's text as a column takes it: PostgreSQL refuses NUL characters, and
    neither database driver takes a lone surrogate (which JSON can carry); one such report
    must not block the batch it came in."""
    text = text.replace("\x00", "")
    if not text.isascii():
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text[:limit] if limit is not None else text


def _cleaned(report: Report) -> Report:
    """The report as the columns take it (see _clean, and the columns' lengths)."""
    return dataclasses.replace(
        report, provider=_clean(report.provider, 16), message_id=_clean(report.message_id, 128),
        provider_status=_clean(report.provider_status, 32), error=_clean(report.error),
        phone=_clean(report.phone, 20), to=_clean(report.to, 32), text=_clean(report.text),
        receipt=_clean(report.receipt, 32))


def _received(report: Report, now: datetime) -> datetime:
    return datetime.fromtimestamp(report.received_at, UTC) if report.received_at > 0 else now


def _fresh(session: Session, reports: Sequence[Report], applied: Applied) -> list[Report]:
    """The reports not applied before, in order, each receipt once."""
    seen: set[str] = set()
    unique = []
    for report in map(_cleaned, reports):
        if report.receipt in seen:
            applied.duplicates += 1
            continue
        seen.add(report.receipt)
        unique.append(report)
    stored: set[str] = set()
    receipts = [r.receipt for r in unique]
    for batch in batched(receipts):
        stored.update(session.scalars(select(DeliveryReport.receipt)
                                      .where(DeliveryReport.receipt.in_(batch))))
        stored.update(session.scalars(select(InboundMessage.receipt)
                                      .where(InboundMessage.receipt.in_(batch))))
    applied.duplicates += sum(1 for r in unique if r.receipt in stored)
    return [r for r in unique if r.receipt not in stored]


# --- delivery status --------------------------------------------------------------------------

@dataclass
class _Message:
    """A message a report is about, with its delivery status as this batch changes it."""

    id: int
    campaign_id: int
    provider: str
    delivery: str | None
    sent_at: datetime | None
    moved_to: DeliveryStatus | None = None
    error: str | None = None
    at: datetime | None = None


@dataclass(frozen=True)
class _Fact:
    """What one report says about its message's delivery."""

    status: DeliveryStatus | None
    error: str
    at: datetime


def _advance(message: _Message, fact: _Fact) -> None:
    """Apply one report to the message in memory, forward only."""
    if fact.status is None or not advances(message.delivery, fact.status):
        return  # intermediate, a duplicate, or behind what is known: changes nothing
    message.delivery = message.moved_to = fact.status
    message.error = fact.error or None if fact.status is DeliveryStatus.UNDELIVERED else None
    message.at = fact.at


def _lower_than(status: DeliveryStatus) -> list[Any]:
    # Bound one by one (not an "expanding" IN list, which executemany cannot take).
    return [literal(str(s), String()) for s in DeliveryStatus if advances(s, status)]


def _write_moves(session: Session, messages: Iterable[_Message], applied: Applied) -> None:
    """Store the statuses the batch moved messages to (one statement per status: an
    executemany on SQLite) and count them."""
    moved = sorted((m for m in messages if m.moved_to is not None), key=lambda m: m.id)
    for status in (DeliveryStatus.DELIVERED, DeliveryStatus.UNDELIVERED):
        rows = [m for m in moved if m.moved_to is status]
        if not rows:
            continue
        # Only from a lower status, in the statement itself: whatever another writer did
        # since this batch read the message, it never moves backwards.
        if session.get_bind().dialect.name == "postgresql":
            # One statement for all (the count trigger of migration 0007 runs per
            # statement there), the rows as arrays.
            moves = func.unnest(bindparam("m_ids", type_=ARRAY(Integer)),
                                bindparam("m_errors", type_=ARRAY(Text)),
                                bindparam("m_ats", type_=ARRAY(UTCDateTime()))
                                ).table_valued("id", "error", "at").render_derived()
            session.execute(
                update(_MESSAGES).where(_MESSAGES.c.id == moves.c.id)
                .where(_MESSAGES.c.delivery.in_(_lower_than(status)))
                .values(delivery=str(status), delivery_error=moves.c.error,
                        delivery_at=moves.c.at, report_poll_at=None),
                {"m_ids": [m.id for m in rows], "m_errors": [m.error for m in rows],
                 "m_ats": [m.at for m in rows]})
        else:
            stmt = (update(_MESSAGES).where(_MESSAGES.c.id == bindparam("m_id"))
                    .where(_MESSAGES.c.delivery.in_(_lower_than(status)))
                    .values(delivery=str(status), delivery_error=bindparam("m_error"),
                            delivery_at=bindparam("m_at", type_=UTCDateTime()),
                            report_poll_at=None))
            session.execute(stmt, [{"m_id": m.id, "m_error": m.error, "m_at": m.at}
                                   for m in rows])
        for m in rows:
            _count_move(applied, m, status)


def _count_move(applied: Applied, message: _Message, status: DeliveryStatus) -> None:
    provider, campaign = applied.provider(message.provider), applied.campaign(
        message.campaign_id)
    if status is DeliveryStatus.DELIVERED:
        applied.delivered += 1
        provider.delivered += 1
        campaign.delivered += 1
        if message.sent_at is not None and message.at is not None:
            ms = max(0.0, (message.at - message.sent_at).total_seconds() * 1000)
            applied.delivery_times.append(DeliveryTime(message.provider,
                                                       message.campaign_id, ms))
    else:
        applied.undelivered += 1
        provider.undelivered += 1
        campaign.undelivered += 1


def _messages_by_provider_id(session: Session, keys: set[tuple[str, str]]
                             ) -> dict[tuple[str, str], _Message]:
    """The messages these (provider, provider message id) pairs name."""
    found: dict[tuple[str, str], _Message] = {}
    ids = sorted({pid for _, pid in keys if pid})
    for batch in batched(ids):
        rows = session.execute(
            select(OutgoingMessage.id, OutgoingMessage.campaign_id, OutgoingMessage.provider,
                   OutgoingMessage.provider_message_id, OutgoingMessage.delivery,
                   OutgoingMessage.sent_at)
            .where(OutgoingMessage.provider_message_id.in_(batch))
            .order_by(OutgoingMessage.id))
        for id_, campaign_id, provider, pid, delivery, sent_at in rows:
            key = (provider or "", pid or "")
            if key in keys:  # the same id from another provider is another message
                found[key] = _Message(id_, campaign_id, key[0], delivery, sent_at)
    return found


def _apply_statuses(session: Session, reports: list[Report], now: datetime,
                    applied: Applied) -> None:
    if not reports:
        return
    messages = _messages_by_provider_id(session, {(r.provider, r.message_id)
                                                  for r in reports})
    rows = []
    for report in reports:
        message = messages.get((report.provider, report.message_id))
        rows.append({"receipt": report.receipt, "provider": report.provider,
                     "provider_message_id": report.message_id,
                     "message_id": message.id if message else None,
                     "status": str(report.status) if report.status else None,
                     "provider_status": report.provider_status, "error": report.error,
                     "received_at": _received(report, now)})
    inserted: set[str] = set()
    for batch in batched(rows):
        stmt = insert_ignoring(session, DeliveryReport, "receipt").returning(
            DeliveryReport.receipt)
        inserted.update(session.scalars(stmt, list(batch)))
    for report in reports:
        if report.receipt not in inserted:
            applied.duplicates += 1  # stored by a concurrent applier meanwhile
            continue
        applied.reports += 1
        tally = applied.provider(report.provider)
        tally.reports += 1
        message = messages.get((report.provider, report.message_id))
        if message is None:
            applied.unmatched += 1
            tally.unmatched += 1
            continue
        _advance(message, _Fact(report.status, report.error or report.provider_status,
                                _received(report, now)))
    _write_moves(session, messages.values(), applied)


def rematch_unmatched(session: Session, within_s: float = 3600, *,
                      into: Applied | None = None, limit: int = 5000) -> int:
    """Apply the unmatched delivery reports younger than ``within_s`` whose message now
    exists (their report came before the send's commit), oldest first, by the same
    forward-only rule; how many were matched. ``into`` gathers the counts (for metrics)."""
    applied = into if into is not None else Applied()
    since = utcnow() - timedelta(seconds=within_s)
    rows = session.execute(
        select(DeliveryReport.id, DeliveryReport.status, DeliveryReport.error,
               DeliveryReport.provider_status, DeliveryReport.received_at,
               OutgoingMessage.id, OutgoingMessage.campaign_id, OutgoingMessage.provider,
               OutgoingMessage.delivery, OutgoingMessage.sent_at)
        .join(OutgoingMessage,
              (OutgoingMessage.provider_message_id == DeliveryReport.provider_message_id)
              & (OutgoingMessage.provider == DeliveryReport.provider))
        .where(DeliveryReport.message_id.is_(None))
        .where(DeliveryReport.received_at >= since)
        .order_by(DeliveryReport.received_at, DeliveryReport.id, OutgoingMessage.id)
        .limit(limit)).all()
    messages: dict[int, _Message] = {}
    matched: dict[int, int] = {}  # report id -> message id
    for (report_id, status, error, provider_status, received_at, message_id, campaign_id,
         provider, delivery, sent_at) in rows:
        if report_id in matched:
            continue  # two messages with one provider id: the first one takes it
        message = messages.setdefault(message_id, _Message(message_id, campaign_id,
                                                           provider or "", delivery, sent_at))
        matched[report_id] = message_id
        _advance(message, _Fact(DeliveryStatus(status) if status else None,
                                error or provider_status, received_at))
    if not matched:
        return 0
    session.execute(
        update(_REPORTS).where(_REPORTS.c.id == bindparam("r_id"))
        .where(_REPORTS.c.message_id.is_(None)).values(message_id=bindparam("r_message")),
        [{"r_id": r, "r_message": m} for r, m in sorted(matched.items())])
    _write_moves(session, messages.values(), applied)
    return len(matched)


def count_unmatched(session: Session) -> int:
    """Delivery reports kept without their message: unknown ids (or not matched yet).
    Cheap: message_id is indexed, and prune_unmatched bounds how many there are."""
    return session.scalar(select(func.count()).select_from(DeliveryReport)
                          .where(DeliveryReport.message_id.is_(None))) or 0


def prune_unmatched(session: Session, older_than_s: float, now: datetime | None = None,
                    limit: int = 5000) -> int:
    """Delete up to ``limit`` unmatched delivery reports received more than
    ``older_than_s`` ago (whose message never came), oldest first; how many."""
    cutoff = (now or utcnow()) - timedelta(seconds=older_than_s)
    old = (select(DeliveryReport.id).where(DeliveryReport.message_id.is_(None))
           .where(DeliveryReport.received_at < cutoff)
           .order_by(DeliveryReport.received_at).limit(limit))
    result = session.execute(delete(DeliveryReport).where(DeliveryReport.id.in_(old))
                             .execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)


def expire_overdue(session: Session, expiry_s: float, now: datetime | None = None,
                   limit: int = 5000) -> int:
    """Messages awaiting their report for more than ``expiry_s`` since their send become
    'expired' (unknown: a final report that comes later still wins); how many."""
    now = now or utcnow()
    overdue = (select(OutgoingMessage.id)
               .where(OutgoingMessage.delivery == DeliveryStatus.AWAITING_REPORT)
               .where(OutgoingMessage.sent_at < now - timedelta(seconds=expiry_s))
               .limit(limit))
    result = session.execute(
        update(OutgoingMessage).where(OutgoingMessage.id.in_(overdue))
        .where(OutgoingMessage.delivery == DeliveryStatus.AWAITING_REPORT)
        .values(delivery=str(DeliveryStatus.EXPIRED), delivery_at=now, report_poll_at=None)
        .execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)


# --- replies and opt-out notices --------------------------------------------------------------

def _contacts(session: Session, phones: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for batch in batched(phones):
        found.update(dict(session.execute(
            select(Contact.phone, Contact.id).where(Contact.phone.in_(batch))).all()))
    return found


def _last_campaigns(session: Session, phones: list[str]) -> dict[str, int]:
    """Per number, the campaign that last sent to it (a reply answers that one)."""
    found: dict[str, int] = {}
    for batch in batched(phones):
        found.update(dict(session.execute(
            select(OutgoingMessage.phone, func.max(OutgoingMessage.campaign_id))
            .where(OutgoingMessage.phone.in_(batch))
            .where(OutgoingMessage.sent_at.is_not(None))
            .group_by(OutgoingMessage.phone)).all()))
    return found


def _known_refs(session: Session, reports: list[Report]) -> set[tuple[str, str, str]]:
    """(provider, provider id, phone) of these replies stored already: the same reply
    posted twice by the provider comes with two receipts but one provider id."""
    with_ref = [r for r in reports if r.message_id]
    phones = sorted({r.phone for r in with_ref})
    refs = {r.message_id for r in with_ref}
    found: set[tuple[str, str, str]] = set()
    for batch in batched(phones):  # by phone: its index finds the few rows to compare
        rows = session.execute(select(InboundMessage.provider, InboundMessage.provider_ref,
                                      InboundMessage.phone)
                               .where(InboundMessage.phone.in_(batch))
                               .where(InboundMessage.provider_ref != ""))
        found.update((p, ref, phone) for p, ref, phone in rows if ref in refs)
    return found


def _inbox_row(report: Report, keyword: ReplyKeyword | None, now: datetime,
               contacts: dict[str, int], campaigns: dict[str, int]) -> dict[str, Any]:
    notice = report.kind is ReportKind.OPTOUT
    return {"receipt": report.receipt, "provider": report.provider,
            "provider_ref": report.message_id, "phone": report.phone, "to": report.to,
            "text": OPTOUT_NOTICE_TEXT if notice else report.text,
            "received_at": _received(report, now), "contact_id": contacts.get(report.phone),
            "campaign_id": campaigns.get(report.phone),
            "keyword": str(keyword) if keyword else None}


def _apply_from_members(session: Session, reports: list[Report], now: datetime,
                        optout_keywords: tuple[str, ...], optin_keywords: tuple[str, ...],
                        applied: Applied) -> None:
    """Replies and provider opt-out notices: stored in the inbox (one multi-row INSERT),
    then applied to the opt-out list one by one in arrival order."""
    if not reports:
        return
    phones = sorted({r.phone for r in reports})
    contacts = _contacts(session, phones)
    campaigns = _last_campaigns(session, phones)
    known = _known_refs(session, [r for r in reports if r.kind is ReportKind.INBOUND])
    rows, keep = [], []
    for report in reports:
        if report.kind is ReportKind.OPTOUT:
            keyword: ReplyKeyword | None = ReplyKeyword.OPT_OUT
        else:
            key = (report.provider, report.message_id, report.phone)
            if report.message_id and key in known:
                applied.duplicates += 1
                continue
            known.add(key)
            keyword = reply_keyword(report.text, optout_keywords, optin_keywords)
        rows.append(_inbox_row(report, keyword, now, contacts, campaigns))
        keep.append((report, keyword))
    inserted: set[str] = set()
    for batch in batched(rows):
        stmt = insert_ignoring(session, InboundMessage, "receipt").returning(
            InboundMessage.receipt)
        inserted.update(session.scalars(stmt, list(batch)))
    for report, keyword in keep:  # in order: "STOP" then "START" ends listed off
        if report.receipt not in inserted:
            applied.duplicates += 1
            continue
        applied.reports += 1
        tally = applied.provider(report.provider)
        tally.reports += 1
        at = _received(report, now)
        if report.kind is ReportKind.OPTOUT:
            if report.phone:
                list_number(session, report.phone,
                            reason=f"opt-out notice from {report.provider}",
                            source=OptSource.PROVIDER, at=at)
            continue
        applied.inbound += 1
        tally.inbound += 1
        if keyword is not None and report.phone:
            _apply_keyword(session, report, keyword, at, applied)


def _apply_keyword(session: Session, report: Report, keyword: ReplyKeyword, at: datetime,
                   applied: Applied) -> None:
    phone = report.phone
    reason = f"replied {normalise_keyword(report.text)}"
    if keyword is ReplyKeyword.OPT_OUT:
        if list_number(session, phone, reason=reason, source=OptSource.REPLY, at=at):
            applied.opted_out_by_reply.append(phone)
    elif opt_in_by_reply(session, phone, reason=reason, at=at) is not None:
        # Back in within the same batch: no "you are opted out" confirmation then.
        while phone in applied.opted_out_by_reply:
            applied.opted_out_by_reply.remove(phone)


def apply_reports(session: Session, reports: Sequence[Report], *,
                  optout_keywords: tuple[str, ...], optin_keywords: tuple[str, ...]
                  ) -> Applied:
    """Apply a batch of reports in the caller's transaction (see the module's notes);
    what it did."""
    applied = Applied()
    now = utcnow()
    fresh = _fresh(session, reports, applied)
    _apply_statuses(session, [r for r in fresh if r.kind is ReportKind.STATUS], now, applied)
    _apply_from_members(session, [r for r in fresh if r.kind is not ReportKind.STATUS], now,
                        optout_keywords, optin_keywords, applied)
    return applied
