"""An audience (engine.domain.audience) evaluated in the database: who it matches, who of
those the opt-out list removes, and the messages of the rest, streamed in id order.

Every condition is SQL, so counting 100,000 contacts reads no row into Python
(benchmarks/audience_count.py). "Today" is passed in: it is the campaign's own, in the time
zone it recorded, not this machine's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, TypeVar

from sqlalchemy import Boolean, ColumnElement, Select, bindparam, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from engine.domain.audience import Audience
from engine.domain.delivery import DeliveryStatus
from engine.domain.personalize import Recipient, Template
from engine.domain.planning import PlanError
from engine.domain.rendering import RenderedMessage, render_messages
from engine.store.models import Contact, ContactTag, OptOut, OutgoingMessage

_SelectT = TypeVar("_SelectT", bound=Select[*tuple[Any, ...]])


class likely(FunctionElement[bool]):
    """A condition most rows may meet, such as "overdue". SQLite's planner (built without
    STAT4 statistics) guesses that an open range matches a quarter of the rows, so it walks
    the due_date index for what is often half the table, with a row lookup each: 3 to 6
    times slower than the scan it takes when told. PostgreSQL estimates from its own
    histograms, so elsewhere the condition is written as it is."""

    type = Boolean()
    name = "likely"
    inherit_cache = True


@compiles(likely)
def _condition(element: likely, compiler: SQLCompiler, **kw: Any) -> str:
    return f"({compiler.process(element.clauses, **kw)})"


@compiles(likely, "sqlite")
def _sqlite_likely(element: likely, compiler: SQLCompiler, **kw: Any) -> str:
    return f"likely({compiler.process(element.clauses, **kw)})"


def opted_out() -> ColumnElement[bool]:
    """True for a contact whose number is on the opt-out list."""
    return select(OptOut.phone).where(OptOut.phone == Contact.phone).exists()


def matching(stmt: _SelectT, audience: Audience, today: date) -> _SelectT:
    """``stmt`` (a select over contacts) narrowed to the audience, opt-outs included."""
    if audience.undelivered_of is not None:
        # Read through the (campaign_id, delivery) index. A message whose contact was
        # deleted since (contact_id NULL) has no one to send to again.
        stmt = stmt.where(Contact.id.in_(
            select(OutgoingMessage.contact_id)
            .where(OutgoingMessage.campaign_id == audience.undelivered_of,
                   OutgoingMessage.delivery == DeliveryStatus.UNDELIVERED,
                   OutgoingMessage.contact_id.is_not(None))))
    if audience.ids is not None:
        # Written into the SQL, not bound one parameter each: a Compose selection can be
        # every contact, beyond what SQLite (32,766) and PostgreSQL (65,535) bind. They are
        # ints (Audience makes them so), so nothing can be injected.
        stmt = stmt.where(Contact.id.in_(bindparam("audience_ids", list(audience.ids),
                                                   expanding=True, literal_execute=True)))
    if audience.tags:
        stmt = stmt.where(Contact.id.in_(
            select(ContactTag.contact_id).where(ContactTag.tag.in_(audience.tags))))
    if audience.exclude_tags:
        stmt = stmt.where(Contact.id.not_in(
            select(ContactTag.contact_id).where(ContactTag.tag.in_(audience.exclude_tags))))
    balance = Contact.pledge_cents - Contact.paid_cents
    if audience.owing:
        stmt = stmt.where(balance > 0)
    if audience.min_balance_cents is not None:
        stmt = stmt.where(balance >= audience.min_balance_cents)
    if audience.due_within_days is not None:
        stmt = stmt.where(Contact.due_date >= today,
                          Contact.due_date <= today + timedelta(days=audience.due_within_days))
    if audience.overdue:
        stmt = stmt.where(likely(Contact.due_date < today))
    return stmt


@dataclass(frozen=True)
class AudienceCount:
    matched: int  # contacts the filter selects
    suppressed: int  # of those, on the opt-out list: they get no message

    @property
    def recipients(self) -> int:
        return self.matched - self.suppressed


def count_audience(session: Session, audience: Audience, today: date) -> AudienceCount:
    """How many contacts the audience matches and how many of them opted out, in one
    query."""
    stmt = matching(select(func.count(Contact.id), func.count(OptOut.phone))
                    .select_from(Contact).outerjoin(OptOut, OptOut.phone == Contact.phone),
                    audience, today)
    matched, suppressed = session.execute(stmt).one()
    return AudienceCount(int(matched or 0), int(suppressed or 0))


def all_opted_out(suppressed: int) -> PlanError:
    """The refusal of a campaign whose every matched contact opted out."""
    return PlanError(f"all {suppressed:,} contact(s) the filter matches have opted out: "
                     "nobody would receive it. See 'relaydesk optouts list'.")


def iter_audience(session: Session, audience: Audience, today: date, *, offset: int = 0,
                  limit: int | None = None, batch: int | None = 1000
                  ) -> Iterator[tuple[int, str, Recipient]]:
    """``(contact id, phone, values)`` of every recipient (matched and not opted out), in
    id order, from the ``offset``-th, at most ``limit``; read ``batch`` rows at a time, or,
    with None, all at once: PostgreSQL then sends the whole result with the answer, and
    the connection is free for other statements while the rows are read."""
    stmt = matching(select(Contact.id, Contact.phone, Contact.name, Contact.pledge_cents,
                           Contact.paid_cents, Contact.due_date), audience, today)
    stmt = stmt.where(~opted_out()).order_by(Contact.id).offset(offset).limit(limit)
    if batch is not None:
        stmt = stmt.execution_options(yield_per=batch)
    # Plain rows through the session's connection: the ORM's row handling would cost more
    # than rendering the message. Closed as soon as the caller stops reading (one preview
    # reads a single row): PostgreSQL streams them through a server-side cursor.
    with session.connection().execute(stmt) as result:
        for rows in result.partitions(batch or 1000):  # row by row costs a call each
            for id_, phone, name, pledge, paid, due in rows:
                yield id_, phone, Recipient(name, pledge, paid, due)


def render_audience(session: Session, template: Template, audience: Audience, today: date,
                    currency_format: str, *, offset: int = 0, limit: int | None = None,
                    batch: int | None = 1000) -> Iterator[RenderedMessage]:
    """The messages of the audience's recipients, streamed: what a campaign sends (read as
    iter_audience reads them)."""
    found = iter_audience(session, audience, today, offset=offset, limit=limit, batch=batch)
    return render_messages(template, found, today=today, currency_format=currency_format,
                           first_index=offset)
