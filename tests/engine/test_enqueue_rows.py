"""Writing a campaign's messages fast (engine.store.bulk_sql.insert_rows: COPY on PostgreSQL,
many rows a statement on SQLite) stores exactly what SQLAlchemy's INSERT stored, stores
every message of a campaign written in many statements, and keeps the one transaction: a
failure part-way leaves no campaign and no message behind."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

import pytest
import redis
from sqlalchemy import Table, func, insert, select, text
from sqlalchemy.exc import DBAPIError

from engine.config.settings import Settings
from engine.domain.audience import Audience
from engine.domain.personalize import Template
from engine.domain.queues import BULK_MESSAGES
from engine.infra.connections import celery_for
from engine.infra.embedded_redis import EmbeddedRedis
from engine.operations.campaigns import create_campaign, send_campaign
from engine.store.audience_query import render_audience
from engine.store.bulk_sql import SQLITE_ROWS_PER_INSERT, insert_rows
from engine.store.db import Database
from engine.store.models import Campaign, Contact, OptOut, OutgoingMessage

MESSAGES = cast(Table, OutgoingMessage.__table__)
TODAY = date(2026, 11, 27)
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)  # TODAY in the tests' time zone, UTC
TEMPLATE = "Dear #name, #balance of your #pledge pledge remains, #days_remain days to go."
# Several SQLite statements, several fetches of a streamed audience.
MANY = 4 * SQLITE_ROWS_PER_INSERT + 2_345


def phone(n: int) -> str:
    return f"+2547{n:08d}"


def paid_up(n: int) -> bool:
    return n % 7 == 0


def add_contacts(db: Database, count: int) -> None:
    due = TODAY + timedelta(days=20)
    rows: list[dict[str, Any]] = [
        {"name": f"Member {n}" if n % 1000 else f"Wanjirũ {n}",  # some UCS-2 messages
         "phone": phone(n), "pledge_cents": 100_000 + n,
         "paid_cents": 100_000 + n if paid_up(n) else n % 5 * 1000,
         "due_date": due + timedelta(days=n % 40)} for n in range(1, count + 1)]
    with db.session() as session:
        session.execute(insert(Contact), rows)


def stored_rows(db: Database, campaign_id: int) -> list[tuple[Any, ...]]:
    """Every column as the database holds it (SQLite: its own text for a datetime), but
    the row's and the campaign's ids."""
    with db.session() as session:
        result = session.execute(text("SELECT * FROM outgoing_messages WHERE campaign_id = :c "
                                      "ORDER BY id"), {"c": campaign_id})
        keep = [i for i, name in enumerate(result.keys()) if name not in ("id", "campaign_id")]
        return [tuple(row[i] for i in keep) for row in result]


def new_campaign_id(db: Database) -> int:
    with db.session() as session:
        campaign = Campaign(name="c", template="t", route="bulk", queue="bulk_messages")
        session.add(campaign)
        session.flush()
        return campaign.id


def test_insert_rows_stores_what_insert_stores(db: Database) -> None:
    add_contacts(db, 2)
    # What text COPY must escape (tabs, line breaks, backslashes, "\N"), UCS-2 and emoji,
    # an empty body, a long one; a row with a contact and rows without.
    bodies = ["plain", "tab\tnew\nline\r\\N back\\slash", "Zoë ✓ 🎉 ’", "", "x" * 900]
    values = [(None, f"+2547{i:08d}", body, "GSM-7" if body.isascii() else "UCS-2", i + 1)
              for i, body in enumerate(bodies)]
    values.append((1, "+254700000001", "to a contact", "GSM-7", 1))
    columns = ("contact_id", "phone", "body", "encoding", "segments")
    by_insert, by_rows = new_campaign_id(db), new_campaign_id(db)
    with db.session() as session:
        session.execute(insert(MESSAGES), [
            {**dict(zip(columns, v, strict=True)), "campaign_id": by_insert,
             "created_at": NOW, "updated_at": NOW} for v in values])
        count = insert_rows(session, MESSAGES, columns, values,
                            same={"campaign_id": by_rows, "created_at": NOW,
                                  "updated_at": NOW})
    assert count == len(values)
    assert stored_rows(db, by_rows) == stored_rows(db, by_insert)
    assert len(stored_rows(db, by_rows)) == len(values)


def test_a_campaign_written_in_many_statements_stores_every_rendered_message(
        db: Database, db_settings: Settings) -> None:
    add_contacts(db, MANY)
    opted_out = [2, 14, MANY - 1]  # 14 is paid up: left out by the filter, not the list
    with db.session() as session:
        session.execute(insert(OptOut), [{"phone": phone(n), "source": "manual"}
                                         for n in opted_out])
    owing = Audience(owing=True)
    with db.session() as session:
        expected = [(m.contact_id, m.phone, m.text, str(m.encoding), m.segments)
                    for m in render_audience(session, Template.parse(TEMPLATE), owing, TODAY,
                                             db_settings.currency_format)]

    created = create_campaign(db, db_settings, TEMPLATE, audience=owing, now=NOW)

    with db.session() as session:
        stored = [tuple(row) for row in session.execute(
            select(OutgoingMessage.contact_id, OutgoingMessage.phone, OutgoingMessage.body,
                   OutgoingMessage.encoding, OutgoingMessage.segments)
            .where(OutgoingMessage.campaign_id == created.id).order_by(OutgoingMessage.id))]
        campaign = session.get(Campaign, created.id)
        assert campaign is not None
        statuses = set(session.scalars(select(OutgoingMessage.status).where(
            OutgoingMessage.campaign_id == created.id)))
    recipients = [n for n in range(1, MANY + 1) if not paid_up(n) and n not in opted_out]
    assert stored == expected
    assert [row[1] for row in stored] == [phone(n) for n in recipients]
    assert {row[3] for row in stored} == {"GSM-7", "UCS-2"}
    assert statuses == {"queued"}
    assert (campaign.recipients, campaign.suppressed) == (len(stored), 2)
    assert campaign.segments == created.segments == sum(row[4] for row in stored)


@pytest.fixture
def client(embedded_redis: EmbeddedRedis) -> redis.Redis:
    celery_for(embedded_redis.url())
    return redis.Redis.from_url(embedded_redis.url())


def fail_inserting(db: Database, phone: str) -> None:
    """Make the database refuse the message to ``phone``, as a full disk or a lost server
    would refuse some message in the middle of a campaign."""
    with db.engine.begin() as conn:
        if db.engine.dialect.name == "sqlite":
            conn.execute(text("CREATE TRIGGER boom BEFORE INSERT ON outgoing_messages "
                              f"WHEN NEW.phone = '{phone}' BEGIN SELECT RAISE(ABORT, 'boom'); "
                              "END"))
            return
        conn.execute(text("CREATE FUNCTION boom() RETURNS trigger AS $$ BEGIN "
                          f"IF NEW.phone = '{phone}' THEN RAISE EXCEPTION 'boom'; END IF; "
                          "RETURN NEW; END $$ LANGUAGE plpgsql"))
        conn.execute(text("CREATE TRIGGER boom BEFORE INSERT ON outgoing_messages "
                          "FOR EACH ROW EXECUTE FUNCTION boom()"))


def test_a_failure_part_way_leaves_no_campaign_and_no_message(
        db: Database, db_settings: Settings, client: redis.Redis) -> None:
    add_contacts(db, MANY)
    fail_inserting(db, phone(MANY - 5))  # after thousands went in

    with pytest.raises(DBAPIError):
        send_campaign(db, client, db_settings, TEMPLATE)

    with db.session() as session:
        assert session.scalar(select(func.count(Campaign.id))) == 0
        assert session.scalar(select(func.count(OutgoingMessage.id))) == 0
    assert client.llen(BULK_MESSAGES) == 0  # nothing was queued for the workers
