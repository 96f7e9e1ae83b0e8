"""The thread each worker runs beside its pool. One loop, eight jobs, each below under its
own name: release the durable schedule's due jobs, write the worker's heartbeat, start the
scheduled campaigns that are due, apply the delivery reports and replies the receiver
queued, look up the status of messages with no final report (Twilio), sweep (take over
messages left 'sending' by dead workers, queue again the jobs of campaigns that lost them,
expire messages whose report never came, delete old reports whose message never came),
prune settled messages once a day (RELAYDESK_KEEP_MESSAGES) and the monitor tick."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from datetime import timedelta
from typing import Any

import redis

from engine.infra import redis_keys, report_inbox, scheduler, worker_registry
from engine.infra.celery_app import publish
from engine.monitoring import inspector, monitor
from engine.pipeline import report_applier
from engine.pipeline.broker_jobs import campaigns_with_jobs
from engine.pipeline.campaign_start import start_due_campaigns
from engine.pipeline.report_poller import poll_due_reports
from engine.pipeline.runtime import Runtime, runtime
from engine.pipeline.sender import chunk_jobs, message_job
from engine.store import message_counts
from engine.store.campaign_state import stalled_campaigns
from engine.store.delivery_state import message_ids, stale_sending
from engine.store.models import MessageStatus, utcnow
from engine.store.retention import PruneResult, archive_path, prune

log = logging.getLogger(__name__)

RELEASE_EVERY_S = 0.2
HEARTBEAT_EVERY_S = 2.0
SWEEP_EVERY_S = 10.0
# How often a due scheduled campaign is looked for: it starts at most this late (plus its
# rendering) when a worker is running. A look is one indexed query.
SCHEDULE_EVERY_S = 1.0
# Held while one worker starts due campaigns, released when it is done; the expiry only
# frees it if that worker dies mid-start. A start that outlasts it is still safe (a
# campaign's start is one conditional UPDATE): a second starter just finds it taken.
SCHEDULE_LOCK = redis_keys.SCHEDULE_LOCK
SCHEDULE_LOCK_MS = 120_000
# A campaign with queued messages and no progress for this long is checked for lost jobs.
# Not a setting: it only decides when to look. A campaign waiting behind others, or on
# purpose (paced, retrying, scheduled for later), still has its jobs in the broker and is
# left alone however long it waits; only one with no job anywhere is queued again.
STALL_S = 60.0
# How often an idle worker looks for reports to apply (one LLEN); with reports waiting, the
# applier takes batch after batch. The apply lock (report_applier.APPLY_LOCK_MS) is renewed
# with every batch; a run hands it back after APPLY_RUN_S so workers take turns.
APPLY_EVERY_S = 0.25
APPLY_RUN_S = 5.0
# Reports that arrived before their send committed are matched this often.
REMATCH_EVERY_S = 5.0
# Twilio status look-ups (report_poller): how often the due ones are looked for.
POLL_EVERY_S = 1.0
POLL_LOCK_MS = 120_000
# Retention (RELAYDESK_KEEP_MESSAGES): whether a day has passed since the last prune is
# looked at each minute (one GET); a failed run is tried again an hour later. The lock lasts
# this long without news, and each batch renews it (a month of data takes minutes).
PRUNE_EVERY_S = 60.0
PRUNE_DAY_S = 86_400.0
PRUNE_RETRY_S = 3600.0
PRUNE_LOCK_MS = 120_000


def release_due_jobs(rt: Runtime) -> int:
    """Publish the scheduled jobs that are due (one worker at a time); how many."""
    return scheduler.release_due(rt.redis, lambda job: publish(job.task, job.args, job.queue))


def take_over_stale_sends(rt: Runtime) -> None:
    """The lease sweep: messages left 'sending' past their claim lease by a dead worker
    are sent again (the claim lets one of them through)."""
    with rt.db.session() as session, inspector.unrecorded():
        stale = stale_sending(session)
    if stale:
        log.warning("taking over %d message(s) left 'sending' by a dead worker", len(stale))
        now = time.time()
        scheduler.schedule(rt.redis, [(now, message_job(c, m, q, retry=False))
                                      for c, m, q in stale])


def requeue_lost_campaigns(rt: Runtime) -> None:
    """The stall sweep: a campaign with queued messages, no progress for ``STALL_S`` and
    no job anywhere in the broker lost its jobs (acked while Redis restarted): chunk its
    queued messages again."""
    with rt.db.session() as session, inspector.unrecorded():
        stalled = stalled_campaigns(session, STALL_S)
    if not stalled:
        return
    outstanding = campaigns_with_jobs(rt.redis)
    for campaign_id, queue in stalled:
        if campaign_id in outstanding:
            continue  # waiting behind other work or on purpose: not lost
        with rt.db.session() as session:
            ids = message_ids(session, campaign_id, MessageStatus.QUEUED)
        if not ids:
            continue  # its last job finished after the stall check: nothing is lost
        log.warning("campaign %s lost its jobs (%d message(s) queued, none in the broker); "
                    "queueing them again", campaign_id, len(ids))
        scheduler.schedule(rt.redis, chunk_jobs(campaign_id, ids, queue,
                                                rt.settings.chunk_size, time.time()))


class Heartbeat:
    """Tells every console sharing this Redis that the worker is alive (worker_registry)."""

    def __init__(self, worker_name: str, info: dict[str, Any]) -> None:
        self.worker_name = worker_name
        self.info = info
        self.last = 0.0

    def run_if_due(self, rt: Runtime, now: float) -> None:
        if now - self.last >= HEARTBEAT_EVERY_S:
            worker_registry.beat(rt.redis, self.worker_name, self.info)
            self.last = now

    def forget(self, rt: Runtime) -> None:
        worker_registry.forget(rt.redis, self.worker_name)


def expire_reports(rt: Runtime) -> None:
    """The expiry sweep: messages whose final report never came become 'expired'."""
    with inspector.unrecorded():
        report_applier.expire_reports(rt)


def prune_unmatched_reports(rt: Runtime) -> None:
    """The pruning sweep: delivery reports whose message never came are deleted after
    report_applier.UNMATCHED_KEEP_S, in batches."""
    with inspector.unrecorded():
        report_applier.prune_unmatched_reports(rt)


def fold_campaign_counts(rt: Runtime) -> None:
    """PostgreSQL: the rows the count triggers appended since the last sweep, one per key
    again (message_counts.fold), so reading a campaign's totals stays a few rows."""
    with inspector.unrecorded(), rt.db.session() as session:
        message_counts.fold(session)


