"""The report applier (engine.pipeline.report_applier) and its dispatcher members, end to
end: messages sent through the real sender to the sandbox gateway, reports read from the
real Redis inbox, applied to SQLite and, when a server is given, PostgreSQL."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import select, text, update

from engine.config.settings import Settings, load_settings
from engine.domain.delivery import DeliveryStatus, Report, ReportKind
from engine.domain.personalize import Recipient
from engine.infra import metrics, redis_keys, report_inbox, scheduler
from engine.infra.embedded_redis import free_port
from engine.infra.metrics import Metric
from engine.infra.sandbox_gateway import GatewayServer
from engine.operations.campaigns import create_campaign_to
from engine.pipeline import report_applier
from engine.pipeline.dispatcher import APPLY_EVERY_S, ReportApplier, Sweeps
from engine.pipeline.runtime import Runtime, build_runtime
from engine.pipeline.sender import SEND_CHUNK, SEND_MESSAGE, send_messages
from engine.store.delivery_reports import Applied, DeliveryTime, Tally
from engine.store.models import (
    Campaign,
    DeliveryReport,
    InboundMessage,
    MessageStatus,
    OptOut,
    OutgoingMessage,
    utcnow,
)
from tests.support import wait_for

CONFIRMATION = "You will get no more messages from us. Reply START to undo."


@pytest.fixture
def rt_settings(db_settings: Settings, redis_client: Any, gateway: GatewayServer,
                monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("RELAYDESK_OPTOUT_REPLY", CONFIRMATION)
    return load_settings()


@pytest.fixture
def rt(rt_settings: Settings) -> Iterator[Runtime]:
    runtime = build_runtime(rt_settings)
    yield runtime
    runtime.pool.shutdown()


def phone(i: int) -> str:
    return f"+25471234{i:02d}55"  # never one of the sandbox's test endings


def sent_campaign(rt: Runtime, count: int) -> tuple[int, list[tuple[int, str, str]]]:
    """A campaign sent through the real sender to the sandbox gateway: its id and its
    messages' (id, phone, provider id)."""
    recipients = [(None, phone(i), Recipient(f"M{i}", 100_00, 0, date(2030, 1, 1)))
                  for i in range(count)]
    created = create_campaign_to(rt.db, rt.settings, "Hello", recipients)
    with rt.db.session() as session:
        ids = list(session.scalars(select(OutgoingMessage.id).where(
            OutgoingMessage.campaign_id == created.id).order_by(OutgoingMessage.id)))
    send_messages(rt, created.id, ids, [MessageStatus.QUEUED], SEND_CHUNK)
    with rt.db.session() as session:
        rows = [(m.id, m.phone, m.provider_message_id or "") for m in session.scalars(
            select(OutgoingMessage).where(OutgoingMessage.campaign_id == created.id)
            .order_by(OutgoingMessage.id))]
    return created.id, rows


def status(provider_id: str, value: DeliveryStatus | None, error: str = "") -> Report:
    return Report(ReportKind.STATUS, "sandbox", message_id=provider_id, status=value,
                  provider_status=str(value or "sent"), error=error, received_at=time.time())


def reply(number: str, text: str) -> Report:
    return Report(ReportKind.INBOUND, "sandbox", phone=number, text=text,
                  received_at=time.time())


def deliveries(rt: Runtime, campaign_id: int) -> list[tuple[str | None, str | None]]:
    with rt.db.session() as session:
        return [(d, e) for d, e in session.execute(
            select(OutgoingMessage.delivery, OutgoingMessage.delivery_error)
            .where(OutgoingMessage.campaign_id == campaign_id).order_by(OutgoingMessage.id))]


def message_status(rt: Runtime, message_id: int) -> str | None:
    with rt.db.session() as session:
        return session.scalar(select(OutgoingMessage.status)
                              .where(OutgoingMessage.id == message_id))


def metric_totals(rt: Runtime, fields: list[str]) -> dict[str, int]:
    """The fields summed over the last minute of 10 s buckets."""
    res = metrics.resolutions(rt.settings)[0]
    series = metrics.read_series(rt.redis, res, fields, time.time() - 60)
    return {f: series.total(f) for f in fields}


