"""Contacts for a table the operator scrolls, searches, sorts and edits: one page at a time,
filtered and sorted in SQL, so 100,000 contacts cost no more than 200."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine.store import table_query
from engine.store.audience_query import opted_out
from engine.store.contacts_import import parse_contact
from engine.store.models import Contact, ContactTag, utcnow
from engine.store.optouts import is_opted_out

SORT_COLUMNS: dict[str, Any] = {
    "id": Contact.id,
    "name": Contact.name,
    "phone": Contact.phone,
    "pledge": Contact.pledge_cents,
    "paid_amount": Contact.paid_cents,
    "balance": Contact.pledge_cents - Contact.paid_cents,
    "due_date": Contact.due_date,
}


class ContactEditError(ValueError):
    """An edit that cannot be saved; the message says what to change."""


@dataclass(frozen=True)
class ContactQuery:
    search: str = ""
    tag: str | None = None
    sort: str = "name"
    descending: bool = False


@dataclass(frozen=True)
class ContactView:
    id: int
    name: str
    phone: str
    pledge_cents: int
    paid_cents: int
    due_date: date
    tags: tuple[str, ...]
    opted_out: bool = False  # the number is on the opt-out list: campaigns leave it out

    @property
    def balance_cents(self) -> int:
        return max(self.pledge_cents - self.paid_cents, 0)


def _where(query: ContactQuery) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    pattern = table_query.like_pattern(query.search)
    if pattern:
        escape = table_query.LIKE_ESCAPE
        conditions.append(or_(Contact.name.ilike(pattern, escape=escape),
                              Contact.phone.like(pattern, escape=escape)))
    if query.tag:
        tagged = select(ContactTag.contact_id).where(ContactTag.tag == query.tag.lower())
        conditions.append(Contact.id.in_(tagged))
    return conditions


def count_matching(session: Session, query: ContactQuery) -> int:
    stmt = select(func.count(Contact.id)).where(*_where(query))
    return session.scalar(stmt) or 0


def _order(query: ContactQuery) -> list[Any]:
    column = SORT_COLUMNS.get(query.sort, Contact.name)
    return table_query.stable_order(column, query.descending, Contact.id)


def contact_page(session: Session, query: ContactQuery, offset: int,
                 limit: int) -> list[ContactView]:
    order = _order(query)
    rows = session.execute(
        select(Contact.id, Contact.name, Contact.phone, Contact.pledge_cents,
               Contact.paid_cents, Contact.due_date, opted_out())
        .where(*_where(query)).order_by(*order).offset(offset).limit(limit)).all()
    tags: dict[int, list[str]] = {}
    if rows:
        for contact_id, tag in session.execute(
                select(ContactTag.contact_id, ContactTag.tag)
                .where(ContactTag.contact_id.in_([r[0] for r in rows]))
                .order_by(ContactTag.tag)):
            tags.setdefault(contact_id, []).append(tag)
    return [ContactView(id_, name, phone, pledge, paid, due, tuple(tags.get(id_, ())),
                        bool(listed))
            for id_, name, phone, pledge, paid, due, listed in rows]


def ids_in_rows(session: Session, query: ContactQuery,
                rows: Sequence[tuple[int, int]]) -> list[int]:
    """The ids of the contacts at row ranges ``(first, last)`` of the table as ``query``
    shows it: a selection of rows that were never loaded still names its contacts."""
    return table_query.ids_in_rows(
        session, select(Contact.id).where(*_where(query)).order_by(*_order(query)), rows)


def update_contact(session: Session, contact_id: int, fields: dict[str, str],
                   region: str) -> ContactView:
    """Validate with the import's rules and save; ContactEditError says what is wrong."""
    try:
        row = parse_contact(0, fields, region)
    except ValueError as exc:
        raise ContactEditError(str(exc)) from None
    contact = session.get(Contact, contact_id)
    if contact is None:
        raise ContactEditError(f"contact {contact_id} no longer exists (deleted meanwhile?)")
    contact.name, contact.phone = row.name, row.phone
    contact.pledge_cents, contact.paid_cents = row.pledge_cents, row.paid_cents
    contact.due_date = row.due_date
    contact.updated_at = utcnow()
    try:
        session.flush()
    except IntegrityError:
        raise ContactEditError(f"another contact already has the phone {row.phone}") from None
    session.execute(delete(ContactTag).where(ContactTag.contact_id == contact_id))
    session.add_all(ContactTag(contact_id=contact_id, tag=t) for t in row.tags)
    return ContactView(contact.id, row.name, row.phone, row.pledge_cents, row.paid_cents,
                       row.due_date, row.tags, is_opted_out(session, row.phone))


def delete_contacts(session: Session, ids: Sequence[int]) -> int:
    """Delete contacts (their tags go with them); messages already sent keep their copy."""
    result = session.execute(delete(Contact).where(Contact.id.in_(list(ids))))
    return int(getattr(result, "rowcount", 0) or 0)
