"""The partial indexes on outgoing_messages (migration 0006): a queued message is in none of
them, and every query that reads them can still use them, on SQLite and PostgreSQL.

A partial index ``WHERE column IS NOT NULL`` serves only a query whose own conditions
imply that the column is set; a query reworded later (``IS NULL OR …``) would silently
fall back to reading the whole table. These tests run the store's own calls, capture the
SQL they send, and read each statement's plan."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.orm import Session

from engine.domain.audience import Audience
from engine.domain.delivery import DeliveryStatus, Report, ReportKind
from engine.domain.sending import Outcome, SendResult
from engine.store.audience_query import count_audience
from engine.store.campaign_browser import count_messages
from engine.store.db import Database
from engine.store.delivery_reports import apply_reports, expire_overdue, rematch_unmatched
from engine.store.delivery_state import claim, mark_sent_many
from engine.store.models import Campaign, Contact, MessageStatus, OutgoingMessage, utcnow
from engine.store.report_polls import due_polls

MESSAGES = 200


def seed(db: Database) -> int:
    """A campaign of MESSAGES, the first half sent through a provider that is polled."""
    with db.session() as session:
        campaign = Campaign(name="Reminder", template="Hi #name", route="bulk",
                            queue="bulk")
        session.add(campaign)
        session.add_all(Contact(name=f"Member {i}", phone=f"+2547120{i:05d}",
                                pledge_cents=100_000, paid_cents=0, due_date=date(2027, 1, 31))
                        for i in range(MESSAGES))
        session.flush()
        contacts = session.scalars(select(Contact.id).order_by(Contact.id)).all()
        session.add_all(OutgoingMessage(campaign_id=campaign.id, contact_id=c,
                                        phone=f"+2547120{n:05d}", body="Hi",
                                        encoding="GSM-7", segments=1)
                        for n, c in enumerate(contacts))
        campaign_id = campaign.id
    with db.session() as session:
        ids = session.scalars(select(OutgoingMessage.id).order_by(OutgoingMessage.id)).all()
        sent = ids[:MESSAGES // 2]
        for message_id in sent:
            assert claim(session, message_id, [MessageStatus.QUEUED], "bulk") is not None
        mark_sent_many(session, [(m, SendResult(Outcome.SENT, provider_message_id=f"p{m}"))
                                 for m in sent],
                       provider="twilio", can_fetch_status=True, report_poll_s=60)
    return campaign_id


@contextmanager
def captured(db: Database) -> Iterator[list[tuple[str, Any]]]:
    """The statements (and their parameters) sent to the database inside the block."""
    statements: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
               executemany: bool) -> None:
        if not executemany:
            statements.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def index_definitions(connection: Any) -> dict[str, str]:
    """The secondary indexes on outgoing_messages as the migrations built them (with
    the unique constraint's on PostgreSQL)."""
    if connection.dialect.name == "postgresql":
        rows = connection.execute(text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'outgoing_messages' "
            "AND indexname NOT LIKE 'pk_%'")).all()
    else:
        rows = connection.execute(text(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' "
            "AND tbl_name = 'outgoing_messages' AND sql IS NOT NULL")).all()
    return {name: " ".join(sql.split()).lower() for name, sql in rows}


def plans(db: Database, statements: list[tuple[str, Any]], index: str) -> list[str]:
    """Each statement on outgoing_messages with its plan, given only ``index`` or a full
    read to choose from: the other indexes are dropped in a transaction rolled back after
    (both databases undo DDL), and PostgreSQL is told not to read the whole table, which it
    prefers at this size. The question is whether the query can use the index at all."""
    found = []
    with db.engine.connect() as connection:
        others = [name for name in index_definitions(connection) if name != index]
        postgres = connection.dialect.name == "postgresql"
        raw = connection.connection.driver_connection
        assert raw is not None
        cursor = raw.cursor()
        if postgres:
            cursor.execute("SET LOCAL enable_seqscan = off")
        else:
            cursor.execute("BEGIN")
        for name in others:  # on SQLite, the unique constraint's index cannot go
            cursor.execute(f"ALTER TABLE outgoing_messages DROP CONSTRAINT {name}"
                           if name.startswith("uq_") else f"DROP INDEX {name}")
        for statement, parameters in statements:
            if "outgoing_messages" not in statement or statement.startswith(("SAVEPOINT",
                                                                              "RELEASE")):
                continue
            cursor.execute(("EXPLAIN " if postgres else "EXPLAIN QUERY PLAN ") + statement,
                           parameters)
            rows = cursor.fetchall()
            found.append(statement + "\n" + "\n".join(str(r[-1]) for r in rows))
        raw.rollback()
        assert set(index_definitions(connection)) == {index, *others}  # all back
    return found


