"""Scheduled campaigns: started once when due, with the figures and audience of their send
day, missed when found too late, and what an operator can do with them (reschedule, send
now, cancel). The clock is injected (``now=``) everywhere a rule depends on it; SQLite and,
when given, PostgreSQL."""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

import pytest
import redis
from sqlalchemy import func, select, update

from engine.config.settings import Settings
from engine.domain.audience import EVERYONE, Audience
from engine.domain.send_window import QuietHours
from engine.infra import redis_keys, scheduler
from engine.infra.connections import celery_for
from engine.infra.embedded_redis import EmbeddedRedis, free_port
from engine.operations.campaign_control import (
    _drop_scheduled,
    cancel_campaign,
    is_missed,
    reschedule_campaign,
    send_now,
)
from engine.operations.campaigns import CampaignError, create_campaign
from engine.operations.preview import PreviewError, preview_scheduled
from engine.pipeline import campaign_start, dispatcher
from engine.pipeline.broker_jobs import campaigns_with_jobs
from engine.pipeline.campaign_start import (
    MISSED_PREFIX,
    Started,
    due_campaigns,
    start_due_campaigns,
    start_scheduled,
)
from engine.pipeline.runtime import Runtime
from engine.pipeline.sender import PROCESS_BULK, SEND_MESSAGE
from engine.store.campaign_state import campaign_summary, stalled_campaigns
from engine.store.db import Database
from engine.store.models import Campaign, Contact, OptOut, OutgoingMessage, utcnow

NOW = datetime(2030, 3, 4, 9, 0, tzinfo=UTC)  # the operator schedules at this instant
AT = NOW + timedelta(days=3)  # 2030-03-07 09:00 UTC: the campaign's time
FIGURES = "#name: paid #paid_amount of #pledge, #balance left, #days_remain days"


def add_contact(db: Database, name: str, phone: str, *, pledge: int = 1000, paid: int = 0,
                due: date = date(2030, 3, 17)) -> int:
    with db.session() as session:
        contact = Contact(name=name, phone=phone, pledge_cents=pledge * 100,
                          paid_cents=paid * 100, due_date=due)
        session.add(contact)
        session.flush()
        return contact.id


def pay(db: Database, phone: str, paid: int) -> None:
    with db.session() as session:
        session.execute(update(Contact).where(Contact.phone == phone)
                        .values(paid_cents=paid * 100))


def opt_out(db: Database, phone: str) -> None:
    with db.session() as session:
        session.add(OptOut(phone=phone, reason="asked to stop", source="manual"))


def schedule(db: Database, settings: Settings, text: str = FIGURES, at: datetime = AT,
             audience: Audience = EVERYONE) -> int:
    # Scheduled at NOW, or an hour before a time chosen on the real clock.
    created = create_campaign(db, settings, text, audience=audience, at=at,
                              now=min(NOW, at - timedelta(hours=1)))
    assert created.scheduled_at == at
    return created.id


def summary(db: Database, campaign_id: int) -> dict[str, Any]:
    with db.session() as session:
        found = campaign_summary(session, campaign_id)
    assert found is not None
    return found


def scheduled_in_the_past(db: Database, settings: Settings, at: datetime,
                          text: str = FIGURES) -> int:
    """A campaign scheduled (as of NOW) and then found with its time at ``at``, already
    past on the real clock: what a worker that was not running meets."""
    campaign_id = schedule(db, settings, text)
    with db.session() as session:
        session.execute(update(Campaign).where(Campaign.id == campaign_id)
                        .values(scheduled_at=at))
    return campaign_id


def bodies(db: Database, campaign_id: int) -> dict[str, str]:
    with db.session() as session:
        rows = session.execute(select(OutgoingMessage.phone, OutgoingMessage.body)
                               .where(OutgoingMessage.campaign_id == campaign_id)).all()
        return {row.phone: row.body for row in rows}


def row_count(db: Database, campaign_id: int) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count(OutgoingMessage.id))
                                  .where(OutgoingMessage.campaign_id == campaign_id)) or 0)


def jobs_of(client: Any, campaign_id: int) -> list[scheduler.Job]:
    jobs = [scheduler.Job.decode(raw) for raw in client.zrange(redis_keys.SCHEDULED, 0, -1)]
    return [job for job in jobs if job.args[0] == campaign_id]