def test_apply_pending_from_the_redis_inbox_end_to_end(rt: Runtime) -> None:
    campaign_id, rows = sent_campaign(rt, 3)
    with rt.db.session() as session:
        sent = [(m.status, m.provider, m.delivery, m.report_poll_at) for m in session.scalars(
            select(OutgoingMessage).where(OutgoingMessage.campaign_id == campaign_id))]
    # The sandbox cannot be asked for a status: nothing is scheduled for polling.
    assert sent == [("sent", "sandbox", "awaiting_report", None)] * 3
    (first_id, first_phone, first), (_, _, second), (_, _, third) = rows
    with rt.db.session() as session:
        sent_at = session.scalar(select(OutgoingMessage.sent_at)
                                 .where(OutgoingMessage.id == first_id))
    assert sent_at is not None
    delivered = dataclasses.replace(status(first, DeliveryStatus.DELIVERED),
                                    received_at=sent_at.timestamp() + 1.5)
    report_inbox.push(rt.redis, [
        delivered, status(second, DeliveryStatus.UNDELIVERED, "absent subscriber"),
        status(third, None), status("unknown-id", DeliveryStatus.DELIVERED),
        reply(first_phone, "Thank you!")])

    assert report_applier.apply_pending(rt) == 5
    assert report_inbox.pending(rt.redis) == 0
    assert report_applier.apply_pending(rt) == 0
    assert deliveries(rt, campaign_id) == [("delivered", None),
                                           ("undelivered", "absent subscriber"),
                                           ("awaiting_report", None)]
    with rt.db.session() as session:
        inbound = session.scalars(select(InboundMessage)).one()
        assert (inbound.phone, inbound.text, inbound.campaign_id) == (
            first_phone, "Thank you!", campaign_id)
    scope = metrics.campaign_scope(campaign_id)
    provider = metrics.provider_scope("sandbox")
    totals = metric_totals(rt, [
        metrics.field(metrics.ALL, Metric.REPORTS), metrics.field(provider, Metric.REPORTS),
        metrics.field(metrics.ALL, Metric.DELIVERED), metrics.field(scope, Metric.DELIVERED),
        metrics.field(provider, Metric.UNDELIVERED), metrics.field(scope, Metric.UNDELIVERED),
        metrics.field(metrics.ALL, Metric.INBOUND), metrics.field(metrics.ALL, Metric.UNMATCHED),
        metrics.field(provider, Metric.UNMATCHED)])
    assert list(totals.values()) == [5, 5, 1, 1, 1, 1, 1, 1, 1]  # "unknown-id": unmatched
    # From the send to the delivered report: 1.5 s, by campaign, provider and overall.
    times = [metrics.field(s, Metric.DELIVERY_MS) for s in (scope, provider, metrics.ALL)]
    assert set(metric_totals(rt, times).values()) == {1500}
    res = metrics.resolutions(rt.settings)[0]
    peak = metrics.field(metrics.ALL, Metric.DELIVERY_MAX_MS)
    assert metrics.read_series(rt.redis, res, [peak], time.time() - 60).peak(peak) == 1500


def test_the_opt_out_confirmation_is_sent_once_even_when_a_report_is_applied_twice(
        rt: Runtime, gateway: GatewayServer) -> None:
    number = phone(7)
    report_inbox.push(rt.redis, [reply(number, "STOP")])
    # The applier commits, then dies (or loses its lock) before trimming the inbox: here,
    # a lock token that is not held, so the entry stays.
    assert report_applier.apply_pending(rt, lock_token="lost") == 1
    assert report_inbox.pending(rt.redis) == 1
    assert report_applier.apply_pending(rt) == 1  # applied again, then trimmed
    assert report_inbox.pending(rt.redis) == 0
    with rt.db.session() as session:
        campaign = session.scalars(select(Campaign)).one()
        message = session.scalars(select(OutgoingMessage)).one()
        assert session.scalars(select(InboundMessage)).one().keyword == "optout"
        assert session.get(OptOut, number) is not None
    assert campaign.name.startswith(report_applier.CONFIRMATION_NAME)
    assert number not in campaign.name  # masked
    assert (message.phone, message.body, message.opt_out_notice) == (number, CONFIRMATION, True)
    due = [scheduler.Job.decode(raw) for raw in rt.redis.zrange(redis_keys.SCHEDULED, 0, -1)]
    assert [(job.task, job.args[:2]) for job in due] == [(SEND_MESSAGE, [campaign.id,
                                                                          message.id])]

    # Through the normal send path: the opt-out list lets the notice through...
    before = gateway.state.received
    send_messages(rt, campaign.id, [message.id], [MessageStatus.QUEUED], SEND_MESSAGE)
    assert gateway.state.received == before + 1
    assert message_status(rt, message.id) == "sent"
    # ...and stops every other message to that number.
    recipients = [(None, number, Recipient("M", 100_00, 0, date(2030, 1, 1)))]
    later = create_campaign_to(rt.db, rt.settings, "Hello again", recipients)
    with rt.db.session() as session:
        later_id = session.scalars(select(OutgoingMessage.id)
                                   .where(OutgoingMessage.campaign_id == later.id)).one()
    send_messages(rt, later.id, [later_id], [MessageStatus.QUEUED], SEND_MESSAGE)
    assert gateway.state.received == before + 1
    assert message_status(rt, later_id) == "suppressed"


