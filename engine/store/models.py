"""The database tables. The outgoing_messages row is the source of truth for delivery state.

Amounts are whole minor units (cents) in BIGINT columns: exact, and the same on SQLite and
PostgreSQL (SQLite has no decimal type). Timestamps are stored as naive UTC and read back
as aware UTC, so both databases behave alike.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from engine.domain.delivery import DeliveryStatus

# Deterministic constraint names, so Alembic migrations work the same on every database.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in Python, naive UTC in the database."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; use an aware datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class MessageStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"  # an attempt failed; another is due
    DEAD = "dead"  # every attempt spent, or a permanent error: see failed_jobs
    CANCELLED = "cancelled"
    SUPPRESSED = "suppressed"  # its number opted out before it was sent: never sent


# A message in one of these will not change again (engine.store.retention: "settled"),
# its updated_at being when it got there ...
ENDED_STATUSES = (MessageStatus.CANCELLED, MessageStatus.SUPPRESSED, MessageStatus.DEAD)
# ... and a sent one whose delivery status is one of these, its delivery_at.
FINAL_DELIVERIES = (DeliveryStatus.DELIVERED, DeliveryStatus.UNDELIVERED, DeliveryStatus.EXPIRED)


def _listed(column: str, values: tuple[StrEnum, ...]) -> str:
    """``column IN ('a', 'b')`` written out: a partial index's condition, which a query
    must repeat word for word (not as bound parameters) for SQLite to use the index."""
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


ENDED_CONDITION = _listed("status", ENDED_STATUSES)
REPORTED_CONDITION = _listed("delivery", FINAL_DELIVERIES)
UNREPORTED_CONDITION = "status = 'sent' AND delivery IS NULL"


def _set_only(*columns: str) -> Index:
    """An index of the rows whose last column is set: ``WHERE column IS NOT NULL``."""
    condition = text(f"{columns[-1]} IS NOT NULL")
    return Index(None, *columns, sqlite_where=condition, postgresql_where=condition)


class CampaignStatus(StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"  # no messages yet: rendered when its time comes
    QUEUED = "queued"
    SENDING = "sending"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class Contact(Base):
    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    phone: Mapped[str] = mapped_column(String(20), unique=True)  # E.164
    pledge_cents: Mapped[int] = mapped_column(BigInteger)
    paid_cents: Mapped[int] = mapped_column(BigInteger)
    due_date: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    tags: Mapped[list[ContactTag]] = relationship(
        back_populates="contact", cascade="all, delete-orphan", passive_deletes=True,
        order_by="ContactTag.tag",
    )

    __table_args__ = (Index(None, "name"), Index(None, "due_date"))

    @property
    def tag_names(self) -> list[str]:
        return [t.tag for t in self.tags]


class ContactTag(Base):
    __tablename__ = "contact_tags"

    contact_id: Mapped[int] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)

    contact: Mapped[Contact] = relationship(back_populates="tags")


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    template: Mapped[str] = mapped_column(Text)
    tag_filter: Mapped[str | None] = mapped_column(String(64))  # before audience existed
    # The engine.domain.audience.Audience it was sent with, as JSON (None: everyone).
    audience: Mapped[str | None] = mapped_column(Text)
    # Its send window, recorded when it is created (engine.domain.send_window.SendWindow):
    # every worker judges the campaign by these, whatever its own settings.
    timezone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")
    quiet_hours: Mapped[str | None] = mapped_column(String(16))
    # When a scheduled campaign becomes due; kept after it starts, for the record.
    scheduled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Contacts the audience matched whose numbers were on the opt-out list when it was
    # planned; they have no message row.
    suppressed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default=CampaignStatus.DRAFT, index=True)
    route: Mapped[str] = mapped_column(String(16))
    queue: Mapped[str] = mapped_column(String(32))
    recipients: Mapped[int] = mapped_column(Integer, default=0)
    segments: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    pause_reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index(None, "status", "scheduled_at"),)


class OutgoingMessage(Base):
    """One recipient of one campaign: the unit of delivery state and of idempotency."""

    __tablename__ = "outgoing_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    # Kept when the contact is deleted later: the delivery history must survive.
    contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="SET NULL")
    )
    phone: Mapped[str] = mapped_column(String(20), index=True)
    body: Mapped[str] = mapped_column(Text)
    encoding: Mapped[str] = mapped_column(String(8))
    segments: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(12), default=MessageStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Set when a task takes the message for sending; a 'sending' row whose claim is older
    # than the lease belongs to a worker that died, and is taken over.
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_error: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)
    provider_message_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Who took it (the provider's name): reports are matched by (provider, provider id).
    provider: Mapped[str | None] = mapped_column(String(16))
    # engine.domain.delivery.DeliveryStatus once sent (awaiting_report, delivered,
    # undelivered, expired); NULL before. Only moves forward (delivery.advances).
    delivery: Mapped[str | None] = mapped_column(String(16))
    delivery_error: Mapped[str | None] = mapped_column(Text)  # the provider's reason or code
    # When the final report arrived (or the message expired).
    delivery_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Twilio only: when its status is next fetched (NULL: not polled), and how often it was.
    report_poll_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    report_polls: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The one message sent to a number that just opted out, confirming it: the opt-out
    # list, which stops every other message at the claim, lets this one through.
    opt_out_notice: Mapped[bool] = mapped_column(Boolean, default=False,
                                                 server_default="0")

    __table_args__ = (
        UniqueConstraint("campaign_id", "contact_id"),
        Index(None, "campaign_id", "status"),
        Index(None, "status", "claimed_at"),  # also serves status alone
        # Partial: a queued message has none of these yet, so queueing a campaign writes
        # nothing to them (migration 0006); the queries ask for a value, which implies it.
        _set_only("provider_message_id"),
        _set_only("campaign_id", "delivery"),
        _set_only("delivery", "sent_at"),
        _set_only("report_poll_at"),
        # Sent before delivery status existed (0004): retention finds them by sent_at.
        Index("ix_outgoing_messages_sent_unreported", "status", "sent_at", "id",
              sqlite_where=text(UNREPORTED_CONDITION),
              postgresql_where=text(UNREPORTED_CONDITION)),
        # Retention finds settled messages by when they settled. Partial: only settled
        # rows are in them, so sending (queued -> sending -> sent) never writes to them.
        Index("ix_outgoing_messages_ended_at", "status", "updated_at", "id",
              sqlite_where=text(ENDED_CONDITION), postgresql_where=text(ENDED_CONDITION)),
        Index("ix_outgoing_messages_reported_at", "delivery", "delivery_at", "id",
              sqlite_where=text(REPORTED_CONDITION),
              postgresql_where=text(REPORTED_CONDITION)),
    )


class OptSource(StrEnum):
    MANUAL = "manual"
    IMPORT = "import"
    PROVIDER = "provider"  # the provider said the recipient opted out or blocked us
    REPLY = "reply"  # the recipient answered STOP


class OptOut(Base):
    """The suppression list: a number here is never sent to, at planning or at send time."""

    __tablename__ = "opt_outs"

    phone: Mapped[str] = mapped_column(String(20), primary_key=True)  # E.164
    reason: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class OptOutEvent(Base):
    """The opt-out list's history: every number added or taken off, by whom and when.
    The list (opt_outs) says who is out now; this says how it came to be."""

    __tablename__ = "opt_out_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    phone: Mapped[str] = mapped_column(String(20), index=True)
    action: Mapped[str] = mapped_column(String(16))  # OptAction
    source: Mapped[str] = mapped_column(String(16))  # OptSource
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class OptAction(StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    # A START reply that did not lift an opt-out the operator made: kept, and why.
    KEPT = "kept"


class DeliveryReport(Base):
    """Every delivery report received, matched to its message or not (yet): a report can
    arrive before the send that it reports on has committed its provider id."""

    __tablename__ = "delivery_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    receipt: Mapped[str] = mapped_column(String(32), unique=True)  # Report.receipt
    provider: Mapped[str] = mapped_column(String(16))
    provider_message_id: Mapped[str] = mapped_column(String(128), index=True)
    message_id: Mapped[int | None] = mapped_column(
        ForeignKey("outgoing_messages.id", ondelete="CASCADE"), index=True)
    status: Mapped[str | None] = mapped_column(String(16))  # delivered/undelivered/None
    provider_status: Mapped[str] = mapped_column(String(32), default="")
    error: Mapped[str] = mapped_column(Text, default="")
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

    __table_args__ = (Index(None, "message_id", "received_at"),)


class InboundMessage(Base):
    """A message a member sent us: a reply, or STOP / START."""

    __tablename__ = "inbound_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    receipt: Mapped[str] = mapped_column(String(32), unique=True)  # Report.receipt
    provider: Mapped[str] = mapped_column(String(16))
    provider_ref: Mapped[str] = mapped_column(String(128), default="")  # the provider's id
    phone: Mapped[str] = mapped_column(String(20), index=True)  # the member's, E.164
    to: Mapped[str] = mapped_column(String(32), default="")
    text: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="SET NULL"), index=True)
    # The campaign last sent to that number when the reply came: what it answers.
    campaign_id: Mapped[int | None] = mapped_column(
        ForeignKey("campaigns.id", ondelete="SET NULL"), index=True)
    keyword: Mapped[str | None] = mapped_column(String(8))  # ReplyKeyword, if it was one
    handled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)


class FailedJob(Base):
    """The dead-letter store: a message whose delivery was given up, kept for review."""

    __tablename__ = "failed_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[int | None] = mapped_column(
        ForeignKey("outgoing_messages.id", ondelete="SET NULL"), index=True
    )
    campaign_id: Mapped[int | None] = mapped_column(
        ForeignKey("campaigns.id", ondelete="SET NULL"), index=True
    )
    recipient: Mapped[str] = mapped_column(String(20), index=True)
    queue: Mapped[str] = mapped_column(String(32), index=True)
    task_name: Mapped[str] = mapped_column(String(128))
    payload: Mapped[str] = mapped_column(Text)  # JSON
    attempts: Mapped[int] = mapped_column(Integer)
    exception_type: Mapped[str] = mapped_column(String(128), index=True)
    first_error: Mapped[str] = mapped_column(Text)
    last_error: Mapped[str] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)
    provider_response: Mapped[str | None] = mapped_column(Text)
    first_failed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    failed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    retried_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A retried job keeps its record; the new failure (if any) points back to it.
    retry_of_id: Mapped[int | None] = mapped_column(
        ForeignKey("failed_jobs.id", ondelete="SET NULL"), index=True
    )

    # The review panel's default view is the records not retried yet, sorted by one of
    # its columns: an index per sort column, led by retried_at, gives a page of 200 out of
    # 100,000 without sorting them all, and the count without reading the wide rows.
    __table_args__ = tuple(Index(None, "retried_at", column) for column in (
        "failed_at", "campaign_id", "recipient", "queue", "exception_type", "attempts"))


class DeliveryAttempt(Base):
    """One failed attempt to deliver a message: when, and what the provider said.

    The message row keeps only its first and last error; the dead-letter review shows
    every attempt, so each failure is written here in the same transaction as its state.
    """

    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[int] = mapped_column(
        ForeignKey("outgoing_messages.id", ondelete="CASCADE"), index=True
    )
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    error: Mapped[str] = mapped_column(Text)


class MessageCount(Base):
    """A campaign's messages and their attempts per status and delivery status ('' for
    none), kept by triggers on outgoing_messages (migration 0007) in the transaction that
    changes them: its totals without counting its messages. On PostgreSQL a key may have
    several rows (one appended per statement; engine.store.message_counts folds them), so
    always read them summed. Rows of messages pruned go to PrunedCount."""

    __tablename__ = "campaign_message_counts"

    # The key is the table's primary key on SQLite only (PostgreSQL appends rows).
    campaign_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(12), primary_key=True)
    delivery: Mapped[str] = mapped_column(String(16), primary_key=True)
    messages: Mapped[int] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer)


class PrunedCount(Base):
    """What retention (engine.store.retention) removed from a campaign, per message status
    and delivery status: a campaign's totals are its messages' plus these, so they read the
    same before and after a prune. Written in the same transaction as each deleted batch."""

    __tablename__ = "campaign_pruned_counts"

    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True)
    status: Mapped[str] = mapped_column(String(12), primary_key=True)
    # '' for none (a key column cannot be NULL); read back as NULL.
    delivery: Mapped[str] = mapped_column(String(16), primary_key=True, default="")
    messages: Mapped[int] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer)  # their delivery attempts, summed
