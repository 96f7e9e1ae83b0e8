"""What the operator reads about delivery: a campaign's delivered / undelivered / awaiting /
expired counts (campaign status, the Campaigns page rows), its messages filtered by delivery
status with the provider's reason, and the overview's delivery rate, time to delivery,
replies, reports waiting and unmatched (relaydesk status, the dashboard), plus
``relaydesk metrics``;
on SQLite and, when a server is given, PostgreSQL."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.config.settings import Settings
from engine.domain.delivery import DeliveryStatus, Report, ReportKind
from engine.infra import metrics, report_inbox
from engine.infra.metrics import Metric
from engine.monitoring.overview import gather
from engine.store.campaign_browser import campaign_page, count_messages, message_page
from engine.store.campaign_state import campaign_counts, campaign_summary
from engine.store.db import Database, open_database
from engine.store.delivery_reports import apply_reports
from engine.store.models import Campaign, CampaignStatus, MessageStatus, OutgoingMessage
from tests.support import run_cli

SENT_AT = datetime(2027, 3, 1, 9, tzinfo=UTC)

# (status, delivery, delivery_error) per message of the main campaign.
MESSAGES = [
    *[(MessageStatus.SENT, DeliveryStatus.DELIVERED, None)] * 3,
    (MessageStatus.SENT, DeliveryStatus.UNDELIVERED, "30003: Unreachable destination handset"),
    (MessageStatus.SENT, DeliveryStatus.UNDELIVERED, "Rejected"),
    (MessageStatus.SENT, DeliveryStatus.AWAITING_REPORT, None),
    (MessageStatus.SENT, DeliveryStatus.EXPIRED, None),
    (MessageStatus.QUEUED, None, None),
    (MessageStatus.QUEUED, None, None),
    (MessageStatus.DEAD, None, None),
]


def add_campaign(db: Database, name: str,
                 messages: list[tuple[str, str | None, str | None]]) -> tuple[int, list[int]]:
    """A campaign and its message rows, as the sender and the report applier leave them."""
    with db.session() as session:
        campaign = Campaign(name=name, template="Hi #name", route="individual",
                            queue="messages", status=CampaignStatus.SENDING,
                            recipients=len(messages), segments=len(messages))
        session.add(campaign)
        session.flush()
        rows = [OutgoingMessage(
            campaign_id=campaign.id, phone=f"+2547120{campaign.id:02d}{n:03d}",
            body=f"Hi {n}", encoding="GSM7", segments=1, status=status,
            attempts=1 if status != MessageStatus.QUEUED else 0,
            sent_at=SENT_AT if delivery else None, provider="sandbox" if delivery else None,
            provider_message_id=f"sb-{campaign.id}-{n}" if delivery else None,
            delivery=delivery, delivery_error=error,
            delivery_at=SENT_AT + timedelta(seconds=5)
            if delivery in (DeliveryStatus.DELIVERED, DeliveryStatus.UNDELIVERED) else None)
            for n, (status, delivery, error) in enumerate(messages)]
        session.add_all(rows)
        session.flush()
        return campaign.id, [r.id for r in rows]


def test_a_campaign_counts_its_messages_by_delivery_status(db: Database) -> None:
    campaign_id, _ = add_campaign(db, "Pledge drive", MESSAGES)
    quiet_id, _ = add_campaign(db, "Nothing reported yet",
                               [(MessageStatus.SENT, DeliveryStatus.AWAITING_REPORT, None),
                                (MessageStatus.QUEUED, None, None)])
    with db.session() as session:
        counts = campaign_counts(session, campaign_id)
        summary = campaign_summary(session, campaign_id)
        quiet = campaign_summary(session, quiet_id)
    assert summary is not None
    assert quiet is not None
    # Each message counts once per status and, once sent, once per delivery status.
    assert {k: counts[k] for k in ("sent", "queued", "dead", "attempts")} == {
        "sent": 7, "queued": 2, "dead": 1, "attempts": 8}
    expected = {"delivered": 3, "undelivered": 2, "awaiting_report": 1, "expired": 1}
    assert {k: counts[k] for k in expected} == expected
    assert {k: summary[k] for k in expected} == expected
    assert summary["delivery_rate"] == 0.6  # 3 of the 5 with a final report
    assert (summary["sent"], summary["pending"], summary["dead"]) == (7, 2, 1)
    assert {k: quiet[k] for k in expected} == {
        "delivered": 0, "undelivered": 0, "awaiting_report": 1, "expired": 0}
    assert quiet["delivery_rate"] is None  # no final report: no rate, not 0 %


def test_campaign_rows_and_the_message_list_filtered_by_delivery(db: Database) -> None:
    first, _ = add_campaign(db, "First", MESSAGES)
    second, second_ids = add_campaign(
        db, "Second", [(MessageStatus.SENT, DeliveryStatus.UNDELIVERED, "Failed: blocked"),
                       (MessageStatus.SENT, DeliveryStatus.DELIVERED, None)])
    with db.session() as session:
        rows = {r.id: r for r in campaign_page(session, 0, 10)}
        assert (rows[first].delivered, rows[first].undelivered) == (3, 2)
        assert (rows[second].delivered, rows[second].undelivered) == (1, 1)
        # The message-status figures come from the same query, unchanged.
        assert (rows[first].sent, rows[first].pending, rows[first].dead) == (7, 2, 1)

        assert count_messages(session, first) == len(MESSAGES)
        assert count_messages(session, first, delivery="undelivered") == 2
        assert count_messages(session, first, status="queued", delivery="delivered") == 0
        assert count_messages(session, first, status="sent", delivery="expired") == 1
        undelivered = message_page(session, first, None, 0, 10, delivery="undelivered")
        assert [(m.delivery, m.delivery_error) for m in undelivered] == [
            ("undelivered", "30003: Unreachable destination handset"),
            ("undelivered", "Rejected")]
        assert [m.id for m in message_page(session, first, None, 1, 1,
                                           delivery="undelivered")] == [undelivered[1].id]
        everything = message_page(session, second, None, 0, 10)
        assert [(m.id, m.delivery, m.delivery_error) for m in everything] == [
            (second_ids[0], "undelivered", "Failed: blocked"),
            (second_ids[1], "delivered", None)]
        queued = message_page(session, first, "queued", 0, 10)
        assert [m.delivery for m in queued] == [None, None]


def _record(client: Any, settings: Settings, at: float) -> None:
    sample = metrics.Sample()
    sample.add([metrics.ALL], Metric.DELIVERED, 4)
    sample.add([metrics.ALL], Metric.UNDELIVERED, 1)
    sample.timing([metrics.ALL], Metric.DELIVERY_MS, Metric.DELIVERY_MAX_MS, 2_000)
    sample.timing([metrics.ALL], Metric.DELIVERY_MS, Metric.DELIVERY_MAX_MS, 9_000)
    sample.add([metrics.ALL], Metric.DELIVERY_MS, 3 * 3_000)  # three more, 3 s each
    sample.add([metrics.ALL], Metric.INBOUND, 2)
    sample.add([metrics.ALL], Metric.REPORTS, 7)
    metrics.record(client, settings, sample, at)


def unknown_reports(db: Database, *ids: str) -> None:
    """Delivery reports for ids no message has: kept unmatched."""
    with db.session() as session:
        apply_reports(session, [Report(ReportKind.STATUS, "sandbox", i, DeliveryStatus.DELIVERED)
                                for i in ids], optout_keywords=(), optin_keywords=())


def test_the_overview_shows_delivery_time_replies_and_reports_waiting(
        db: Database, db_settings: Settings, redis_client: Any) -> None:
    with db.session() as session:
        before = gather(redis_client, session, db_settings)
    assert (before.delivery_rate, before.avg_delivery_s, before.max_delivery_s) == (
        None, None, None)
    assert (before.delivered, before.undelivered, before.replies,
            before.reports_pending, before.unmatched_reports) == (0, 0, 0, 0, 0)

    now = time.time()
    _record(redis_client, db_settings, now - 120)  # inside the last hour
    _record(redis_client, db_settings, now - 7200)  # before it: not counted
    report_inbox.push(redis_client, [
        Report(ReportKind.STATUS, "sandbox", "sb-1", DeliveryStatus.DELIVERED),
        Report(ReportKind.INBOUND, "sandbox", phone="+254712000001", text="Thanks")])
    unknown_reports(db, "nobody-1", "nobody-2", "nobody-3")
    with db.session() as session:
        overview = gather(redis_client, session, db_settings)
    assert (overview.delivered, overview.undelivered, overview.replies) == (4, 1, 2)
    assert overview.delivery_rate == 0.8
    assert overview.avg_delivery_s == 5.0  # (2 + 9 + 3 × 3) s over 4 delivered
    assert overview.max_delivery_s == 9.0
    assert overview.reports_pending == 2
    assert overview.unmatched_reports == 3
    shown = overview.as_dict()
    assert {k: shown[k] for k in ("delivery_rate", "delivered", "undelivered",
                                  "avg_delivery_s", "max_delivery_s", "replies",
                                  "reports_pending", "unmatched_reports")} == {
        "delivery_rate": 0.8, "delivered": 4, "undelivered": 1, "avg_delivery_s": 5.0,
        "max_delivery_s": 9.0, "replies": 2, "reports_pending": 2, "unmatched_reports": 3}
    assert "sent_last_hour" in shown  # the existing figures stay


def test_campaign_status_and_metrics_on_the_command_line(settings: Settings,
                                                         redis_client: Any) -> None:
    # SQLite only: the figures are tested on both databases above; this is the command.
    db = open_database(settings)
    campaign_id, _ = add_campaign(db, "Pledge drive", MESSAGES)
    unknown_reports(db, "nobody-1", "nobody-2")
    _record(redis_client, settings, time.time())
    commands = [("campaign", "status", str(campaign_id)),
                ("campaign", "status", str(campaign_id), "--json"),
                ("metrics", "--since", "15m", "--json"), ("status", "--json"), ("status",)]
    with ThreadPoolExecutor(len(commands)) as pool:  # independent processes: run together
        plain, as_json, figures, overview, status_text = pool.map(lambda a: run_cli(*a),
                                                                  commands)
    assert plain.returncode == 0, plain.stderr
    assert "Delivery: 3 delivered, 2 undelivered, 1 awaiting report, 1 expired" in \
        plain.stdout.splitlines()
    shown = json.loads(as_json.stdout)
    assert {k: shown[k] for k in ("delivered", "undelivered", "awaiting_report", "expired",
                                  "delivery_rate")} == {
        "delivered": 3, "undelivered": 2, "awaiting_report": 1, "expired": 1,
        "delivery_rate": 0.6}

    buckets = json.loads(figures.stdout)["buckets"]
    total = {name: sum(b[name] for b in buckets)
             for name in ("delivered", "undelivered", "inbound", "reports")}
    assert total == {"delivered": 4, "undelivered": 1, "inbound": 2, "reports": 7}
    busy = [b for b in buckets if b["delivered"]]
    assert [(b["delivery_avg_ms"], b["delivery_max_ms"], b["delivered_pct"])
            for b in busy] == [(5_000, 9_000, 80)]
    status = json.loads(overview.stdout)
    assert (status["delivered"], status["undelivered"], status["delivery_rate"],
            status["replies"], status["unmatched_reports"]) == (4, 1, 0.8, 2, 2)
    assert status_text.returncode == 0, status_text.stderr
    assert "replies, last hour          2  reports waiting 0  unmatched 2" in \
        status_text.stdout.splitlines()