def searches(plan: str, index: str) -> bool:
    """True when the plan looks values up in ``index``, rather than reading all of it
    (which either database also does with a partial index whose condition holds)."""
    if "Index Cond" in plan:  # PostgreSQL: (Bitmap) Index Scan using … / Index Cond: …
        return f"Index Scan using {index} " in plan or f"Index Scan on {index} " in plan
    return f"SEARCH outgoing_messages USING INDEX {index} (" in plan or \
        f"SEARCH outgoing_messages USING COVERING INDEX {index} (" in plan


CALLS: dict[str, tuple[str, Callable[[Session, int], object]]] = {
    "a delivery report finds its message": (
        "ix_outgoing_messages_provider_message_id",
        lambda s, _: apply_reports(s, [Report(ReportKind.STATUS, "twilio", message_id="p2",
                                              status=DeliveryStatus.DELIVERED)],
                                   optout_keywords=("STOP",), optin_keywords=("START",))),
    "a report that came first is matched later": (
        "ix_outgoing_messages_provider_message_id",
        lambda s, _: rematch_unmatched(s)),
    "the poller finds the messages due": (
        "ix_outgoing_messages_report_poll_at",
        lambda s, _: due_polls(s, utcnow() + timedelta(hours=1), 10)),
    "messages overdue for a report expire": (
        "ix_outgoing_messages_delivery_sent_at",
        lambda s, _: expire_overdue(s, 3600)),
    "the campaign's messages filtered by delivery": (
        "ix_outgoing_messages_campaign_id_delivery",
        lambda s, c: count_messages(s, c, delivery="undelivered")),
    "resending to the undelivered": (
        "ix_outgoing_messages_campaign_id_delivery",
        lambda s, c: count_audience(s, Audience(undelivered_of=c), utcnow().date())),
}


@pytest.mark.parametrize("call", list(CALLS))
def test_queries_on_sent_messages_use_their_partial_index(db: Database, call: str) -> None:
    index, run = CALLS[call]
    campaign_id = seed(db)
    if call.startswith("a report that came first"):
        # A report for p3 kept without its message, as if it had come before the send.
        with db.session() as session:
            session.execute(text("INSERT INTO delivery_reports (provider, provider_message_id,"
                                 " status, provider_status, error, receipt, received_at) "
                                 "VALUES ('twilio', 'p3', 'delivered', 'delivered', '', 'r1',"
                                 " :at)"),
                            {"at": utcnow().replace(tzinfo=None)})
    with captured(db) as statements, db.session() as session:
        run(session, campaign_id)
    read = plans(db, statements, index)
    assert any(searches(plan, index) for plan in read), "\n\n".join(read)


def test_the_indexes_a_queued_message_skips_are_partial(db: Database) -> None:
    with db.engine.connect() as connection:
        definitions = index_definitions(connection)
    for name, condition in (
            ("ix_outgoing_messages_provider_message_id", "provider_message_id is not null"),
            ("ix_outgoing_messages_campaign_id_delivery", "delivery is not null"),
            ("ix_outgoing_messages_delivery_sent_at", "delivery is not null"),
            ("ix_outgoing_messages_report_poll_at", "report_poll_at is not null"),
            ("ix_outgoing_messages_sent_unreported", "delivery is null")):
        assert condition in definitions[name], definitions[name]
    assert "ix_outgoing_messages_status" not in definitions  # (status, claimed_at) serves
    assert "ix_outgoing_messages_status_claimed_at" in definitions
