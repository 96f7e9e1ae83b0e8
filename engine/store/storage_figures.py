"""How big the database is and how fast sending makes it grow, for choosing how long to keep
messages (RELAYDESK_KEEP_MESSAGES; the Settings page shows these beside it).

Growth is what one stored message costs times the messages created in the last 30 days.
A message's cost is that of the tables that grow with messages (the messages, their
delivery reports and attempts, failed jobs; indexes included) divided by the messages: the
whole database divided by the messages would also charge each message for the contacts,
which do not grow with sending (100,000 contacts and a first campaign of 100 would make
each message look as big as a thousand contacts). Measured where the database can say it
(PostgreSQL's relation sizes, SQLite's dbstat table); a SQLite built without dbstat falls
back to the whole file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, bindparam, func, select, text
from sqlalchemy.exc import OperationalError

from engine.store.db import Database
from engine.store.models import (
    DeliveryAttempt,
    DeliveryReport,
    FailedJob,
    OutgoingMessage,
    utcnow,
)
from engine.store.vacuum import sqlite_space

MONTH = timedelta(days=30)
# The tables that grow with each message sent (with their indexes).
MESSAGE_TABLES = tuple(str(model.__tablename__) for model in (
    OutgoingMessage, DeliveryReport, DeliveryAttempt, FailedJob))


@dataclass(frozen=True)
class StorageFigures:
    size_bytes: int  # the whole database (SQLite: its file with the write-ahead log)
    messages: int  # outgoing messages stored now
    messages_last_30_days: int  # of those, created in the last 30 days
    growth_bytes_per_month: int  # what 30 days of sending at that rate adds
    bytes_per_message: float  # one stored message, with its share of reports and the rest
    database: str  # "sqlite" or "postgresql"
    # SQLite only: space inside the file that holds nothing (deleted rows' pages), and
    # whether the file gives such space back as it goes (incremental auto-vacuum) or needs
    # 'relaydesk db vacuum' once.
    free_bytes: int = 0
    auto_vacuum: str = ""

    def kept_bytes(self, keep_s: int) -> int:
        """About what messages take once the database keeps ``keep_s`` seconds of them, at
        the last 30 days' rate."""
        return round(self.growth_bytes_per_month * keep_s / MONTH.total_seconds())


def storage_figures(db: Database, *, now: datetime | None = None) -> StorageFigures:
    """The database's size and growth per month (reads only; a second or so for a database
    of millions of messages: call it off the UI thread)."""
    since = (now or utcnow()) - MONTH
    with db.engine.connect() as connection:
        messages, recent = connection.execute(select(
            func.count(OutgoingMessage.id),
            func.count(OutgoingMessage.id).filter(OutgoingMessage.created_at >= since),
        )).one()
        database = connection.dialect.name
        if database == "postgresql":
            size = int(connection.scalar(text("SELECT pg_database_size(current_database())"))
                       or 0)
            grows: int | None = _postgres_bytes(connection, MESSAGE_TABLES)
        else:
            grows = _sqlite_bytes(connection, MESSAGE_TABLES)
    free, auto_vacuum = 0, ""
    if database != "postgresql":
        space = sqlite_space(db.engine)
        size, free, auto_vacuum = space.file_bytes, space.free_bytes, space.auto_vacuum
    messages, recent = int(messages or 0), int(recent or 0)
    per_message = (grows if grows is not None else size) / messages if messages else 0.0
    return StorageFigures(size, messages, recent, round(per_message * recent), per_message,
                          database, free, auto_vacuum)


def _postgres_bytes(connection: Connection, tables: tuple[str, ...]) -> int:
    """The tables' size with their indexes and TOAST (dead rows autovacuum has not yet
    made reusable included: they are part of what sending costs)."""
    stmt = text("SELECT COALESCE(SUM(pg_total_relation_size(to_regclass(t))), 0) "
                "FROM unnest(CAST(:tables AS text[])) AS t")
    return int(connection.scalar(stmt, {"tables": list(tables)}) or 0)


def _sqlite_bytes(connection: Connection, tables: tuple[str, ...]) -> int | None:
    """The pages the tables and their indexes use, from SQLite's dbstat table, one btree
    at a time (measured: ~0.04 s per 100 MB from the page cache); None when this SQLite
    was built without dbstat."""
    names = connection.execute(
        text("SELECT name FROM sqlite_schema WHERE tbl_name IN :tables "
             "AND type IN ('table', 'index')").bindparams(
            bindparam("tables", expanding=True)), {"tables": list(tables)}).scalars().all()
    total = 0
    try:
        for name in names:
            total += int(connection.scalar(
                text("SELECT SUM(pgsize) FROM dbstat WHERE name = :name AND aggregate = 1"),
                {"name": name}) or 0)
    except OperationalError:  # no such table: dbstat (a SQLite built without it)
        return None
    return total
