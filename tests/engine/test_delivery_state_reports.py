"""Delivery state from delivery reports (engine.store.delivery_reports) and the send-side
changes in engine.store.delivery_state: duplicates, reports out of order, reports before
the send's commit, unknown ids, expiry, the opt-out notice at the claim; on SQLite and,
when a server is given, PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import String, cast, event, func, select, update

from engine.domain.delivery import DeliveryStatus, Report, ReportKind
from engine.domain.sending import Outcome, SendResult
from engine.store.db import Database
from engine.store.delivery_reports import (
    Applied,
    apply_reports,
    count_unmatched,
    expire_overdue,
    prune_unmatched,
    rematch_unmatched,
)
from engine.store.delivery_state import claim, mark_sent
from engine.store.models import (
    Campaign,
    CampaignStatus,
    DeliveryReport,
    MessageStatus,
    OutgoingMessage,
    utcnow,
)
from engine.store.optouts import add_optouts

KEYWORDS: dict[str, Any] = {"optout_keywords": ("STOP",), "optin_keywords": ("START",)}
DELIVERED, UNDELIVERED = DeliveryStatus.DELIVERED, DeliveryStatus.UNDELIVERED


def campaign_with(db: Database, phones: list[str], *, notice: bool = False) -> list[int]:
    """A sending campaign's queued messages, one per phone; their ids."""
    with db.session() as session:
        campaign = Campaign(name="Reminder", template="Hi", route="individual",
                            queue="messages", status=CampaignStatus.SENDING)
        session.add(campaign)
        session.flush()
        messages = [OutgoingMessage(campaign_id=campaign.id, phone=p, body="Hi",
                                    encoding="GSM-7", segments=1, opt_out_notice=notice)
                    for p in phones]
        session.add_all(messages)
        session.flush()
        return [m.id for m in messages]


def send(db: Database, message_id: int, *, provider: str = "sandbox",
         sent_at: datetime | None = None, can_fetch_status: bool = False) -> str:
    """Claim and mark the message sent, as the sender does; its provider id."""
    provider_id = f"{provider}-{message_id}"
    with db.session() as session:
        assert claim(session, message_id, [MessageStatus.QUEUED], "messages") is not None
        mark_sent(session, message_id, SendResult(Outcome.SENT, provider_message_id=provider_id),
                  provider=provider, can_fetch_status=can_fetch_status, report_poll_s=120,
                  now=sent_at)
    return provider_id


def sent(db: Database, count: int, **kwargs: Any) -> list[tuple[int, str]]:
    """(message id, provider id) of ``count`` messages sent."""
    ids = campaign_with(db, [f"+2547120000{i:02d}" for i in range(count)])
    return [(mid, send(db, mid, **kwargs)) for mid in ids]


def status(provider_id: str, value: DeliveryStatus | None, *, provider: str = "sandbox",
           word: str = "", error: str = "", at: datetime | None = None) -> Report:
    return Report(ReportKind.STATUS, provider, message_id=provider_id, status=value,
                  provider_status=word or str(value or "sent"), error=error,
                  received_at=(at or utcnow()).timestamp())


def apply(db: Database, *reports: Report) -> Applied:
    with db.session() as session:
        return apply_reports(session, list(reports), **KEYWORDS)


def delivery(db: Database, message_id: int) -> tuple[str | None, str | None]:
    with db.session() as session:
        message = session.get(OutgoingMessage, message_id)
        assert message is not None
        return message.delivery, message.delivery_error


def report_rows(db: Database) -> list[tuple[str, int | None, str | None]]:
    with db.session() as session:
        return [tuple(r) for r in session.execute(  # type: ignore[misc]
            select(DeliveryReport.provider_message_id, DeliveryReport.message_id,
                   DeliveryReport.status).order_by(DeliveryReport.id))]


# --- at send ----------------------------------------------------------------------------------

def test_a_sent_message_awaits_its_report_and_is_polled_only_where_the_provider_can_tell(
        db: Database) -> None:
    at = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
    polled, unpolled = campaign_with(db, ["+254712000001", "+254712000002"])
    send(db, polled, provider="twilio", sent_at=at, can_fetch_status=True)
    send(db, unpolled, provider="africastalking", sent_at=at)
    with db.session() as session:
        rows = {m.id: (m.status, m.provider, m.provider_message_id, m.delivery,
                       m.report_poll_at)
                for m in session.scalars(select(OutgoingMessage))}
    assert rows == {
        polled: ("sent", "twilio", f"twilio-{polled}", "awaiting_report",
                 at + timedelta(seconds=120)),
        unpolled: ("sent", "africastalking", f"africastalking-{unpolled}", "awaiting_report",
                   None)}