def test_no_confirmation_without_the_setting_nor_to_a_short_code(rt: Runtime) -> None:
    quiet = dataclasses.replace(rt, settings=dataclasses.replace(rt.settings, optout_reply=None))
    report_inbox.push(rt.redis, [reply(phone(8), "stop")])
    assert report_applier.apply_pending(quiet) == 1
    report_inbox.push(rt.redis, [reply("22141", "stop")])  # cannot be texted
    assert report_applier.apply_pending(rt) == 1
    with rt.db.session() as session:
        assert session.get(OptOut, phone(8)) is not None
        assert session.get(OptOut, "22141") is not None
        assert session.scalars(select(Campaign)).all() == []


def test_the_inbox_is_trimmed_only_under_the_appliers_own_lock(rt: Runtime) -> None:
    report_inbox.push(rt.redis, [status("x", None), status("y", None)])
    rt.redis.set(redis_keys.REPORT_APPLY_LOCK, "mine", px=1000)
    assert report_applier.apply_pending(rt, limit=1, lock_token="mine") == 1
    assert report_inbox.pending(rt.redis) == 1
    assert rt.redis.pttl(redis_keys.REPORT_APPLY_LOCK) > 1000  # renewed with the batch
    assert report_applier.apply_pending(rt, lock_token="theirs") == 1
    assert report_inbox.pending(rt.redis) == 1  # not ours: left for the holder


def test_metrics_that_cannot_be_written_lose_nothing(rt: Runtime) -> None:
    dead = redis.Redis(port=free_port(), socket_connect_timeout=1,
                       retry=Retry(NoBackoff(), 0))
    applied = Applied(reports=1, delivered=1, by_provider={"sandbox": Tally(1, 1)},
                      by_campaign={1: Tally(delivered=1)},
                      delivery_times=[DeliveryTime("sandbox", 1, 1200.0)])
    report_applier.record_metrics(dataclasses.replace(rt, redis=dead), applied)  # no raise
    report_applier.record_metrics(rt, applied)
    assert metric_totals(rt, [metrics.field(metrics.ALL, Metric.DELIVERY_MS)]) == {
        metrics.field(metrics.ALL, Metric.DELIVERY_MS): 1200}


# --- the dispatcher's members -------------------------------------------------------------------

