"""The figures the status bar always shows, gathered off the UI thread in one call."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from desktop.services import Services
from engine.config.masking import mask_url
from engine.infra.embedded_redis import RedisUnavailable
from engine.infra.worker_registry import live_workers
from engine.monitoring import wait_alerts
from engine.store.dead_letters import count_failed


@dataclass(frozen=True)
class ConsoleStatus:
    redis_ok: bool
    redis_text: str  # where, or why not
    embedded: bool  # the settings use the embedded Redis (so the console can start it)
    workers: int
    processes: int
    dead_letters: int | None  # None when the database could not be read
    long_waits: tuple[wait_alerts.LongWait, ...] = ()  # queues whose jobs wait too long


def gather_status(services: Services) -> ConsoleStatus:
    settings = services.settings
    embedded = not settings.redis_url
    workers = processes = 0
    long_waits: tuple[wait_alerts.LongWait, ...] = ()
    try:
        client = services.redis()
        client.ping()
        beats = live_workers(client)
        workers = len(beats)
        processes = sum(int(w.get("concurrency", 0)) for w in beats)
        long_waits = tuple(wait_alerts.active(client))
        where = "embedded" if embedded else mask_url(settings.redis_url or "")
        redis_ok, redis_text = True, f"Redis connected ({where})"
    except RedisUnavailable:
        services.forget_redis()
        redis_ok, redis_text = False, "Embedded Redis is not running"
    except redis.RedisError as exc:
        services.forget_redis()  # it may come back elsewhere (a new port, a new URL)
        redis_ok, redis_text = False, f"Redis unreachable: {type(exc).__name__}"
    try:
        with services.db().session() as session:
            dead: int | None = count_failed(session)
    except Exception:  # shown as unknown; the Settings page tests the database properly
        dead = None
    return ConsoleStatus(redis_ok, redis_text, embedded, workers, processes, dead, long_waits)