def test_the_claim_lets_the_opt_out_notice_through_and_suppresses_the_others(
        db: Database) -> None:
    phone = "+254712000003"
    [notice] = campaign_with(db, [phone], notice=True)
    [ordinary] = campaign_with(db, [phone])
    with db.session() as session:
        add_optouts(session, [phone], region="KE", reason="replied STOP")
    with db.session() as session:
        let_through = claim(session, notice, [MessageStatus.QUEUED], "messages")
        stopped = claim(session, ordinary, [MessageStatus.QUEUED], "messages")
    assert let_through is not None
    assert not let_through.suppressed
    assert let_through.attempts == 1
    assert stopped is not None
    assert stopped.suppressed
    with db.session() as session:
        assert dict(session.execute(
            select(OutgoingMessage.id, OutgoingMessage.status)).all()) == {
            notice: "sending", ordinary: "suppressed"}


# --- duplicates ---------------------------------------------------------------------------------

def test_the_same_report_applied_twice_counts_once(db: Database) -> None:
    [(mid, pid)] = sent(db, 1)
    report = status(pid, DELIVERED)
    first = apply(db, report, report)  # twice in one batch
    again = apply(db, report)  # and again later (a crash before the inbox was trimmed)
    assert (first.reports, first.delivered, first.duplicates) == (1, 1, 1)
    assert (again.reports, again.delivered, again.duplicates) == (0, 0, 1)
    assert report_rows(db) == [(pid, mid, "delivered")]
    assert delivery(db, mid) == ("delivered", None)


def test_two_receipts_with_the_same_content_are_both_kept_and_deliver_once(
        db: Database) -> None:
    [(mid, pid)] = sent(db, 1)
    first = apply(db, status(pid, DELIVERED))
    second = apply(db, status(pid, DELIVERED))  # the provider posted it twice
    assert (first.delivered, second.delivered) == (1, 0)
    assert (first.reports, second.reports) == (1, 1)
    assert report_rows(db) == [(pid, mid, "delivered")] * 2
    assert delivery(db, mid) == ("delivered", None)


# --- out of order -------------------------------------------------------------------------------

@pytest.mark.parametrize(("sequence", "final"), [
    # (status, provider's reason) in the order they arrive -> (delivery, delivery_error)
    ([(DELIVERED, ""), (None, "")], ("delivered", None)),  # a late "sent" changes nothing
    ([(None, ""), (DELIVERED, "")], ("delivered", None)),
    ([(UNDELIVERED, "absent subscriber"), (DELIVERED, "")], ("delivered", None)),
    ([(DELIVERED, ""), (UNDELIVERED, "absent subscriber")], ("delivered", None)),
    ([(None, ""), (UNDELIVERED, "30003")], ("undelivered", "30003")),
    ([(None, "")], ("awaiting_report", None)),
])
def test_reports_out_of_order_never_move_a_message_backwards(
        db: Database, sequence: list[tuple[DeliveryStatus | None, str]],
        final: tuple[str, str | None]) -> None:
    [(batched, batched_pid), (single, single_pid)] = sent(db, 2)
    apply(db, *[status(batched_pid, s, error=e) for s, e in sequence])  # in one batch
    for s, e in sequence:  # and one batch each
        apply(db, status(single_pid, s, error=e))
    assert delivery(db, batched) == final
    assert delivery(db, single) == final
    assert len(report_rows(db)) == 2 * len(sequence)  # every one recorded


def test_an_undelivered_report_keeps_the_reason_and_clears_the_poll(db: Database) -> None:
    [(mid, pid)] = sent(db, 1, provider="twilio", can_fetch_status=True)
    applied = apply(db, status(pid, UNDELIVERED, provider="twilio", word="undelivered",
                               error="30005 unknown destination handset"))
    assert applied.undelivered == 1
    with db.session() as session:
        message = session.get(OutgoingMessage, mid)
        assert message is not None
        assert (message.delivery, message.delivery_error, message.report_poll_at) == (
            "undelivered", "30005 unknown destination handset", None)


