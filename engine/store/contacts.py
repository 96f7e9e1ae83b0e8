"""Contact queries shared by the CLI, the console and campaign planning."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, selectinload

from engine.domain.personalize import Recipient
from engine.store.models import Contact, ContactTag

_SelectT = TypeVar("_SelectT", bound=Select[*tuple[Any, ...]])


def _filtered(stmt: _SelectT, tag: str | None,
              ids: Sequence[int] | None = None) -> _SelectT:
    if tag:
        tagged = select(ContactTag.contact_id).where(ContactTag.tag == tag.strip().lower())
        stmt = stmt.where(Contact.id.in_(tagged))
    if ids is not None:
        stmt = stmt.where(Contact.id.in_(list(ids)))
    return stmt


def count_contacts(session: Session, *, tag: str | None = None,
                   ids: Sequence[int] | None = None) -> int:
    return session.scalar(_filtered(select(func.count(Contact.id)), tag, ids)) or 0


def list_contacts(session: Session, *, tag: str | None = None, limit: int | None = None,
                  offset: int = 0) -> list[Contact]:
    stmt = _filtered(select(Contact), tag).options(selectinload(Contact.tags))
    stmt = stmt.order_by(Contact.id).offset(offset).limit(limit)
    return list(session.scalars(stmt))


def iter_recipients(session: Session, *, tag: str | None = None,
                    ids: Sequence[int] | None = None, offset: int = 0, limit: int | None = None,
                    batch: int = 1000) -> Iterator[tuple[int, str, Recipient]]:
    """``(contact id, phone, values)`` for every recipient (all, by tag, or these contact
    ids), streamed in id order."""
    stmt = _filtered(
        select(Contact.id, Contact.phone, Contact.name, Contact.pledge_cents,
               Contact.paid_cents, Contact.due_date), tag, ids,
    ).order_by(Contact.id).offset(offset).limit(limit).execution_options(yield_per=batch)
    for id_, phone, name, pledge, paid, due in session.execute(stmt):
        yield id_, phone, Recipient(name, pledge, paid, due)


def all_tags(session: Session) -> list[tuple[str, int]]:
    """Every tag with its number of contacts, alphabetically."""
    stmt = (select(ContactTag.tag, func.count()).group_by(ContactTag.tag)
            .order_by(ContactTag.tag))
    return [(tag, count) for tag, count in session.execute(stmt)]


def contact_dict(contact: Contact) -> dict[str, Any]:
    return {
        "id": contact.id,
        "name": contact.name,
        "phone": contact.phone,
        "pledge": cents_text(contact.pledge_cents),
        "paid_amount": cents_text(contact.paid_cents),
        "due_date": contact.due_date.isoformat(),
        "tags": contact.tag_names,
    }


def cents_text(cents: int) -> str:
    """Exact machine-readable amount: ``1250050`` -> ``"12500.50"``."""
    return f"{cents // 100}.{cents % 100:02d}"
