from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError

from engine.config.settings import Settings
from engine.store.db import Database, current_revision, database_url, head_revision, open_database
from engine.store.models import (
    Campaign,
    Contact,
    ContactTag,
    FailedJob,
    MessageStatus,
    OutgoingMessage,
)


def make_contact(phone: str = "+254712345678") -> Contact:
    return Contact(name="Alice", phone=phone, pledge_cents=1_250_000, paid_cents=250_000,
                   due_date=date(2027, 1, 31))


def make_campaign() -> Campaign:
    return Campaign(name="Reminder", template="Dear #name", route="individual",
                    queue="messages")


def test_migrations_create_every_table_with_indexes(db: Database) -> None:
    inspector = inspect(db.engine)
    tables = set(inspector.get_table_names())
    assert {"contacts", "contact_tags", "campaigns", "outgoing_messages",
            "failed_jobs", "delivery_attempts", "alembic_version"} <= tables
    indexed = {tuple(ix["column_names"]) for ix in inspector.get_indexes("outgoing_messages")}
    assert {("status", "claimed_at"), ("campaign_id", "status"), ("phone",),
            ("created_at",)} <= indexed
    failed_ix = {tuple(ix["column_names"]) for ix in inspector.get_indexes("failed_jobs")}
    assert {("failed_at",), ("campaign_id",), ("queue",), ("exception_type",),
            ("retried_at", "failed_at"), ("retry_of_id",)} <= failed_ix
    assert current_revision(db.engine) == head_revision()


def test_one_message_row_per_campaign_and_contact(db: Database) -> None:
    with db.session() as s:
        contact, campaign = make_contact(), make_campaign()
        s.add_all([contact, campaign])
        s.flush()
        s.add(OutgoingMessage(campaign_id=campaign.id, contact_id=contact.id,
                              phone=contact.phone, body="x", encoding="GSM-7", segments=1))
        ids = (campaign.id, contact.id)
    with pytest.raises(IntegrityError), db.session() as s:
        s.add(OutgoingMessage(campaign_id=ids[0], contact_id=ids[1], phone="+254712345678",
                              body="again", encoding="GSM-7", segments=1))
    with db.session() as s:
        assert s.scalar(select(OutgoingMessage.status)) == MessageStatus.QUEUED
        assert len(s.scalars(select(OutgoingMessage)).all()) == 1


def test_duplicate_phone_is_refused(db: Database) -> None:
    with db.session() as s:
        s.add(make_contact())
    with pytest.raises(IntegrityError), db.session() as s:
        s.add(make_contact())


def test_deleting_a_contact_keeps_history_and_drops_tags(db: Database) -> None:
    with db.session() as s:
        contact, campaign = make_contact(), make_campaign()
        contact.tags.append(ContactTag(tag="choir"))
        s.add_all([contact, campaign])
        s.flush()
        s.add(OutgoingMessage(campaign_id=campaign.id, contact_id=contact.id,
                              phone=contact.phone, body="x", encoding="GSM-7", segments=1))
    with db.session() as s:
        s.delete(s.scalars(select(Contact)).one())
    with db.session() as s:
        message = s.scalars(select(OutgoingMessage)).one()
        assert message.contact_id is None
        assert message.phone == "+254712345678"
        assert s.scalars(select(ContactTag)).all() == []


def test_timestamps_round_trip_as_aware_utc(db: Database) -> None:
    eat = timezone(timedelta(hours=3))
    failed = datetime(2026, 11, 27, 21, 30, tzinfo=eat)
    with db.session() as s:
        s.add(FailedJob(recipient="+254712345678", queue="messages", task_name="send",
                        payload="{}", attempts=3, exception_type="Timeout",
                        first_error="t", last_error="t", failed_at=failed))
    with db.session() as s:
        job = s.scalars(select(FailedJob)).one()
        assert job.failed_at == failed
        assert job.failed_at.tzinfo == UTC
        assert job.first_failed_at.tzinfo == UTC


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(settings: Settings) -> None:
    db = open_database(settings)
    with db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 5000
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    assert settings.sqlite_path.exists()


def test_short_postgres_urls_get_the_shipped_driver(settings: Settings) -> None:
    from dataclasses import replace

    pg = replace(settings, database_url="postgres://u:p@h/db")
    assert database_url(pg) == "postgresql+psycopg://u:p@h/db"
    assert database_url(settings) == f"sqlite:///{settings.sqlite_path}"


def test_processes_starting_at_once_migrate_once(db_settings: Settings) -> None:
    """Workers, CLI and GUI may all open a fresh database at the same moment."""
    code = ("from engine.store.db import open_database, current_revision;"
            "from engine.config.settings import load_settings;"
            "print(current_revision(open_database(load_settings()).engine))")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [err for _, err in outputs]
    assert [out.strip() for out, _ in outputs] == [head_revision()] * 4


def test_unreachable_database_is_a_clear_error(settings: Settings) -> None:
    from dataclasses import replace

    from engine.store.db import DatabaseError

    bad = replace(settings, database_url="postgresql://nobody:secretpw@127.0.0.1:1/none")
    with pytest.raises(DatabaseError) as info:
        open_database(bad)
    assert "RELAYDESK_DATABASE_URL" in str(info.value)
    assert "secretpw" not in str(info.value)


def test_missing_postgres_client_library_says_what_to_install(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The packaged app on Linux loads the system's libpq (build.spec): where it is not
    installed, psycopg cannot be imported, and the operator is told what to install."""
    from dataclasses import replace

    from engine.store.db import DatabaseError

    monkeypatch.setitem(sys.modules, "psycopg", None)  # what a missing libpq leads to
    bad = replace(settings, database_url="postgresql://someone:secretpw@127.0.0.1:1/nolib")
    with pytest.raises(DatabaseError) as info:
        open_database(bad)
    assert "apt install libpq5" in str(info.value)
    assert "secretpw" not in str(info.value)