def test_a_report_from_another_provider_does_not_match(db: Database) -> None:
    [(mid, pid)] = sent(db, 1, provider="sandbox")
    applied = apply(db, status(pid, DELIVERED, provider="twilio"))
    assert (applied.unmatched, applied.delivered) == (1, 0)
    assert delivery(db, mid) == ("awaiting_report", None)


# --- before the send's commit, and unknown ids ---------------------------------------------------

def test_a_report_before_the_sends_commit_is_kept_then_matched(db: Database) -> None:
    [mid] = campaign_with(db, ["+254712000004"])
    pid = f"sandbox-{mid}"  # the provider answered, the worker has not recorded it yet
    early = apply(db, status(pid, DELIVERED))
    assert (early.reports, early.unmatched, early.delivered) == (1, 1, 0)
    with db.session() as session:
        assert count_unmatched(session) == 1
        assert rematch_unmatched(session) == 0  # its message has no provider id yet
    send(db, mid)
    assert delivery(db, mid) == ("awaiting_report", None)
    into = Applied()
    with db.session() as session:
        assert rematch_unmatched(session, into=into) == 1
    assert (into.delivered, into.by_provider["sandbox"].delivered) == (1, 1)
    assert delivery(db, mid) == ("delivered", None)
    assert report_rows(db) == [(pid, mid, "delivered")]
    with db.session() as session:
        assert count_unmatched(session) == 0
        assert rematch_unmatched(session) == 0  # matched once


def test_early_reports_are_matched_oldest_first_and_only_while_young(db: Database) -> None:
    first, second = campaign_with(db, ["+254712000005", "+254712000006"])
    now = utcnow()
    apply(db, status(f"sandbox-{first}", DELIVERED, at=now - timedelta(seconds=20)),
          status(f"sandbox-{first}", UNDELIVERED, error="late", at=now - timedelta(seconds=10)),
          status(f"sandbox-{second}", DELIVERED, at=now - timedelta(hours=2)))
    send(db, first)
    send(db, second)
    with db.session() as session:
        assert rematch_unmatched(session, within_s=3600) == 2  # the first's two reports
        assert count_unmatched(session) == 1  # the second's is too old: kept, counted
    assert delivery(db, first) == ("delivered", None)  # delivered first, then "undelivered"
    assert delivery(db, second) == ("awaiting_report", None)


def test_a_report_for_an_unknown_id_is_kept_and_counted(db: Database) -> None:
    sent(db, 1)
    applied = apply(db, status("nobody-knows", DELIVERED), status("", None))
    assert (applied.reports, applied.unmatched, applied.delivered) == (2, 2, 0)
    assert applied.by_provider["sandbox"].unmatched == 2  # for the metrics, per provider
    assert report_rows(db) == [("nobody-knows", None, "delivered"), ("", None, None)]
    with db.session() as session:
        assert count_unmatched(session) == 2


def test_old_unmatched_reports_are_pruned_oldest_first_and_nothing_else(
        db: Database) -> None:
    [(mid, pid)] = sent(db, 1)
    now = utcnow()
    apply(db, status("gone-3", DELIVERED, at=now - timedelta(days=9)),
          status("gone-1", DELIVERED, at=now - timedelta(days=11)),
          status("gone-2", None, at=now - timedelta(days=10)),
          status("young", DELIVERED, at=now - timedelta(days=6)),
          status(pid, DELIVERED, at=now - timedelta(days=30)))  # matched: kept
    with db.session() as session:
        assert count_unmatched(session) == 4
        assert prune_unmatched(session, 7 * 86400, limit=2) == 2
    assert [r[0] for r in report_rows(db)] == ["gone-3", "young", pid]
    with db.session() as session:
        assert prune_unmatched(session, 7 * 86400) == 1
        assert prune_unmatched(session, 7 * 86400) == 0
        assert count_unmatched(session) == 1
    assert report_rows(db) == [("young", None, "delivered"), (pid, mid, "delivered")]


# --- expiry -----------------------------------------------------------------------------------

