"""The loop each worker runs beside its pool: releases due jobs from the durable schedule,
takes over messages left 'sending' by dead workers, and writes the worker's heartbeat."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from typing import Any

import redis

from engine import redis_keys, scheduler
from engine.celery_app import publish
from engine.delivery_state import stale_sending
from engine.runtime import runtime
from engine.sender import message_job

log = logging.getLogger(__name__)

RELEASE_EVERY_S = 0.2
HEARTBEAT_EVERY_S = 2.0
HEARTBEAT_TTL_S = 10
SWEEP_EVERY_S = 10.0


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
        last_heartbeat = last_sweep = 0.0
        while not self.stopping.is_set():
            try:
                rt = runtime()
                now = time.monotonic()
                if now - last_heartbeat >= HEARTBEAT_EVERY_S:
                    self._heartbeat(rt.redis)
                    last_heartbeat = now
                if now - last_sweep >= SWEEP_EVERY_S:
                    self._sweep()
                    last_sweep = now
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
            runtime().redis.delete(redis_keys.WORKER_HEARTBEAT + self.worker_name)

    def _heartbeat(self, client: Any) -> None:
        data = {**self.info, "seen": time.time()}
        client.set(redis_keys.WORKER_HEARTBEAT + self.worker_name, json.dumps(data),
                   ex=HEARTBEAT_TTL_S)

    def _sweep(self) -> None:
        rt = runtime()
        if not rt.redis.set(redis_keys.SWEEP_LOCK, self.worker_name, nx=True,
                            px=int(SWEEP_EVERY_S * 1000)):
            return
        with rt.db.session() as session:
            stale = stale_sending(session)
        if stale:
            log.warning("taking over %d message(s) left 'sending' by a dead worker", len(stale))
            now = time.time()
            scheduler.schedule(rt.redis, [(now, message_job(c, m, q, retry=False))
                                          for c, m, q in stale])


def live_workers(client: Any) -> list[dict[str, Any]]:
    """Workers whose heartbeat is fresh, on any machine sharing this Redis."""
    keys = list(client.scan_iter(redis_keys.WORKER_HEARTBEAT + "*", count=500))
    if not keys:
        return []
    return [json.loads(v) for v in client.mget(keys) if v]
