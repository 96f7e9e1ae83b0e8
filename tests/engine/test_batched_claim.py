"""The batched claim and the batched record of sent messages (engine.store.delivery_state):
one statement claims a batch, each row on its own terms; one transaction records the sent
ones, each with its own provider id. On SQLite and, when a server is given, PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, select, update

from engine.config.settings import Settings
from engine.domain.delivery import DeliveryStatus
from engine.domain.sending import Outcome, SendResult
from engine.store.db import Database, open_database
from engine.store.delivery_state import CLAIM_LEASE_S, claim_many, mark_sent_many
from engine.store.models import Campaign, CampaignStatus, MessageStatus, OutgoingMessage
from engine.store.optouts import add_optouts

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _campaign(db: Database, phones: list[str]) -> list[int]:
    with db.session() as session:
        campaign = Campaign(name="Reminder", template="Hi", route="bulk",
                            queue="bulk_messages", status=CampaignStatus.SENDING)
        session.add(campaign)
        session.flush()
        messages = [OutgoingMessage(campaign_id=campaign.id, phone=p, body=f"Hi {p}",
                                    encoding="GSM-7", segments=1) for p in phones]
        session.add_all(messages)
        session.flush()
        return [m.id for m in messages]


def _set(db: Database, message_id: int, **values: Any) -> None:
    with db.session() as session:
        session.execute(update(OutgoingMessage).where(OutgoingMessage.id == message_id)
                        .values(**values))


def _rows(db: Database) -> dict[int, tuple[str, int, datetime | None]]:
    with db.session() as session:
        return {id_: (status, attempts, claimed_at) for id_, status, attempts, claimed_at
                in session.execute(select(OutgoingMessage.id, OutgoingMessage.status,
                                          OutgoingMessage.attempts,
                                          OutgoingMessage.claimed_at))}


def test_a_batch_claims_each_row_on_its_own_terms(db: Database) -> None:
    phones = [f"+2547110000{i:02d}" for i in range(9)]
    (first, second, listed, notice, failed, sent, cancelled, fresh, stale) = _campaign(
        db, phones)
    _set(db, notice, opt_out_notice=True)  # the confirmation to a number that just opted out
    _set(db, failed, status=MessageStatus.FAILED, attempts=1)  # not asked for: retries only
    _set(db, sent, status=MessageStatus.SENT, attempts=1)
    _set(db, cancelled, status=MessageStatus.CANCELLED)
    # Being sent by a live worker, and left 'sending' by one that died before the lease.
    _set(db, fresh, status=MessageStatus.SENDING, attempts=1,
         claimed_at=NOW - timedelta(seconds=CLAIM_LEASE_S - 1))
    _set(db, stale, status=MessageStatus.SENDING, attempts=2,
         claimed_at=NOW - timedelta(seconds=CLAIM_LEASE_S + 1))
    with db.session() as session:
        add_optouts(session, [phones[2], phones[3]], region="KE")
    before = _rows(db)

    asked = [stale, sent, second, listed, fresh, notice, failed, first, cancelled]
    with db.session() as session:
        claimed = claim_many(session, asked, [MessageStatus.QUEUED], "bulk_messages", NOW)

    # In the order asked for, only the rows that could be claimed; each with its own text.
    assert [c.sms.message_id for c in claimed] == [stale, second, listed, notice, first]
    assert {c.sms.message_id: (c.suppressed, c.attempts) for c in claimed} == {
        stale: (False, 3), second: (False, 1), listed: (True, 0), notice: (False, 1),
        first: (False, 1)}
    assert all(c.sms.body == f"Hi {c.sms.to}" and c.queue == "bulk_messages" for c in claimed)
    after = _rows(db)
    for taken in (first, second, notice, stale):
        assert after[taken][:2] == ("sending", before[taken][1] + 1)
        assert after[taken][2] == NOW  # one claim time for the batch: its lease
    assert after[listed] == ("suppressed", 0, None)  # no attempt spent, nothing leased
    for untouched in (failed, sent, cancelled, fresh):
        assert after[untouched] == before[untouched]

    # Claimed once: the same batch again finds nothing (the stale one is fresh now).
    with db.session() as session:
        assert claim_many(session, asked, [MessageStatus.QUEUED], "bulk_messages", NOW) == []
        assert claim_many(session, [], [MessageStatus.QUEUED], "bulk_messages", NOW) == []


def test_a_batch_of_retries_claims_only_failed_rows(db: Database) -> None:
    queued, failed = _campaign(db, ["+254711000100", "+254711000101"])
    _set(db, failed, status=MessageStatus.FAILED, attempts=1)
    with db.session() as session:
        claimed = claim_many(session, [queued, failed], [MessageStatus.FAILED], "messages",
                             NOW)
    assert [(c.sms.message_id, c.attempts) for c in claimed] == [(failed, 2)]
    assert _rows(db)[queued] == ("queued", 0, None)


@pytest.mark.parametrize("can_fetch_status", [True, False])
def test_the_sent_ones_are_recorded_together_each_with_its_provider_id(
        db: Database, can_fetch_status: bool) -> None:
    a, b, c = _campaign(db, ["+254711000200", "+254711000201", "+254711000202"])
    with db.session() as session:
        claim_many(session, [a, b, c], [MessageStatus.QUEUED], "bulk_messages", NOW)
    later = NOW + timedelta(seconds=2)
    with db.session() as session:
        mark_sent_many(session, [(a, SendResult(Outcome.SENT, provider_message_id="p-a")),
                                 (b, SendResult(Outcome.SENT))],
                       provider="sandbox", can_fetch_status=can_fetch_status,
                       report_poll_s=60, now=later)
        mark_sent_many(session, [], provider="sandbox")  # nothing to record: no statement
    with db.session() as session:
        rows = {m.id: m for m in session.scalars(select(OutgoingMessage))}
        poll_at = later + timedelta(seconds=60) if can_fetch_status else None
        for message_id, provider_id in ((a, "p-a"), (b, None)):
            row = rows[message_id]
            assert (row.status, row.provider, row.provider_message_id, row.delivery,
                    row.claimed_at, row.sent_at, row.report_poll_at, row.attempts) == (
                "sent", "sandbox", provider_id, DeliveryStatus.AWAITING_REPORT, None, later,
                poll_at, 1)
        # Not in the batch: still being sent, its claim untouched.
        assert (rows[c].status, rows[c].claimed_at, rows[c].sent_at) == ("sending", NOW, None)


def test_a_batch_record_that_fails_records_none(db: Database) -> None:
    a, b = _campaign(db, ["+254711000300", "+254711000301"])
    with db.session() as session:
        claim_many(session, [a, b], [MessageStatus.QUEUED], "bulk_messages", NOW)
    def record_then_fail() -> None:
        with db.session() as session:
            mark_sent_many(session, [(a, SendResult(Outcome.SENT, provider_message_id="p-a")),
                                     (b, SendResult(Outcome.SENT, provider_message_id="p-b"))],
                           provider="sandbox")
            raise RuntimeError("the database went away before the commit")

    with pytest.raises(RuntimeError):
        record_then_fail()
    # Both still 'sending' under their claim: the lease sweep takes them over, none is lost.
    assert {k: v[0] for k, v in _rows(db).items()} == {a: "sending", b: "sending"}



def test_sqlite_claims_a_batch_by_primary_key_however_many_are_queued(
        settings: Settings) -> None:
    """Without statistics, SQLite would answer the claim's status test from the status
    index, walking every queued message of the campaign for each batch: a claim whose cost
    grows with the campaign. The claim it runs must look the batch's ids up by primary
    key."""
    db = open_database(settings)  # the SQLite default
    ids = _campaign(db, [f"+2547110004{i:02d}" for i in range(25)])  # a batch of 25
    run: list[tuple[str, Any]] = []

    def keep(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.startswith("UPDATE outgoing_messages"):
            run.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", keep)
    try:
        with db.session() as session:
            assert len(claim_many(session, ids, [MessageStatus.QUEUED], "bulk_messages",
                                  NOW)) == 25
    finally:
        event.remove(db.engine, "before_cursor_execute", keep)
    [(statement, parameters)] = run
    with db.engine.connect() as connection:
        plan = [row[-1] for row in connection.exec_driver_sql(
            f"EXPLAIN QUERY PLAN {statement}", parameters)]
    assert any("INTEGER PRIMARY KEY" in step for step in plan), plan
    assert not any("ix_outgoing_messages_status" in step for step in plan), plan