def test_starts_when_due_and_only_once(db: Database, redis_client: Any,
                                       db_settings: Settings) -> None:
    add_contact(db, "Ann", "+254711000001")
    add_contact(db, "Ben", "+254711000002")
    campaign = schedule(db, db_settings)
    assert summary(db, campaign)["status"] == "scheduled"
    assert row_count(db, campaign) == 0, "a scheduled campaign is rendered when due"

    for early in (NOW, AT - timedelta(seconds=1)):
        assert start_due_campaigns(db, redis_client, db_settings, now=early) == []
        assert start_scheduled(db, redis_client, db_settings, campaign, early) is None
    assert summary(db, campaign)["status"] == "scheduled"
    assert row_count(db, campaign) == 0
    assert jobs_of(redis_client, campaign) == []

    [started] = start_due_campaigns(db, redis_client, db_settings, now=AT + timedelta(seconds=2))
    assert (started.campaign_id, started.late_s) == (campaign, 2.0)
    state = summary(db, campaign)
    assert (state["status"], state["recipients"], state["pending"]) == ("sending", 2, 2)
    assert sorted(job.task for job in jobs_of(redis_client, campaign)) == [SEND_MESSAGE] * 2

    # Every later look, by any worker, finds it started: nothing is rendered or queued again.
    assert start_due_campaigns(db, redis_client, db_settings, now=AT + timedelta(minutes=1)) == []
    assert start_scheduled(db, redis_client, db_settings, campaign, AT, late_ok=True) is None
    assert row_count(db, campaign) == 2
    assert len(jobs_of(redis_client, campaign)) == 2


def test_found_later_than_the_max_it_waits_marked_missed(db: Database, redis_client: Any,
                                                         db_settings: Settings) -> None:
    add_contact(db, "Ann", "+254711000001")
    max_late = timedelta(seconds=db_settings.schedule_max_late_s)
    just_in_time = schedule(db, db_settings)
    missed = schedule(db, db_settings)

    assert start_scheduled(db, redis_client, db_settings, just_in_time, AT + max_late)
    assert start_scheduled(db, redis_client, db_settings, missed,
                           AT + max_late + timedelta(seconds=1)) is None
    state = summary(db, missed)
    assert state["status"] == "scheduled"
    assert is_missed(state)
    assert state["pause_reason"].startswith(f"{MISSED_PREFIX} (2030-03-07 09:00 UTC")
    assert row_count(db, missed) == 0
    assert jobs_of(redis_client, missed) == []

    # It is not due any more: no worker starts it, however often they look.
    later = AT + max_late + timedelta(hours=1)
    with db.session() as session:
        assert due_campaigns(session, later) == []
    assert start_due_campaigns(db, redis_client, db_settings, now=later) == []
    assert is_missed(summary(db, missed))


def test_reschedule_clears_the_missed_mark_and_refuses_bad_times(
        db: Database, redis_client: Any, db_settings: Settings) -> None:
    add_contact(db, "Ann", "+254711000001")
    campaign = schedule(db, db_settings)
    found = AT + timedelta(days=1)  # the computer was off for a day
    assert start_scheduled(db, redis_client, db_settings, campaign, found) is None
    assert is_missed(summary(db, campaign))

    with pytest.raises(CampaignError, match=r"2030-03-08 08:00 \(UTC\) is already past"):
        reschedule_campaign(db, campaign, found - timedelta(hours=1), db_settings, now=found)
    assert is_missed(summary(db, campaign)), "a refused reschedule changed the campaign"

    new_at = found + timedelta(hours=2)
    state = reschedule_campaign(db, campaign, new_at, db_settings, now=found)
    assert (state["status"], state["pause_reason"]) == ("scheduled", None)
    assert datetime.fromisoformat(state["scheduled_at"]) == new_at
    assert start_due_campaigns(db, redis_client, db_settings, now=new_at - timedelta(1)) == []
    [started] = start_due_campaigns(db, redis_client, db_settings, now=new_at)
    assert started.campaign_id == campaign
    assert row_count(db, campaign) == 1

    with pytest.raises(CampaignError, match=rf"cannot reschedule campaign {campaign}: it is "
                                            "sending, and only a scheduled campaign"):
        reschedule_campaign(db, campaign, new_at + timedelta(days=1), db_settings, now=found)


