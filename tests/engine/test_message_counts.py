"""Campaign totals kept by triggers (migration 0007, engine.store.message_counts): after
each real transition a message can make, the kept counts equal the messages counted, and
the campaign's figures read from them; PostgreSQL's appended rows fold without losing a
change made meanwhile; the migration counts an existing store. On SQLite and, when a
server is given, PostgreSQL. (Every test's end checks the same equality in every database
it opened: tests/conftest.py.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import delete, select, text, update

from engine.config.settings import Settings
from engine.domain.delivery import DeliveryStatus, Report, ReportKind
from engine.domain.sending import Outcome, SendResult
from engine.store.campaign_browser import campaign_page
from engine.store.campaign_state import campaign_counts
from engine.store.db import Database, _alembic_config, create_db_engine, database_url, open_database
from engine.store.dead_letters import forget_failed, retry_ids
from engine.store.delivery_reports import apply_reports, expire_overdue
from engine.store.delivery_state import (
    claim_many,
    mark_dead,
    mark_retry,
    mark_sent_many,
    mark_suppressed,
    release_claim,
)
from engine.store.message_counts import fold
from engine.store.models import Campaign, CampaignStatus, FailedJob, MessageStatus, OutgoingMessage
from engine.store.retention import prune
from tests.support import counted_messages, kept_counts

S = MessageStatus
D = DeliveryStatus
SENT = SendResult(Outcome.SENT, provider_message_id="")
TIMEOUT = SendResult(Outcome.TRANSIENT, error_type="Timeout", error="the provider timed out")


def campaign(db: Database, messages: int) -> tuple[int, list[int]]:
    with db.session() as session:
        made = Campaign(name="Reminder", template="Hi", route="bulk", queue="bulk_messages",
                        status=CampaignStatus.SENDING, recipients=messages)
        session.add(made)
        session.flush()
        rows = [OutgoingMessage(campaign_id=made.id, phone=f"+2547120{i:05d}", body="Hi",
                                encoding="GSM-7", segments=1) for i in range(messages)]
        session.add_all(rows)
        session.flush()
        return made.id, [m.id for m in rows]


def figures(db: Database, campaign_id: int) -> dict[str, int]:
    """The campaign's figures as campaign status reads them, nonzero only."""
    with db.session() as session:
        return {k: v for k, v in campaign_counts(session, campaign_id).items() if v}


def walk_every_transition(db: Database) -> dict[str, dict[str, int]]:
    """Eight messages through every transition the store makes; the campaign's figures
    after each, checking the kept counts against the messages at each."""
    campaign_id, ids = campaign(db, 8)
    steps: list[tuple[str, dict[str, int]]] = []

    def step(name: str) -> None:
        assert kept_counts(db) == counted_messages(db), name
        steps.append((name, figures(db, campaign_id)))

    step("queued")
    with db.session() as session:
        claimed = claim_many(session, ids[:6], [S.QUEUED], "bulk_messages")
    step("claimed")
    with db.session() as session:
        mark_sent_many(session, [(m, SendResult(Outcome.SENT, provider_message_id=f"p{m}"))
                                 for m in ids[:3]], provider="sandbox")
    step("sent")
    with db.session() as session:
        mark_retry(session, ids[3], TIMEOUT)
        mark_suppressed(session, ids[4], SendResult(Outcome.OPTED_OUT, error="blocked"))
        release_claim(session, ids[5])
    step("retrying, suppressed, released")
    with db.session() as session:
        again = claim_many(session, [ids[3]], [S.FAILED], "bulk_messages")
        mark_dead(session, again[0], TIMEOUT, "send")
    step("dead")
    report = Report(ReportKind.STATUS, "sandbox", message_id=f"p{ids[0]}",
                    status=D.DELIVERED, provider_status="DELIVRD")
    with db.session() as session:
        apply_reports(session, [report], optout_keywords=("STOP",), optin_keywords=())
        expire_overdue(session, 60, now=datetime.now(UTC) + timedelta(hours=1))
    step("delivered, expired")
    with db.session() as session:
        job = session.scalar(select(FailedJob.id))
        assert job is not None
        assert retry_ids(session, [job])
    step("failed job retried")
    with db.session() as session:
        dead_again = claim_many(session, [ids[3]], [S.QUEUED], "bulk_messages")
        mark_dead(session, dead_again[0], TIMEOUT, "send")
    with db.session() as session:
        forget_failed(session, list(session.scalars(select(FailedJob.id))))
    step("dead again, forgotten")
    with db.session() as session:  # as cancel_campaign writes it
        session.execute(update(OutgoingMessage).where(OutgoingMessage.campaign_id == campaign_id)
                        .where(OutgoingMessage.status == S.QUEUED)
                        .values(status=S.CANCELLED))
    step("cancelled")
    assert prune(db, timedelta(hours=1), now=datetime.now(UTC) + timedelta(days=1)).messages
    step("pruned")
    assert len(claimed) == 6
    return dict(steps)


