"""The reply inbox: messages members sent us (replies, STOP, START), newest first, with who
sent them and what campaign they answer, searched and paged in SQL; and the operator's
"handled" mark.

The rows are written by the report applier (engine.store.delivery_reports); this module
only reads them and keeps the mark.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import CursorResult, Select, func, or_, select, update
from sqlalchemy.orm import Session

from engine.store import table_query
from engine.store.models import Campaign, Contact, InboundMessage, utcnow

_SelectT = TypeVar("_SelectT", bound=Select[*tuple[Any, ...]])


@dataclass(frozen=True)
class InboxEntry:
    id: int
    received_at: datetime
    phone: str  # the member's number, E.164
    contact_id: int | None  # None: the number is no contact's
    contact_name: str | None
    campaign_id: int | None  # the campaign last sent to that number when it came
    campaign_name: str | None
    text: str
    keyword: str | None  # engine.domain.delivery.ReplyKeyword: optout / optin, if it was one
    handled_at: datetime | None
    provider: str


def _filtered(stmt: _SelectT, since: datetime | None, search: str | None,
              unhandled_only: bool) -> _SelectT:
    if since is not None:
        stmt = stmt.where(InboundMessage.received_at >= since)  # its index
    if unhandled_only:
        stmt = stmt.where(InboundMessage.handled_at.is_(None))  # its index
    pattern = table_query.like_pattern(search or "")
    if pattern:
        escape = table_query.LIKE_ESCAPE
        found = [table_query.contains_text(InboundMessage.text, pattern),
                 InboundMessage.phone.like(pattern, escape=escape),
                 table_query.contains_text(Contact.name, pattern)]
        digits = "".join(c for c in (search or "") if c.isdigit())
        if digits and not (search or "").strip().strip("+0123456789 -()."):
            # A number as the operator writes it locally ("0712 345") finds its E.164 form.
            found.append(InboundMessage.phone.contains(digits.lstrip("0") or digits))
        stmt = stmt.where(or_(*found))
    return stmt


def _joined(stmt: _SelectT) -> _SelectT:
    return stmt.select_from(InboundMessage).outerjoin(
        Contact, Contact.id == InboundMessage.contact_id)


def _entries() -> Select[*tuple[Any, ...]]:
    """The columns of an InboxEntry, with its contact's and campaign's names."""
    return _joined(select(
        InboundMessage.id, InboundMessage.received_at, InboundMessage.phone,
        InboundMessage.contact_id, Contact.name, InboundMessage.campaign_id, Campaign.name,
        InboundMessage.text, InboundMessage.keyword, InboundMessage.handled_at,
        InboundMessage.provider)).outerjoin(Campaign, Campaign.id == InboundMessage.campaign_id)


def list_inbox(session: Session, *, since: datetime | None = None, search: str | None = None,
               unhandled_only: bool = False, offset: int = 0,
               limit: int = 200) -> list[InboxEntry]:
    """Received messages, newest first (walking the received_at index); ``search`` finds
    part of the text, the number or the contact's name, in any case, as typed (``%`` and
    ``_`` are not wildcards)."""
    stmt = _filtered(_entries(), since, search, unhandled_only)
    stmt = stmt.order_by(*table_query.stable_order(InboundMessage.received_at, True,
                                                   InboundMessage.id))
    return [InboxEntry(*row) for row in session.execute(stmt.offset(offset).limit(limit))]


def count_inbox(session: Session, *, since: datetime | None = None, search: str | None = None,
                unhandled_only: bool = False) -> int:
    stmt = _joined(select(func.count(InboundMessage.id)))
    return session.scalar(_filtered(stmt, since, search, unhandled_only)) or 0


def get_inbound(session: Session, inbound_id: int) -> InboxEntry | None:
    """One received message, as the inbox lists it; None if there is no such id."""
    row = session.execute(_entries().where(InboundMessage.id == inbound_id)).one_or_none()
    return InboxEntry(*row) if row else None


def mark_handled(session: Session, ids: Iterable[int], handled: bool = True) -> int:
    """Mark the messages handled (or, ``handled=False``, not handled again); how many
    changed. One already handled keeps the time it was first handled."""
    wanted = sorted({int(i) for i in ids})
    if not wanted:
        return 0
    stmt = update(InboundMessage).where(InboundMessage.id.in_(wanted))
    if handled:
        stmt = stmt.where(InboundMessage.handled_at.is_(None)).values(handled_at=utcnow())
    else:
        stmt = stmt.where(InboundMessage.handled_at.is_not(None)).values(handled_at=None)
    result = session.execute(stmt)
    assert isinstance(result, CursorResult)
    return int(result.rowcount or 0)


def inbox_dict(entry: InboxEntry) -> dict[str, Any]:
    """JSON-safe: times in ISO 8601."""
    return {"id": entry.id, "received_at": entry.received_at.isoformat(),
            "phone": entry.phone, "contact_id": entry.contact_id,
            "contact_name": entry.contact_name, "campaign_id": entry.campaign_id,
            "campaign_name": entry.campaign_name, "text": entry.text,
            "keyword": entry.keyword,
            "handled_at": entry.handled_at.isoformat() if entry.handled_at else None,
            "provider": entry.provider}