class Sweeps:
    """The lease sweep, the stall sweep, the expiry sweep, the pruning sweep and the
    folding of campaign counts, run by one worker at a time (a Redis lock)."""

    def __init__(self, worker_name: str) -> None:
        self.worker_name = worker_name
        self.last = 0.0

    def run_if_due(self, rt: Runtime, now: float) -> None:
        if now - self.last < SWEEP_EVERY_S:
            return
        if rt.redis.set(redis_keys.SWEEP_LOCK, self.worker_name, nx=True,
                        px=int(SWEEP_EVERY_S * 1000)):
            take_over_stale_sends(rt)
            requeue_lost_campaigns(rt)
            expire_reports(rt)
            prune_unmatched_reports(rt)
            fold_campaign_counts(rt)
        self.last = now


class OneWorkerAtATime:
    """A periodic job that one worker at a time runs, across machines (a Redis lock with a
    token, released when done; its expiry only frees it if the worker dies), in a thread
    of its own so that it never holds up this loop's job releases and heartbeat (whose
    key outlives a missed beat by only HEARTBEAT_TTL_S). A failure is logged and the next
    turn tries again."""

    every_s: float
    lock_key: str
    lock_ms: int
    name: str  # the thread's name, and the log's words for the job

    def __init__(self, worker_name: str) -> None:
        self.worker_name = worker_name
        self.last = 0.0
        self.thread: threading.Thread | None = None  # the run under way, if any

    def wanted(self, rt: Runtime, now: float) -> bool:
        """Whether this turn has anything to do (asked before taking the lock)."""
        return True

    def work(self, rt: Runtime, token: str, now: float) -> None:
        raise NotImplementedError

    def run_if_due(self, rt: Runtime, now: float) -> None:
        if now - self.last < self.every_s:
            return
        self.last = now
        if self.thread is not None and self.thread.is_alive():
            return  # the last run is still going
        if not self.wanted(rt, now):
            return
        token = f"{self.worker_name}:{uuid.uuid4().hex}"
        if not rt.redis.set(self.lock_key, token, nx=True, px=self.lock_ms):
            return  # another worker is at it
        self.thread = threading.Thread(target=self._run, args=(rt, token, now), daemon=True,
                                       name=f"relaydesk-{self.name}")
        self.thread.start()

    def _run(self, rt: Runtime, token: str, now: float) -> None:
        try:
            self.work(rt, token, now)
        except Exception:
            log.exception("%s failed; trying again in %.2f s", self.name, self.every_s)
        finally:
            with contextlib.suppress(redis.RedisError):
                scheduler.release_lock(rt.redis, self.lock_key, token)