def test_every_transition_keeps_the_counts(db: Database) -> None:
    seen = walk_every_transition(db)
    assert seen["queued"] == {"queued": 8}
    assert seen["claimed"] == {"queued": 2, "sending": 6, "attempts": 6}
    assert seen["sent"] == {"queued": 2, "sending": 3, "sent": 3, "awaiting_report": 3,
                            "attempts": 6}
    assert seen["retrying, suppressed, released"] == {
        "queued": 3, "failed": 1, "suppressed": 1, "sent": 3, "awaiting_report": 3,
        "attempts": 5}
    assert seen["dead"]["dead"] == 1
    assert seen["dead"]["attempts"] == 6
    assert seen["delivered, expired"] == {
        "queued": 3, "dead": 1, "suppressed": 1, "sent": 3, "delivered": 1, "expired": 2,
        "attempts": 6}
    assert seen["failed job retried"]["queued"] == 4
    # A retried failed job starts its message's attempts afresh (2 -> 0), then 1 more.
    assert seen["cancelled"] == {"cancelled": 3, "dead": 1, "suppressed": 1, "sent": 3,
                                 "delivered": 1, "expired": 2, "attempts": 5}
    # Pruning moves the settled messages' counts to campaign_pruned_counts: the totals
    # read the same.
    assert seen["pruned"] == seen["cancelled"]
    with db.session() as session:
        assert not session.scalar(select(OutgoingMessage.id).where(
            OutgoingMessage.status != S.DEAD))


def test_the_campaigns_page_reads_the_kept_counts_not_the_messages(db: Database) -> None:
    """Proof that the page no longer counts messages: counts changed behind the triggers'
    back show on it."""
    campaign_id, _ = campaign(db, 5)
    with db.session() as session:
        session.execute(text("UPDATE campaign_message_counts SET messages = messages + 100 "
                             "WHERE campaign_id = :c"), {"c": campaign_id})
        (row,) = campaign_page(session, 0, 10)
    assert row.pending == 105
    with db.engine.begin() as connection:  # put it right for the end-of-test check
        connection.execute(text("UPDATE campaign_message_counts SET messages = messages - 100 "
                                "WHERE campaign_id = :c"), {"c": campaign_id})


def test_a_campaign_discarded_with_its_messages_leaves_no_count(db: Database) -> None:
    """operations.campaigns deletes a campaign it could not queue; the cascade deletes its
    messages, and the delete trigger takes their counts away."""
    campaign_id, _ = campaign(db, 4)
    kept, _ = campaign(db, 2)
    with db.session() as session:
        session.execute(delete(Campaign).where(Campaign.id == campaign_id))
    assert kept_counts(db) == {(kept, "queued", ""): (2, 0)}


def row_count(db: Database) -> int:
    with db.engine.connect() as connection:
        return int(connection.execute(text("SELECT COUNT(*) FROM campaign_message_counts")
                                      ).scalar_one())


def test_folding_keeps_the_sums_and_a_change_made_meanwhile(db: Database) -> None:
    if db.engine.dialect.name == "sqlite":
        pytest.skip("SQLite keeps one row per key: nothing to fold")
    campaign_id, ids = campaign(db, 6)
    for message_id in ids[:4]:  # one statement each: one appended row each
        with db.session() as session:
            claim_many(session, [message_id], [S.QUEUED], "bulk_messages")
    before = kept_counts(db)
    assert row_count(db) > 3
    # A transaction that changed messages and has not committed: its rows are not folded
    # (nor lost) by a fold that runs meanwhile.
    pending = db.engine.connect()
    transaction = pending.begin()
    pending.execute(update(OutgoingMessage).where(OutgoingMessage.id == ids[5])
                    .values(status=S.CANCELLED))
    with db.session() as session:
        assert fold(session) == 2  # queued and sending, one row each
    assert row_count(db) == 2
    assert kept_counts(db) == before
    transaction.commit()
    pending.close()
    assert kept_counts(db) == counted_messages(db)
    assert kept_counts(db)[(campaign_id, "cancelled", "")] == (1, 0)


def test_migration_0007_counts_an_existing_store(db_settings: Settings) -> None:
    engine = create_db_engine(database_url(db_settings))
    with engine.begin() as connection:
        command.upgrade(_alembic_config(connection), "0006")
        connection.execute(text(
            "INSERT INTO campaigns (id, name, template, timezone, suppressed, urgent, status, "
            "route, queue, recipients, segments, created_at) VALUES (1, 'Old', 'Hi', 'UTC', "
            "0, false, 'completed', 'individual', 'messages', 3, 3, :at)"),
            {"at": datetime(2026, 1, 1)})
        for n, (status, delivery, attempts) in enumerate(
                [("sent", "delivered", 1), ("sent", "delivered", 2), ("dead", None, 3)]):
            connection.execute(text(
                "INSERT INTO outgoing_messages (campaign_id, phone, body, encoding, segments, "
                "status, attempts, created_at, updated_at, delivery, report_polls, "
                "opt_out_notice) VALUES (1, :phone, 'Hi', 'GSM-7', 1, :status, :attempts, "
                ":at, :at, :delivery, 0, false)"),
                {"phone": f"+25471200000{n}", "status": status, "attempts": attempts,
                 "delivery": delivery, "at": datetime(2026, 1, 1)})
    engine.dispose()
    upgraded = open_database(db_settings)
    assert kept_counts(upgraded) == {(1, "sent", "delivered"): (2, 3), (1, "dead", ""): (1, 3)}
    with upgraded.session() as session:  # and the triggers count from here on
        session.execute(update(OutgoingMessage).values(status=S.CANCELLED))
    assert kept_counts(upgraded) == {(1, "cancelled", "delivered"): (2, 3),
                                     (1, "cancelled", ""): (1, 3)}