def test_reschedule_into_its_own_quiet_hours_is_refused(db: Database,
                                                        db_settings: Settings) -> None:
    """Judged by the quiet hours the campaign recorded, not today's settings."""
    add_contact(db, "Ann", "+254711000001")
    quiet = dataclasses.replace(db_settings, timezone="Africa/Nairobi",
                                quiet_hours=QuietHours.parse("21:00-07:00"))
    campaign = schedule(db, quiet)
    night = datetime(2030, 3, 7, 20, 0, tzinfo=UTC)  # 23:00 in Nairobi
    with pytest.raises(CampaignError, match=r"2030-03-07 23:00 is inside the campaign's quiet "
                                            r"hours \(21:00-07:00, Africa/Nairobi\).*"
                                            r"e\.g\. 2030-03-08 07:00"):
        reschedule_campaign(db, campaign, night, db_settings, now=NOW)
    morning = datetime(2030, 3, 8, 4, 0, tzinfo=UTC)  # 07:00 in Nairobi: the window's end
    state = reschedule_campaign(db, campaign, morning, db_settings, now=NOW)
    assert datetime.fromisoformat(state["scheduled_at"]) == morning


def test_send_now_starts_a_scheduled_or_missed_campaign_at_once(
        db: Database, redis_client: Any, db_settings: Settings) -> None:
    add_contact(db, "Ann", "+254711000001", paid=250)
    early = schedule(db, db_settings, "#name, #balance left", at=utcnow() + timedelta(days=30))
    state = send_now(db, redis_client, db_settings, early)
    assert (state["status"], state["recipients"], state["pending"]) == ("sending", 1, 1)
    assert bodies(db, early) == {"+254711000001": "Ann, 750 left"}

    missed = scheduled_in_the_past(db, db_settings, utcnow() - timedelta(days=2),
                                   "#name, #balance left")
    assert start_due_campaigns(db, redis_client, db_settings) == []  # too late: missed
    assert is_missed(summary(db, missed))
    state = send_now(db, redis_client, db_settings, missed)
    assert (state["status"], state["pause_reason"]) == ("sending", None)
    assert row_count(db, missed) == 1

    with pytest.raises(CampaignError, match=rf"cannot send now campaign {early}: it is "
                                            "sending, and only a scheduled campaign can be "
                                            "sent now"):
        send_now(db, redis_client, db_settings, early)
    with pytest.raises(CampaignError, match="there is no campaign 999"):
        send_now(db, redis_client, db_settings, 999)


def test_send_now_without_redis_changes_nothing(db: Database, db_settings: Settings) -> None:
    add_contact(db, "Ann", "+254711000001")
    campaign = schedule(db, db_settings)
    nowhere = redis.Redis(port=free_port(), socket_connect_timeout=1)
    with pytest.raises(CampaignError, match=r"Redis is unreachable .* was not started"):
        send_now(db, nowhere, db_settings, campaign)
    assert summary(db, campaign)["status"] == "scheduled"
    assert row_count(db, campaign) == 0


def test_cancel_a_scheduled_campaign_needs_no_redis(db: Database, redis_client: Any,
                                                    db_settings: Settings) -> None:
    add_contact(db, "Ann", "+254711000001")
    campaign = schedule(db, db_settings)
    nowhere = redis.Redis(port=free_port(), socket_connect_timeout=1)
    state = cancel_campaign(db, nowhere, campaign)
    assert (state["status"], state["sent"], state["cancelled"]) == ("cancelled", 0, 0)
    assert start_due_campaigns(db, redis_client, db_settings, now=AT) == []
    assert start_scheduled(db, redis_client, db_settings, campaign, AT, late_ok=True) is None
    assert row_count(db, campaign) == 0
    with pytest.raises(CampaignError, match=r"cannot reschedule campaign .*: it is cancelled"):
        reschedule_campaign(db, campaign, AT, db_settings, now=NOW)