class ScheduledStarts(OneWorkerAtATime):
    """Starts the scheduled campaigns that are due (campaign_start.start_due_campaigns).
    The schedule itself is in the database: a worker that was down at a campaign's time
    starts it on its first look after it comes back. If Redis or the database is down, a
    campaign whose start did not commit stays scheduled and the next look retries it; one
    that committed but could not publish its jobs is queued with none, which the stall
    sweep recovers. (Rendering a large campaign takes seconds: 100,000 messages, 13 s on
    SQLite, measured.)"""

    every_s = SCHEDULE_EVERY_S
    lock_key = SCHEDULE_LOCK
    lock_ms = SCHEDULE_LOCK_MS
    name = "scheduled-starts"

    def __init__(self, worker_name: str) -> None:
        super().__init__(worker_name)
        # Campaigns whose start failed, until when they are left alone (campaign_start).
        self.backoff: dict[int, float] = {}

    def work(self, rt: Runtime, token: str, now: float) -> None:
        start_due_campaigns(rt.db, rt.redis, rt.settings, backoff=self.backoff)


class ReportApplier(OneWorkerAtATime):
    """Applies the reports the receiver queued in Redis (report_applier.apply_pending), and
    now and then matches reports that came before their send. If the database or Redis is
    down, the reports stay in the inbox (trimmed only once applied) for the next turn."""

    every_s = APPLY_EVERY_S
    lock_key = redis_keys.REPORT_APPLY_LOCK
    lock_ms = report_applier.APPLY_LOCK_MS
    name = "report-applier"

    def __init__(self, worker_name: str) -> None:
        super().__init__(worker_name)
        self.last_rematch = 0.0

    def wanted(self, rt: Runtime, now: float) -> bool:
        # Nothing to do is the common case: one LLEN.
        return self._rematch_due(now) or bool(report_inbox.pending(rt.redis))

    def _rematch_due(self, now: float) -> bool:
        return now - self.last_rematch >= REMATCH_EVERY_S

    def work(self, rt: Runtime, token: str, now: float) -> None:
        rematch = self._rematch_due(now)
        if rematch:
            self.last_rematch = now
        until = time.monotonic() + APPLY_RUN_S
        while report_applier.apply_pending(rt, lock_token=token):
            if time.monotonic() > until:
                break  # the rest on the next turn, maybe another worker's
        if rematch:
            with inspector.unrecorded():
                report_applier.rematch(rt)


class ReportPolls(OneWorkerAtATime):
    """Looks up the status of messages with no final report when the provider can be asked
    (report_poller.poll_due_reports: Twilio): HTTP calls at a bounded rate."""

    every_s = POLL_EVERY_S
    lock_key = redis_keys.REPORT_POLL_LOCK
    lock_ms = POLL_LOCK_MS
    name = "report-polls"

    def wanted(self, rt: Runtime, now: float) -> bool:
        return rt.provider.can_fetch_status

    def work(self, rt: Runtime, token: str, now: float) -> None:
        with inspector.unrecorded():
            poll_due_reports(rt)


_RENEW_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