def test_the_dispatchers_applier_drains_the_inbox_and_rematches(rt: Runtime) -> None:
    campaign_id, [(message_id, _, provider_id)] = sent_campaign(rt, 1)
    applier = ReportApplier("w1")
    # Another worker is applying: this one leaves the inbox alone.
    rt.redis.set(redis_keys.REPORT_APPLY_LOCK, "other", px=60_000)
    report_inbox.push(rt.redis, [status(provider_id, DeliveryStatus.DELIVERED)] +
                      [status(f"unknown-{i}", None) for i in range(1200)])
    applier.run_if_due(rt, time.monotonic())
    assert applier.thread is None
    assert report_inbox.pending(rt.redis) == 1201
    rt.redis.delete(redis_keys.REPORT_APPLY_LOCK)

    def drained() -> bool:  # as the dispatcher's loop does: it looks again and again
        applier.run_if_due(rt, time.monotonic() + APPLY_EVERY_S)
        assert applier.thread is not None
        return not applier.thread.is_alive() and report_inbox.pending(rt.redis) == 0

    wait_for(drained, message="the inbox to be drained")
    assert rt.redis.get(redis_keys.REPORT_APPLY_LOCK) is None  # given back
    assert deliveries(rt, campaign_id) == [("delivered", None)]

    # A report that came before its send's commit is matched by a later run.
    with rt.db.session() as session:
        session.execute(update(OutgoingMessage).where(OutgoingMessage.id == message_id)
                        .values(provider_message_id="late-id", delivery="awaiting_report"))
    report_inbox.push(rt.redis, [status("late-id-2", DeliveryStatus.UNDELIVERED)])
    applier.last = 0.0
    applier.run_if_due(rt, time.monotonic())
    wait_for(lambda: applier.thread is not None and not applier.thread.is_alive(),
             message="the applier's run")
    with rt.db.session() as session:
        session.execute(update(OutgoingMessage).where(OutgoingMessage.id == message_id)
                        .values(provider_message_id="late-id-2"))
    applier.last = applier.last_rematch = 0.0
    applier.run_if_due(rt, time.monotonic() + 60)
    # No reason given: the provider's own word for the status stands for it.
    wait_for(lambda: deliveries(rt, campaign_id) == [("undelivered", "undelivered")],
             message="the early report to be matched")


def test_the_sweep_expires_messages_whose_report_never_came(rt: Runtime) -> None:
    campaign_id, [(old, _, _), (recent, _, _)] = sent_campaign(rt, 2)
    with rt.db.session() as session:
        session.execute(update(OutgoingMessage).where(OutgoingMessage.id == old).values(
            sent_at=utcnow() - timedelta(seconds=rt.settings.report_expiry_s + 60)))
    postgres = rt.db.engine.dialect.name == "postgresql"
    assert scattered_keys(rt) == postgres  # each statement appended its own rows there
    Sweeps("w1").run_if_due(rt, time.monotonic())
    assert [d for d, _ in deliveries(rt, campaign_id)] == ["expired", "awaiting_report"]
    assert not scattered_keys(rt)  # the sweep folded the campaign counts, one row per key
    assert recent != old


def scattered_keys(rt: Runtime) -> bool:
    """Whether a key of the kept campaign counts has more than one row (PostgreSQL)."""
    with rt.db.session() as session:
        return session.execute(text(
            "SELECT 1 FROM campaign_message_counts GROUP BY campaign_id, status, delivery "
            "HAVING COUNT(*) > 1")).first() is not None


def unmatched_ids(rt: Runtime) -> list[str]:
    with rt.db.session() as session:
        return sorted(session.scalars(select(DeliveryReport.provider_message_id)
                                      .where(DeliveryReport.message_id.is_(None))))


def test_the_sweep_prunes_unmatched_reports_past_their_retention(rt: Runtime) -> None:
    keep = timedelta(seconds=report_applier.UNMATCHED_KEEP_S)
    old = [dataclasses.replace(status(f"old-{i}", DeliveryStatus.DELIVERED),
                               received_at=(utcnow() - keep - timedelta(hours=i + 1))
                               .timestamp()) for i in range(5)]
    young = dataclasses.replace(status("young", DeliveryStatus.DELIVERED),
                                received_at=(utcnow() - keep + timedelta(hours=1)).timestamp())
    report_inbox.push(rt.redis, [*old, young])
    assert report_applier.apply_pending(rt) == 6
    assert len(unmatched_ids(rt)) == 6
    # In batches (here of 2: three transactions) until none is left.
    assert report_applier.prune_unmatched_reports(rt, batch=2) == 5
    assert unmatched_ids(rt) == ["young"]
    # The dispatcher's sweep does it.
    report_inbox.push(rt.redis, [dataclasses.replace(old[0], receipt="another")])
    assert report_applier.apply_pending(rt) == 1
    assert unmatched_ids(rt) == ["old-0", "young"]
    Sweeps("w1").run_if_due(rt, time.monotonic())
    assert unmatched_ids(rt) == ["young"]
