"""The database's size and growth per month (engine.store.storage_figures), on SQLite and,
when a server is given, PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import delete, insert

from engine.store.db import Database
from engine.store.models import Campaign, Contact, OutgoingMessage
from engine.store.storage_figures import MONTH, storage_figures
from engine.store.vacuum import give_back_space

NOW = datetime(2027, 6, 1, 12, 0, tzinfo=UTC)
BODY = "Dear member, of your pledge of 10,000 you have paid 2,500; 7,500 remains." * 2


def add_messages(db: Database, count: int, created_at: datetime) -> None:
    with db.session() as session:
        campaign = Campaign(name="c", template=BODY, route="bulk", queue="bulk_messages",
                            created_at=created_at)
        session.add(campaign)
        session.flush()
        session.execute(insert(OutgoingMessage), [
            {"campaign_id": campaign.id, "phone": f"+2547{i:08d}", "body": BODY,
             "encoding": "gsm7", "segments": 2, "status": "sent", "created_at": created_at,
             "updated_at": created_at} for i in range(count)])


def add_contacts(db: Database, count: int) -> None:
    with db.session() as session:
        session.execute(insert(Contact), [
            {"name": f"Member with a long name number {i} " + "x" * 100,
             "phone": f"+2547{i:08d}", "pledge_cents": 100_000, "paid_cents": 0,
             "due_date": date(2027, 7, 1)} for i in range(count)])


def test_an_empty_database_has_a_size_and_grows_by_nothing(db: Database) -> None:
    figures = storage_figures(db, now=NOW)
    assert figures.database == db.engine.dialect.name
    assert figures.size_bytes > 0
    assert (figures.messages, figures.messages_last_30_days) == (0, 0)
    assert figures.growth_bytes_per_month == 0
    assert figures.kept_bytes(int(timedelta(days=180).total_seconds())) == 0


def test_growth_is_the_last_30_days_of_messages_at_what_one_costs(db: Database) -> None:
    before = storage_figures(db, now=NOW)
    add_messages(db, 3000, NOW - timedelta(days=60))  # older than a month
    add_messages(db, 1000, NOW - timedelta(days=5))
    add_messages(db, 500, NOW - MONTH + timedelta(minutes=1))  # just inside the month
    figures = storage_figures(db, now=NOW)
    assert (figures.messages, figures.messages_last_30_days) == (4500, 1500)
    assert figures.size_bytes - before.size_bytes >= 4500 * len(BODY)
    # A message costs at least its text, and no more than a few times it with its row's
    # other columns and its entries in the indexes.
    assert len(BODY) < figures.bytes_per_message < 8 * len(BODY)
    assert figures.growth_bytes_per_month == round(figures.bytes_per_message * 1500)
    two_months = int(timedelta(days=60).total_seconds())
    assert abs(figures.kept_bytes(two_months) - 2 * figures.growth_bytes_per_month) <= 1


def test_contacts_are_not_counted_as_growth(db: Database) -> None:
    # The whole database divided by its messages would charge each of these 50 messages
    # for 200 contacts: a month's growth as large as the database.
    add_contacts(db, 10_000)
    add_messages(db, 50, NOW - timedelta(days=1))
    figures = storage_figures(db, now=NOW)
    assert figures.messages_last_30_days == figures.messages == 50
    assert figures.growth_bytes_per_month < figures.size_bytes / 4


def test_sqlite_says_how_much_a_vacuum_would_give_back(db: Database) -> None:
    add_messages(db, 3000, NOW - timedelta(days=60))
    before = storage_figures(db, now=NOW)
    with db.session() as session:
        session.execute(delete(OutgoingMessage))
    figures = storage_figures(db, now=NOW)
    assert figures.messages == 0
    if db.engine.dialect.name != "sqlite":
        assert (figures.free_bytes, figures.auto_vacuum) == (0, "")  # autovacuum's affair
        return
    assert before.auto_vacuum == figures.auto_vacuum == "incremental"  # a new database
    assert figures.free_bytes >= 3000 * len(BODY)  # the deleted rows' pages, still in the file
    assert give_back_space(db) > 0  # what a prune does next
    assert storage_figures(db, now=NOW).free_bytes == 0