class DailyPrune(OneWorkerAtATime):
    """Retention: once a day, one worker deletes the messages settled longer ago than
    RELAYDESK_KEEP_MESSAGES (engine.store.retention.prune, in short batches, so sending goes
    on), archiving them into RELAYDESK_ARCHIVE_DIR as relaydesk-prune-<UTC time>.jsonl.gz
    when it is set. Empty RELAYDESK_KEEP_MESSAGES (the default): never. The day is counted
    across workers and machines (redis_keys.PRUNE_LAST_RUN); a worker that loses the lock
    mid-prune stops after its batch."""

    every_s = PRUNE_EVERY_S
    lock_key = redis_keys.PRUNE_LOCK
    lock_ms = PRUNE_LOCK_MS
    name = "retention"

    def wanted(self, rt: Runtime, now: float) -> bool:
        return rt.settings.keep_messages_s is not None and _prune_due(rt)

    def work(self, rt: Runtime, token: str, now: float) -> None:
        keep_s = rt.settings.keep_messages_s
        if keep_s is None or not _prune_due(rt):
            return  # another worker ran it between our look and our lock
        started = time.time()
        rt.redis.set(redis_keys.PRUNE_LAST_RUN, repr(started))
        try:
            result = prune_settled(rt, token, keep_s)
        except Exception:
            rt.redis.set(redis_keys.PRUNE_LAST_RUN, repr(started - PRUNE_DAY_S + PRUNE_RETRY_S))
            raise
        if result.messages or result.failed_jobs:
            log.info("retention: removed %d message(s) and %d failed job(s) settled more than "
                     "%s ago%s", result.messages, result.failed_jobs, timedelta(seconds=keep_s),
                     f"; archived in {result.archive}" if result.archive else "")


def _prune_due(rt: Runtime) -> bool:
    last = rt.redis.get(redis_keys.PRUNE_LAST_RUN)
    return last is None or time.time() - float(last) >= PRUNE_DAY_S


def prune_settled(rt: Runtime, token: str, keep_s: int) -> PruneResult:
    """One retention run while holding the prune lock with ``token``."""
    now = utcnow()
    folder = rt.settings.archive_dir
    renew = rt.redis.register_script(_RENEW_LOCK)

    def still_ours(_: PruneResult) -> bool:
        return bool(renew(keys=[redis_keys.PRUNE_LOCK], args=[token, PRUNE_LOCK_MS]))

    with inspector.unrecorded():  # thousands of statements: not the SQL tab's business
        return prune(rt.db, timedelta(seconds=keep_s), now=now, on_batch=still_ours,
                     archive=archive_path(folder, now) if folder else None)


class MonitorTick:
    """Queue metrics and wait alerts (``monitor.tick``): observations, so their failure
    must not hold up releases."""

    def __init__(self, worker_name: str) -> None:
        self.worker_name = worker_name
        self.last = 0.0

    def run_if_due(self, rt: Runtime, now: float) -> None:
        if now - self.last < monitor.TICK_EVERY_S:
            return
        self.last = now
        try:
            monitor.tick(rt.redis, rt.settings, self.worker_name)
        except (redis.ConnectionError, redis.TimeoutError):
            raise  # the loop's own handling: Redis is down for everyone
        except Exception:
            log.exception("monitor tick failed; job release goes on")


class Dispatcher(threading.Thread):
    def __init__(self, worker_name: str, queues: list[str], concurrency: int) -> None:
        super().__init__(name="relaydesk-dispatcher", daemon=True)
        info = {"name": worker_name, "host": socket.gethostname(), "pid": os.getpid(),
                "queues": queues, "concurrency": concurrency, "started": time.time()}
        self.heartbeat = Heartbeat(worker_name, info)
        self.sweeps = Sweeps(worker_name)
        self.starts = ScheduledStarts(worker_name)
        self.reports = ReportApplier(worker_name)
        self.polls = ReportPolls(worker_name)
        self.retention = DailyPrune(worker_name)
        self.monitor = MonitorTick(worker_name)
        self.stopping = threading.Event()

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                rt = runtime()
                now = time.monotonic()
                self.heartbeat.run_if_due(rt, now)
                self.starts.run_if_due(rt, now)
                self.reports.run_if_due(rt, now)
                self.polls.run_if_due(rt, now)
                self.sweeps.run_if_due(rt, now)
                self.retention.run_if_due(rt, now)
                self.monitor.run_if_due(rt, now)
                if release_due_jobs(rt):
                    continue  # more may be due: don't wait
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("dispatcher: Redis unavailable (%s); retrying", exc)
                self.stopping.wait(1.0)
            except Exception:
                log.exception("dispatcher loop failed; continuing")
                self.stopping.wait(1.0)
            self.stopping.wait(RELEASE_EVERY_S)
        with contextlib.suppress(redis.RedisError):
            self.heartbeat.forget(runtime())
