"""The loop each worker runs beside its pool: releases due jobs from the durable schedule,
takes over messages left 'sending' by dead workers, and writes the worker's heartbeat."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time

import redis

from engine.domain.planning import chunk_bounds
from engine.infra import redis_keys, scheduler, worker_registry
from engine.infra.celery_app import publish
from engine.monitoring import monitor
from engine.pipeline.broker_jobs import campaigns_with_jobs
from engine.pipeline.runtime import runtime
from engine.pipeline.sender import SEND_CHUNK, message_job
from engine.store.delivery_state import queued_message_ids, stale_sending, stalled_campaigns

log = logging.getLogger(__name__)

RELEASE_EVERY_S = 0.2
HEARTBEAT_EVERY_S = 2.0
SWEEP_EVERY_S = 10.0
# A campaign with queued messages and no progress for this long is checked for lost jobs.
# Not a setting: it only decides when to look. A campaign waiting behind others, or on
# purpose (paced, retrying, scheduled for later), still has its jobs in the broker and is
# left alone however long it waits; only one with no job anywhere is queued again.
STALL_S = 60.0


class Dispatcher(threading.Thread):
    def __init__(self, worker_name: str, queues: list[str], concurrency: int) -> None:
        super().__init__(name="relaydesk-dispatcher", daemon=True)
        self.worker_name = worker_name
        self.info = {"name": worker_name, "host": socket.gethostname(), "pid": os.getpid(),
                     "queues": queues, "concurrency": concurrency, "started": time.time()}
        self.stopping = threading.Event()

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        last_heartbeat = last_sweep = last_monitor = 0.0
        while not self.stopping.is_set():
            try:
                rt = runtime()
                now = time.monotonic()
                if now - last_heartbeat >= HEARTBEAT_EVERY_S:
                    worker_registry.beat(rt.redis, self.worker_name, self.info)
                    last_heartbeat = now
                if now - last_sweep >= SWEEP_EVERY_S:
                    self._sweep()
                    last_sweep = now
                if now - last_monitor >= monitor.TICK_EVERY_S:
                    last_monitor = now
                    self._monitor()
                released = scheduler.release_due(
                    rt.redis, lambda job: publish(job.task, job.args, job.queue))
                if released:
                    continue  # more may be due: don't wait
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("dispatcher: Redis unavailable (%s); retrying", exc)
                self.stopping.wait(1.0)
            except Exception:
                log.exception("dispatcher loop failed; continuing")
                self.stopping.wait(1.0)
            self.stopping.wait(RELEASE_EVERY_S)
        with contextlib.suppress(redis.RedisError):
            worker_registry.forget(runtime().redis, self.worker_name)

    def _monitor(self) -> None:
        """Metrics and alerts are observations: their failure must not hold up releases."""
        rt = runtime()
        try:
            monitor.tick(rt.redis, rt.settings, self.worker_name)
        except (redis.ConnectionError, redis.TimeoutError):
            raise  # the loop's own handling: Redis is down for everyone
        except Exception:
            log.exception("monitor tick failed; job release goes on")

    def _sweep(self) -> None:
        rt = runtime()
        if not rt.redis.set(redis_keys.SWEEP_LOCK, self.worker_name, nx=True,
                            px=int(SWEEP_EVERY_S * 1000)):
            return
        with rt.db.session() as session:
            stale = stale_sending(session)
            stalled = stalled_campaigns(session, STALL_S)
        now = time.time()
        if stale:
            log.warning("taking over %d message(s) left 'sending' by a dead worker", len(stale))
            scheduler.schedule(rt.redis, [(now, message_job(c, m, q, retry=False))
                                          for c, m, q in stale])
        outstanding = campaigns_with_jobs(rt.redis) if stalled else set()
        for campaign_id, queue in stalled:
            if campaign_id in outstanding:
                continue  # waiting behind other work or on purpose: not lost
            with rt.db.session() as session:
                ids = queued_message_ids(session, campaign_id)
            if not ids:
                continue  # its last job finished after the stall check: nothing is lost
            log.warning("campaign %s lost its jobs (%d message(s) queued, none in the broker); "
                        "queueing them again", campaign_id, len(ids))
            size = rt.settings.chunk_size
            scheduler.schedule(rt.redis, [
                (now, scheduler.Job(SEND_CHUNK, [campaign_id, ids[a:b]], queue))
                for a, b in chunk_bounds(len(ids), size)])
