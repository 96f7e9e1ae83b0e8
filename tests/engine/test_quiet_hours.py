"""Quiet hours in the worker: a job whose turn comes inside its campaign's window goes back
to the durable schedule until the window's end, unclaimed; the campaign's other scheduled
jobs move by the same amount once, so its pacing is kept. Real Redis, real SQLite, real
HTTP to the sandbox gateway; the clock is injected, or the window is set around now."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from engine.config.settings import Settings, load_settings
from engine.domain.personalize import Recipient
from engine.domain.send_window import SendWindow
from engine.infra import redis_keys, scheduler
from engine.infra.celery_app import PUBLISHED_HEADER, publish
from engine.infra.connections import celery_for
from engine.infra.embedded_redis import EmbeddedRedis
from engine.infra.sandbox_gateway import GatewayServer
from engine.monitoring import wait_alerts
from engine.monitoring.queue_status import broker_load
from engine.operations.campaigns import create_campaign_to
from engine.pipeline import quiet_hold, tasks
from engine.pipeline.broker_jobs import campaigns_with_jobs
from engine.pipeline.dispatcher import STALL_S, requeue_lost_campaigns
from engine.pipeline.runtime import Runtime, build_runtime
from engine.pipeline.sender import SEND_CHUNK, SEND_MESSAGE, message_job, send_messages
from engine.store.campaign_state import campaign_summary
from engine.store.db import open_database
from engine.store.models import Campaign, CampaignStatus, MessageStatus, OutgoingMessage
from tests.support import wait_for

WINDOW = SendWindow.of("UTC", "21:00-07:00")
NOW = datetime(2026, 12, 2, 22, 30, tzinfo=UTC)  # inside the window
UNTIL = datetime(2026, 12, 3, 7, 0, tzinfo=UTC)
DELTA = (UNTIL - NOW).total_seconds()


def schedule(client: Any) -> dict[str, float]:
    """Every scheduled entry (raw JSON, or another program's text) with its due time."""
    return {raw.decode(): due for raw, due in
            client.zrange(redis_keys.SCHEDULED, 0, -1, withscores=True)}


def job(campaign: int, message: int) -> scheduler.Job:
    return message_job(campaign, message, "messages", retry=False)


def test_a_job_inside_the_window_waits_for_its_end_and_the_campaign_keeps_its_pacing(
        redis_client: Any) -> None:
    t = NOW.timestamp()
    paced = [(t + 10 * i, job(5, 100 + i)) for i in range(1, 4)]
    overdue = (t - 100, job(5, 99))  # due before now, not released yet
    other = (t + 15, job(6, 200))
    scheduler.schedule(redis_client, [*paced, overdue, other])
    redis_client.zadd(redis_keys.SCHEDULED, {"not a relaydesk job": t + 1})

    assert quiet_hold.hold(redis_client, WINDOW, 5, job(5, 100), NOW) == UNTIL

    entries = schedule(redis_client)
    end = UNTIL.timestamp()
    assert [entries[j.encode()] for _, j in paced] == [end + 10, end + 20, end + 30]
    assert entries[overdue[1].encode()] == end  # not before the end, however late it was
    assert entries[other[1].encode()] == t + 15  # another campaign is not moved
    assert entries["not a relaydesk job"] == t + 1
    held = [raw for raw in entries if '"args":[5,100,false]' in raw]
    assert len(held) == 1
    assert entries[held[0]] == end
    # The job itself was put back, not claimed: a copy is due at the end.
    assert scheduler.Job.decode(held[0]).task == SEND_MESSAGE


def test_the_campaign_is_moved_once_however_many_of_its_jobs_meet_the_window(
        redis_client: Any) -> None:
    t = NOW.timestamp()
    paced = (t + 60, job(5, 300))
    scheduler.schedule(redis_client, [paced])
    # Jobs already published when the window began meet it one after the other.
    for i in range(50):
        assert quiet_hold.hold(redis_client, WINDOW, 5, job(5, i),
                               NOW + timedelta(seconds=i)) == UNTIL
    entries = schedule(redis_client)
    assert entries[paced[1].encode()] == UNTIL.timestamp() + 60  # moved once, not 50 times
    assert sorted(entries.values()) == [UNTIL.timestamp()] * 50 + [UNTIL.timestamp() + 60]


def test_jobs_planned_again_inside_the_window_are_moved_with_their_pacing(
        redis_client: Any) -> None:
    """A resume inside the window plans the campaign's jobs again from now: once the
    earlier move is forgotten, the first to meet the window moves the new plan."""
    quiet_hold.hold(redis_client, WINDOW, 5, job(5, 0), NOW)
    redis_client.delete(redis_keys.SCHEDULED)  # the resume drops the old plan
    quiet_hold.forget_moves(redis_client, 5)
    resumed_at = NOW + timedelta(hours=2)
    t = resumed_at.timestamp()
    plan = [(t + 10 * i, job(5, 100 + i)) for i in range(1, 3)]
    scheduler.schedule(redis_client, plan)
    assert quiet_hold.hold(redis_client, WINDOW, 5, job(5, 100), resumed_at) == UNTIL
    entries = schedule(redis_client)
    end = UNTIL.timestamp()
    assert [entries[j.encode()] for _, j in plan] == [end + 10, end + 20]


def test_outside_the_window_nothing_is_held(redis_client: Any) -> None:
    scheduler.schedule(redis_client, [(NOW.timestamp() + 5, job(5, 1))])
    before = schedule(redis_client)
    for now in (UNTIL, datetime(2026, 12, 2, 20, 59, 59, tzinfo=UTC)):
        assert quiet_hold.hold(redis_client, WINDOW, 5, job(5, 2), now) is None
        assert quiet_hold.first_start(redis_client, WINDOW, 5, now) == now.timestamp()
    assert quiet_hold.hold(redis_client, SendWindow("UTC"), 5, job(5, 2), NOW) is None
    assert schedule(redis_client) == before


def test_the_window_is_judged_in_the_campaign_s_time_zone(redis_client: Any) -> None:
    nairobi = SendWindow.of("Africa/Nairobi", "21:00-07:00")  # UTC+3
    now = datetime(2026, 12, 2, 19, 30, tzinfo=UTC)  # 22:30 in Nairobi, 19:30 in UTC
    until = quiet_hold.hold(redis_client, nairobi, 5, job(5, 1), now)
    assert until == datetime(2026, 12, 3, 4, 0, tzinfo=UTC)
    assert nairobi.describe_hold(until) == "waiting for the send window (until 07:00)"
    assert quiet_hold.hold(redis_client, WINDOW, 6, job(6, 1), now) is None


def test_a_bulk_campaign_starting_inside_the_window_plans_from_its_end(
        redis_client: Any) -> None:
    start = quiet_hold.first_start(redis_client, WINDOW, 5, NOW)
    assert start == UNTIL.timestamp()
    chunks = [(start + 30 * i, job(5, i)) for i in range(3)]
    scheduler.schedule(redis_client, chunks)
    # A job of the campaign meeting the window later does not move the planned chunks.
    quiet_hold.hold(redis_client, WINDOW, 5, job(5, 99), NOW + timedelta(minutes=1))
    entries = schedule(redis_client)
    assert [entries[j.encode()] for _, j in chunks] == [start, start + 30, start + 60]


# --- the worker's path: real SQLite, Redis and sandbox gateway, the window around now -----

def window_around_now() -> str:
    """Quiet hours (UTC, as the suite's RELAYDESK_TIMEZONE) from 10 minutes ago to 10
    minutes ahead: whatever the time of day, now is inside."""
    now = datetime.now(UTC)
    return f"{now - timedelta(minutes=10):%H:%M}-{now + timedelta(minutes=10):%H:%M}"


@pytest.fixture
def quiet_now(db_settings: Settings, monkeypatch: pytest.MonkeyPatch, redis_client: Any,
              gateway: GatewayServer) -> Settings:
    """SQLite, and PostgreSQL when a server is given; the window around now."""
    monkeypatch.setenv("RELAYDESK_QUIET_HOURS", window_around_now())
    monkeypatch.setenv("RELAYDESK_QUIET_HOURS_URGENT", "send")
    return load_settings()


@pytest.fixture
def rt(quiet_now: Settings) -> Any:
    runtime = build_runtime(quiet_now)
    yield runtime
    runtime.pool.shutdown()


def new_campaign(settings: Settings, count: int, *, urgent: bool = False) -> tuple[int, list[int]]:
    db = open_database(settings)
    # Numbers that never end like the sandbox's test numbers (which fail on purpose).
    recipients = [(None, f"+25471234{i:02d}55", Recipient(f"M{i}", 100_00, 0, date(2030, 1, 1)))
                  for i in range(count)]
    created = create_campaign_to(db, settings, "Hello", recipients, urgent=urgent)
    with db.session() as session:
        ids = list(session.scalars(select(OutgoingMessage.id).where(
            OutgoingMessage.campaign_id == created.id).order_by(OutgoingMessage.id)))
    return created.id, ids


def messages(settings: Settings, campaign: int) -> list[tuple[str, int]]:
    with open_database(settings).session() as session:
        return [(str(s), a) for s, a in session.execute(
            select(OutgoingMessage.status, OutgoingMessage.attempts)
            .where(OutgoingMessage.campaign_id == campaign).order_by(OutgoingMessage.id))]


def held_jobs(client: Any) -> list[tuple[float, scheduler.Job]]:
    return [(due, scheduler.Job.decode(raw)) for raw, due in
            client.zrange(redis_keys.SCHEDULED, 0, -1, withscores=True)]


def test_a_chunk_inside_the_window_is_put_back_whole_without_spending_attempts(
        rt: Runtime, quiet_now: Settings, redis_client: Any, gateway: GatewayServer) -> None:
    campaign, ids = new_campaign(quiet_now, 3)
    expected = quiet_now.send_window().held_until(datetime.now(UTC))
    assert expected is not None

    send_messages(rt, campaign, ids, [MessageStatus.QUEUED], SEND_CHUNK)

    assert gateway.state.received == 0
    assert messages(quiet_now, campaign) == [("queued", 0)] * 3
    [(due, again)] = held_jobs(redis_client)
    assert (again.task, again.args, again.queue) == (SEND_CHUNK, [campaign, ids], "messages")
    assert due == expected.timestamp()
    # Waiting on purpose: its job is in the broker, so the stall sweep leaves it alone
    # however long the window lasts.
    assert campaign in campaigns_with_jobs(redis_client)
    long_ago = datetime.now(UTC) - timedelta(seconds=STALL_S * 10)
    with open_database(quiet_now).session() as session:
        session.execute(update(Campaign).where(Campaign.id == campaign)
                        .values(created_at=long_ago))
        session.execute(update(OutgoingMessage).where(OutgoingMessage.campaign_id == campaign)
                        .values(updated_at=long_ago))
    requeue_lost_campaigns(rt)
    assert held_jobs(redis_client) == [(due, again)]


def test_a_retry_inside_the_window_stays_a_retry_and_keeps_its_attempts(
        rt: Runtime, quiet_now: Settings, redis_client: Any, gateway: GatewayServer) -> None:
    campaign, [message] = new_campaign(quiet_now, 1)
    with open_database(quiet_now).session() as session:
        session.execute(update(OutgoingMessage).where(OutgoingMessage.id == message)
                        .values(status=MessageStatus.FAILED, attempts=1))

    send_messages(rt, campaign, [message], [MessageStatus.FAILED], SEND_MESSAGE)

    assert gateway.state.received == 0
    assert messages(quiet_now, campaign) == [("failed", 1)]
    [(_, again)] = held_jobs(redis_client)
    assert (again.task, again.args) == (SEND_MESSAGE, [campaign, message, True])


def test_an_urgent_campaign_goes_out_inside_the_window_when_set_to_send(
        rt: Runtime, quiet_now: Settings, redis_client: Any, gateway: GatewayServer) -> None:
    campaign, ids = new_campaign(quiet_now, 2, urgent=True)
    send_messages(rt, campaign, ids, [MessageStatus.QUEUED], SEND_CHUNK)
    assert gateway.state.received == 2
    assert messages(quiet_now, campaign) == [("sent", 1)] * 2
    assert held_jobs(redis_client) == []


def test_process_bulk_inside_the_window_plans_its_chunks_from_the_window_s_end(
        rt: Runtime, quiet_now: Settings, redis_client: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tasks, "runtime", lambda: rt)
    campaign, ids = new_campaign(quiet_now, 5)
    expected = quiet_now.send_window().held_until(datetime.now(UTC))
    assert expected is not None
    assert tasks.process_bulk.run(campaign) == 1
    [(due, chunk)] = held_jobs(redis_client)
    assert (chunk.task, chunk.args) == (SEND_CHUNK, [campaign, ids])
    assert due == expected.timestamp()


def test_the_summary_says_the_campaign_is_waiting_for_its_window(quiet_now: Settings) -> None:
    campaign, _ = new_campaign(quiet_now, 2)
    db = open_database(quiet_now)
    with db.session() as session:
        session.execute(update(Campaign).where(Campaign.id == campaign)
                        .values(quiet_hours=str(WINDOW.quiet_hours)))
    with db.session() as session:
        held = campaign_summary(session, campaign, now=NOW)
        free = campaign_summary(session, campaign, now=UNTIL)
    assert held is not None
    assert free is not None
    assert held["held_until"] == UNTIL.isoformat()
    assert held["state_note"] == "waiting for the send window (until 07:00)"
    assert (free["held_until"], free["state_note"]) == (None, None)
    # A paused campaign says why it is paused instead; a finished one waits for nothing.
    for status in (CampaignStatus.PAUSED, CampaignStatus.COMPLETED):
        with db.session() as session:
            session.execute(update(Campaign).where(Campaign.id == campaign)
                            .values(status=status))
        with db.session() as session:
            summary = campaign_summary(session, campaign, now=NOW)
        assert summary is not None
        assert summary["held_until"] is None


def test_held_work_never_counts_as_a_long_wait(
        rt: Runtime, quiet_now: Settings, redis_client: Any,
        embedded_redis: EmbeddedRedis) -> None:
    """The alert measures how long the oldest job has sat in a Celery queue. A job that was
    already in its queue when the window began is taken by a worker, held and acknowledged:
    it waits in the schedule, and is published afresh at the window's end."""
    app = celery_for(embedded_redis.url())
    campaign, ids = new_campaign(quiet_now, 2)
    app.send_task(SEND_CHUNK, args=[campaign, ids], queue="messages",
                  headers={PUBLISHED_HEADER: time.time() - 900})  # queued 15 minutes ago
    wait_for(lambda: broker_load(redis_client).queues["messages"].waiting == 1,
             message="the job in its queue")
    assert [a.queue for a in wait_alerts.over_threshold(quiet_now, broker_load(redis_client))] \
        == ["messages"]  # left there, it would raise the alert

    with app.connection_for_read() as connection:  # what a worker does with it
        message = connection.default_channel.basic_get("messages", no_ack=False)
        assert message is not None
        send_messages(rt, campaign, ids, [MessageStatus.QUEUED], SEND_CHUNK)
        message.ack()
    load = broker_load(redis_client)
    assert (load.queues["messages"].waiting, load.queues["messages"].oldest_wait_s) == (0, 0.0)
    assert load.scheduled == 1
    assert wait_alerts.update(redis_client, quiet_now, load) == []
    assert wait_alerts.active(redis_client) == []

    # The window's end: the releaser publishes it with a new publish time.
    [raw] = redis_client.zrange(redis_keys.SCHEDULED, 0, -1)
    redis_client.zadd(redis_keys.SCHEDULED, {raw: time.time()}, xx=True)
    released_at = time.time()
    assert scheduler.release_due(redis_client, lambda j: publish(j.task, j.args, j.queue)) == 1
    load = broker_load(redis_client)
    assert load.queues["messages"].waiting == 1
    assert load.queues["messages"].oldest_wait_s <= time.time() - released_at
    assert wait_alerts.update(redis_client, quiet_now, load) == []