def test_expiry_then_a_late_final_report_still_wins(db: Database) -> None:
    long_ago = utcnow() - timedelta(hours=49)
    (old, old_pid), (done, done_pid) = sent(db, 2, sent_at=long_ago)
    [(recent, _)] = sent(db, 1)
    apply(db, status(done_pid, DELIVERED))
    with db.session() as session:
        assert expire_overdue(session, 48 * 3600) == 1
        assert expire_overdue(session, 48 * 3600) == 0
    assert [delivery(db, m)[0] for m in (old, done, recent)] == [
        "expired", "delivered", "awaiting_report"]
    apply(db, status(old_pid, None))  # an intermediate one changes nothing
    assert delivery(db, old)[0] == "expired"
    late = apply(db, status(old_pid, UNDELIVERED, error="absent subscriber"))
    assert late.undelivered == 1
    assert delivery(db, old) == ("undelivered", "absent subscriber")


def test_expiry_takes_at_most_its_limit_at_a_time(db: Database) -> None:
    ids = sent(db, 5, sent_at=utcnow() - timedelta(days=3))
    with db.session() as session:
        assert expire_overdue(session, 3600, limit=3) == 3
        assert expire_overdue(session, 3600, limit=3) == 2
        assert session.scalar(select(func.count()).select_from(OutgoingMessage)
                              .where(OutgoingMessage.delivery == "expired")) == len(ids)


# --- counts, and a batch's cost --------------------------------------------------------------

def test_counts_per_campaign_and_provider_and_the_time_to_delivery(db: Database) -> None:
    at = utcnow() - timedelta(minutes=5)
    [(a, a_pid), (_b, b_pid)] = sent(db, 2, sent_at=at)
    applied = apply(db, status(a_pid, DELIVERED, at=at + timedelta(seconds=2.5)),
                    status(b_pid, UNDELIVERED, at=at + timedelta(seconds=4)),
                    status("unknown", None))
    with db.session() as session:
        campaign_id = session.scalar(select(OutgoingMessage.campaign_id)
                                     .where(OutgoingMessage.id == a))
        delivered_at = session.scalar(select(OutgoingMessage.delivery_at)
                                      .where(OutgoingMessage.id == a))
    assert (applied.reports, applied.delivered, applied.undelivered, applied.unmatched) == (
        3, 1, 1, 1)
    assert applied.by_campaign[campaign_id].delivered == 1
    assert applied.by_campaign[campaign_id].undelivered == 1
    provider = applied.by_provider["sandbox"]
    assert (provider.reports, provider.delivered, provider.undelivered) == (3, 1, 1)
    [time] = applied.delivery_times
    assert (time.provider, time.campaign_id, round(time.ms)) == ("sandbox", campaign_id, 2500)
    assert delivered_at == at + timedelta(seconds=2.5)


def bulk_sent(db: Database, count: int) -> list[tuple[int, str]]:
    """``count`` messages as mark_sent leaves them, written at once."""
    ids = campaign_with(db, [f"+2547130{i:05d}" for i in range(count)])
    with db.session() as session:
        session.execute(update(OutgoingMessage).where(OutgoingMessage.id.in_(ids)).values(
            status=MessageStatus.SENT, sent_at=utcnow(), provider="sandbox",
            provider_message_id="bulk-" + cast(OutgoingMessage.id, String),
            delivery=DeliveryStatus.AWAITING_REPORT))
    return [(mid, f"bulk-{mid}") for mid in ids]


def statements_for(db: Database, count: int) -> int:
    """How many statements applying ``count`` delivery reports (for as many messages)
    sends to the database: an executemany counts once."""
    pairs = bulk_sent(db, count)
    reports = [status(pid, DELIVERED if i % 2 else UNDELIVERED)
               for i, (_, pid) in enumerate(pairs)]
    seen: list[str] = []

    def count_statement(*args: Any) -> None:
        seen.append(args[2])

    event.listen(db.engine, "before_cursor_execute", count_statement)
    try:
        applied = apply(db, *reports)
    finally:
        event.remove(db.engine, "before_cursor_execute", count_statement)
    assert (applied.delivered, applied.undelivered) == (count // 2, count - count // 2)
    return len(seen)


def test_a_batch_costs_the_same_few_statements_whatever_its_size(db: Database) -> None:
    small = statements_for(db, 10)
    large = statements_for(db, 500)
    assert large == small
    assert large <= 8