@pytest.mark.parametrize("round_", range(3))
def test_two_starters_at_once_start_it_once(db: Database, redis_client: Any,
                                            db_settings: Settings, round_: int) -> None:
    """Two workers (or a worker and Send now) reach the same due campaign together: the
    conditional status update lets exactly one render and queue it."""
    for i in range(40):
        add_contact(db, f"M{i}", f"+2547110{round_}{i:04d}")
    campaign = schedule(db, db_settings)
    gate = threading.Barrier(2)
    results: list[Started | None] = []
    errors: list[BaseException] = []

    def starter(late_ok: bool) -> None:
        try:
            gate.wait()
            results.append(start_scheduled(db, redis_client, db_settings, campaign, AT,
                                           late_ok=late_ok))
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=starter, args=(late_ok,)) for late_ok in (False, True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len([r for r in results if r is not None]) == 1, results
    assert row_count(db, campaign) == 40
    assert len(jobs_of(redis_client, campaign)) == 40


def test_messages_carry_the_figures_of_the_send_day(db: Database, redis_client: Any,
                                                    db_settings: Settings) -> None:
    """A payment between scheduling and the start changes #paid_amount and #balance;
    #days_remain counts from the send day, in the zone the campaign recorded (here 14 h
    ahead of the UTC worker that starts it, so its send day is already the next date)."""
    add_contact(db, "Ann", "+254711000001", paid=100, due=date(2030, 3, 17))
    add_contact(db, "Ben", "+254711000002", paid=0, due=date(2030, 3, 10))
    kiritimati = dataclasses.replace(db_settings, timezone="Pacific/Kiritimati")
    at = datetime(2030, 3, 7, 12, 0, tzinfo=UTC)  # 2030-03-08 02:00 in Kiritimati
    campaign = schedule(db, kiritimati, at=at)
    pay(db, "+254711000001", 400)

    assert start_scheduled(db, redis_client, db_settings, campaign, at) is not None
    assert bodies(db, campaign) == {
        "+254711000001": "Ann: paid 400 of 1,000, 600 left, 9 days",
        "+254711000002": "Ben: paid 0 of 1,000, 1,000 left, 2 days",
    }


def test_the_audience_is_the_one_of_the_send_day(db: Database, redis_client: Any,
                                                 db_settings: Settings) -> None:
    add_contact(db, "Ann", "+254711000001")
    add_contact(db, "Ben", "+254711000002")
    add_contact(db, "Cy", "+254711000003", paid=1000)  # paid up: not owing
    campaign = schedule(db, db_settings, "#name", audience=Audience(owing=True))
    assert summary(db, campaign)["recipients"] == 2  # the estimate when scheduled

    opt_out(db, "+254711000001")  # Ann asks to stop
    add_contact(db, "Dee", "+254711000004")  # a new pledge, owing
    pay(db, "+254711000002", 1000)  # Ben pays in full

    assert start_scheduled(db, redis_client, db_settings, campaign, AT) is not None
    assert bodies(db, campaign) == {"+254711000004": "Dee"}
    state = summary(db, campaign)
    assert (state["recipients"], state["suppressed"]) == (1, 1)


def test_nobody_left_at_its_time_completes_it_empty(db: Database, redis_client: Any,
                                                    db_settings: Settings) -> None:
    ann = add_contact(db, "Ann", "+254711000001")
    add_contact(db, "Ben", "+254711000002")
    paid_up = schedule(db, db_settings, "#name", audience=Audience(owing=True))
    opted = schedule(db, db_settings, "#name", audience=Audience(ids=(ann,)))
    pay(db, "+254711000001", 1000)
    pay(db, "+254711000002", 1000)
    opt_out(db, "+254711000001")

    started = start_due_campaigns(db, redis_client, db_settings, now=AT)
    assert {s.campaign_id for s in started} == {paid_up, opted}
    assert all(s.created is None for s in started)
    for campaign, suppressed, why in ((paid_up, 0, "the campaign has no recipients"),
                                      (opted, 1, "have opted out")):
        state = summary(db, campaign)
        assert (state["status"], state["recipients"], state["suppressed"]) == \
            ("completed", 0, suppressed)
        assert state["pause_reason"].startswith("nobody to send to at its time: ")
        assert why in state["pause_reason"]
        assert row_count(db, campaign) == 0
        assert jobs_of(redis_client, campaign) == []


def test_one_campaign_failing_to_start_does_not_hold_up_the_others(
        db: Database, redis_client: Any, db_settings: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    add_contact(db, "Ann", "+254711000001")
    broken, fine = schedule(db, db_settings), schedule(db, db_settings)
    real_fill = campaign_start.fill_now

    def fill(session: Any, settings: Settings, campaign: Campaign, now: datetime) -> Any:
        if campaign.id == broken:
            raise RuntimeError("disk full")
        return real_fill(session, settings, campaign, now)

    monkeypatch.setattr(campaign_start, "fill_now", fill)
    [started] = start_due_campaigns(db, redis_client, db_settings, now=AT)
    assert started.campaign_id == fine
    assert summary(db, broken)["status"] == "scheduled", "a failed start must roll back"
    monkeypatch.setattr(campaign_start, "fill_now", real_fill)
    [started] = start_due_campaigns(db, redis_client, db_settings, now=AT)
    assert started.campaign_id == broken
    assert row_count(db, broken) == 1


def runtime_for(db: Database, client: Any, settings: Settings) -> Runtime:
    """What the dispatcher's steps read of a worker's runtime: settings, database, Redis."""
    return cast(Runtime, dataclasses.make_dataclass("R", ["settings", "db", "redis"])(
        settings, db, client))


def test_the_stall_sweep_leaves_scheduled_campaigns_alone_and_recovers_a_lost_start(
        db: Database, redis_client: Any, db_settings: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    add_contact(db, "Ann", "+254711000001")
    add_contact(db, "Ben", "+254711000002")
    waiting = schedule(db, db_settings)
    missed = schedule(db, db_settings)
    lost = schedule(db, db_settings)
    start_scheduled(db, redis_client, db_settings, missed, AT + timedelta(days=1))
    assert is_missed(summary(db, missed))
    with db.session() as session:  # scheduled long ago, as such campaigns are
        session.execute(update(Campaign).values(created_at=utcnow() - timedelta(days=3)))

    # The starter dies after its commit, before its jobs are published.
    def die(*_args: Any) -> None:
        raise SystemExit("killed")

    monkeypatch.setattr(campaign_start, "enqueue_campaign", die)
    with pytest.raises(SystemExit):
        start_scheduled(db, redis_client, db_settings, lost, AT)
    monkeypatch.undo()
    assert summary(db, lost)["status"] == "queued"
    assert jobs_of(redis_client, lost) == []

    with db.session() as session:
        # Just started: its messages are new, however old the campaign is.
        assert stalled_campaigns(session, dispatcher.STALL_S) == []
        # Once STALL_S has passed (a negative stall time stands for "much later").
        later = stalled_campaigns(session, -3600)
    assert [c for c, _queue in later] == [lost], "only the lost start; never a scheduled one"

    rt = runtime_for(db, redis_client, db_settings)
    monkeypatch.setattr(dispatcher, "STALL_S", -3600)
    dispatcher.requeue_lost_campaigns(rt)
    assert len(jobs_of(redis_client, lost)) == 1  # one chunk for its two queued messages
    assert jobs_of(redis_client, waiting) == []
    assert jobs_of(redis_client, missed) == []
    assert summary(db, waiting)["status"] == "scheduled"
    assert is_missed(summary(db, missed))


def test_the_dispatcher_starts_due_campaigns_one_worker_at_a_time(
        db: Database, redis_client: Any, db_settings: Settings) -> None:
    add_contact(db, "Ann", "+254711000001")
    campaign = scheduled_in_the_past(db, db_settings, utcnow() - timedelta(seconds=1))
    rt = runtime_for(db, redis_client, db_settings)
    starts = dispatcher.ScheduledStarts("worker-a")

    redis_client.set(dispatcher.SCHEDULE_LOCK, "worker-b:busy")  # another worker is looking
    starts.run_if_due(rt, now=100.0)
    assert starts.thread is None
    assert redis_client.get(dispatcher.SCHEDULE_LOCK) == b"worker-b:busy", "took its lock"

    redis_client.delete(dispatcher.SCHEDULE_LOCK)
    starts.run_if_due(rt, now=100.0 + dispatcher.SCHEDULE_EVERY_S / 2)
    assert starts.thread is None, "looked again before its time"
    starts.run_if_due(rt, now=100.0 + dispatcher.SCHEDULE_EVERY_S)
    assert starts.thread is not None
    starts.thread.join(60)
    assert summary(db, campaign)["status"] == "sending"
    assert redis_client.get(dispatcher.SCHEDULE_LOCK) is None, "the lock was not released"


def test_a_long_start_does_not_hold_up_the_dispatcher_loop(
        db: Database, redis_client: Any, db_settings: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Rendering a big campaign takes seconds: the loop (releases, heartbeat) goes on, and
    its next looks start nothing more until that start is done."""
    rendering = threading.Event()
    calls: list[float] = []

    def slow_start(*_args: Any, **_kwargs: Any) -> list[Started]:
        calls.append(1.0)
        rendering.wait(60)
        return []

    monkeypatch.setattr(dispatcher, "start_due_campaigns", slow_start)
    rt = runtime_for(db, redis_client, db_settings)
    starts = dispatcher.ScheduledStarts("worker-a")
    starts.run_if_due(rt, now=100.0)  # returns while the start is under way
    first = starts.thread
    assert first is not None
    assert first.is_alive()
    for look in range(1, 4):
        starts.run_if_due(rt, now=100.0 + look * dispatcher.SCHEDULE_EVERY_S)
    assert starts.thread is first
    rendering.set()
    first.join(60)
    assert len(calls) == 1
    assert redis_client.get(dispatcher.SCHEDULE_LOCK) is None


def test_dispatcher_survives_a_failing_start(db: Database, redis_client: Any,
                                             db_settings: Settings,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: Any) -> list[Started]:
        raise RuntimeError("database gone")

    monkeypatch.setattr(dispatcher, "start_due_campaigns", broken)
    rt = runtime_for(db, redis_client, db_settings)
    starts = dispatcher.ScheduledStarts("worker-a")
    for look in range(2):  # the failure is logged, and the next look tries again
        starts.run_if_due(rt, now=100.0 + look * dispatcher.SCHEDULE_EVERY_S)
        assert starts.thread is not None
        starts.thread.join(60)
        assert redis_client.get(dispatcher.SCHEDULE_LOCK) is None


def test_cancel_drops_a_campaigns_single_argument_jobs(redis_client: Any) -> None:
    """process_bulk's job is ``"args":[5]``: no comma after the id."""
    jobs = [scheduler.Job(PROCESS_BULK, [5], "bulk_messages"),
            scheduler.Job(SEND_MESSAGE, [5, 7, False], "default"),
            scheduler.Job(PROCESS_BULK, [51], "bulk_messages"),
            scheduler.Job(SEND_MESSAGE, [51, 8, False], "default")]
    scheduler.schedule(redis_client, [(0.0, job) for job in jobs])
    assert _drop_scheduled(redis_client, 5, keep_retries=False) == 2
    left = [scheduler.Job.decode(raw) for raw in redis_client.zrange(redis_keys.SCHEDULED, 0, -1)]
    assert sorted(job.args[0] for job in left) == [51, 51]


def test_a_bulk_campaign_starts_with_its_one_bulk_job(
        db: Database, redis_client: Any, db_settings: Settings,
        embedded_redis: EmbeddedRedis) -> None:
    """Above the bulk threshold the start publishes process_bulk to the bulk queue, where
    the stall sweep's broker scan sees it (so the campaign is not taken for lost)."""
    celery_for(embedded_redis.url())
    for i in range(5):
        add_contact(db, f"M{i}", f"+25471100{i:04d}")
    bulk = dataclasses.replace(db_settings, bulk_threshold=3)
    campaign = schedule(db, bulk)
    started = start_scheduled(db, redis_client, bulk, campaign, AT)
    assert started is not None
    assert started.created is not None
    assert str(started.created.plan.route) == "bulk"
    state = summary(db, campaign)
    assert (state["status"], state["route"], state["pending"]) == ("queued", "bulk", 5)
    assert campaigns_with_jobs(redis_client) == {campaign}


@pytest.mark.parametrize("found_late", [False, True])
def test_a_reschedule_between_a_workers_look_and_its_start_wins(
        db: Database, redis_client: Any, db_settings: Settings,
        monkeypatch: pytest.MonkeyPatch, found_late: bool) -> None:
    """The operator moves the campaign after a worker read it as due (or as missed) and
    before the worker's update: the worker neither starts it at the old time nor marks it
    missed."""
    add_contact(db, "Ann", "+254711000001")
    campaign = schedule(db, db_settings)
    moved_to = AT + timedelta(days=2)
    real_update = campaign_start.update

    def operator_first(table: Any) -> Any:
        monkeypatch.setattr(campaign_start, "update", real_update)
        reschedule_campaign(db, campaign, moved_to, db_settings, now=NOW)  # its own session
        return real_update(table)

    monkeypatch.setattr(campaign_start, "update", operator_first)
    found = AT + timedelta(days=1) if found_late else AT + timedelta(seconds=1)
    assert start_scheduled(db, redis_client, db_settings, campaign, found) is None
    state = summary(db, campaign)
    assert (state["status"], state["pause_reason"]) == ("scheduled", None)
    assert datetime.fromisoformat(state["scheduled_at"]) == moved_to
    assert row_count(db, campaign) == 0
    assert start_scheduled(db, redis_client, db_settings, campaign, moved_to) is not None


def test_a_campaign_failing_to_start_is_left_alone_for_a_while(
        db: Database, redis_client: Any, db_settings: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A lasting failure (the database refuses, say) is tried once a minute, not every
    second: each try is a logged error and a Sentry event."""
    add_contact(db, "Ann", "+254711000001")
    broken = schedule(db, db_settings)
    tries: list[int] = []

    def fill(session: Any, settings: Settings, campaign: Campaign, now: datetime) -> Any:
        tries.append(campaign.id)
        raise RuntimeError("disk full")

    monkeypatch.setattr(campaign_start, "fill_now", fill)
    backoff: dict[int, float] = {}
    assert start_due_campaigns(db, redis_client, db_settings, now=AT, backoff=backoff) == []
    assert start_due_campaigns(db, redis_client, db_settings, now=AT, backoff=backoff) == []
    assert tries == [broken]  # the second look left it alone
    assert broken in backoff
    backoff[broken] = 0.0  # its wait is over
    start_due_campaigns(db, redis_client, db_settings, now=AT, backoff=backoff)
    assert tries == [broken, broken]
    assert summary(db, broken)["status"] == "scheduled"


def test_a_cancel_right_after_a_start_is_not_undone_by_its_enqueue(
        db: Database, redis_client: Any, db_settings: Settings) -> None:
    """A worker commits a scheduled campaign as queued, then hands it to the workers; an
    operator who cancels in between must find it cancelled, with no job left."""
    add_contact(db, "Ann", "+254711000001")
    created = create_campaign(db, db_settings, "Hi #name", urgent=True)  # individual route
    cancel_campaign(db, redis_client, created.id)
    campaign_start.enqueue_campaign(db, redis_client, db_settings, created)
    assert summary(db, created.id)["status"] == "cancelled"
    assert jobs_of(redis_client, created.id) == []


def test_a_time_already_past_is_refused_by_the_engine_too(db: Database,
                                                          db_settings: Settings) -> None:
    add_contact(db, "Ann", "+254711000001")
    with pytest.raises(CampaignError, match="is already past"):
        create_campaign(db, db_settings, FIGURES, at=NOW - timedelta(minutes=1), now=NOW)
    with db.session() as session:
        assert session.scalar(select(func.count(Campaign.id))) == 0


def test_cancelling_without_redis_a_campaign_that_has_started_says_so(
        db: Database, redis_client: Any, db_settings: Settings) -> None:
    """The console passes no Redis client for what it saw as scheduled; if a worker started
    it meanwhile, the cancel needs Redis and says so, changing nothing."""
    add_contact(db, "Ann", "+254711000001")
    campaign_id = schedule(db, db_settings)
    assert start_scheduled(db, redis_client, db_settings, campaign_id, now=AT) is not None
    with pytest.raises(CampaignError, match="needs Redis"):
        cancel_campaign(db, None, campaign_id)
    assert summary(db, campaign_id)["status"] in ("queued", "sending")


def test_preview_of_a_scheduled_campaign_shows_the_figures_of_its_send_day(
        db: Database, db_settings: Settings) -> None:
    add_contact(db, "Ann", "+254711000001", paid=250)  # due 2030-03-17: 10 days after AT
    campaign_id = schedule(db, db_settings, audience=Audience(owing=True))
    pay(db, "+254711000001", 400)  # imported after it was scheduled, before its day
    with db.session() as session:
        preview = preview_scheduled(session, db_settings, campaign_id)
    assert preview.send_day == AT.date()
    assert [m.text for m in preview.messages] == [
        "Ann: paid 400 of 1,000, 600 left, 10 days"]
    assert preview.recipients == 1
    cancel_campaign(db, None, campaign_id)
    with pytest.raises(PreviewError, match=f"campaign {campaign_id} is cancelled, not "
                                           "scheduled"), db.session() as session:
        preview_scheduled(session, db_settings, campaign_id)
