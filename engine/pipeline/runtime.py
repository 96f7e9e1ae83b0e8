"""What a worker process holds for its whole life: settings, database, Redis, provider,
rate limiter, breaker, the send thread pool and its lanes. Built lazily once per process
(after a fork: connections and pools must not be shared across processes)."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from engine.config.settings import Settings, load_settings
from engine.infra.breaker import CircuitBreaker
from engine.infra.connections import WORK, redis_for
from engine.infra.embedded_redis import redis_url
from engine.infra.local_gateway import gateway_url
from engine.infra.rate_limit import RateLimiter
from engine.providers import Provider, make_provider
from engine.store.db import Database, open_database


class CallLanes:
    """The send pool's threads, counted: a batch of messages takes one lane per message
    before it claims them and gives them back when their calls are done. So a claimed
    message never waits for a thread, even when several tasks share the process (Celery's
    threads pool, on Windows): every wait happens before the claim."""

    def __init__(self, size: int) -> None:
        self._free = size
        self._cond = threading.Condition()

    def take(self, most: int) -> int:
        """Between 1 and ``most`` lanes, as many as are free (waiting for one if none is)."""
        with self._cond:
            while self._free == 0:
                self._cond.wait()
            taken = min(most, self._free)
            self._free -= taken
            return taken

    def give(self, count: int) -> None:
        with self._cond:
            self._free += count
            self._cond.notify_all()


@dataclass
class Runtime:
    settings: Settings
    db: Database
    redis: Any
    provider: Provider
    limiter: RateLimiter
    breaker: CircuitBreaker
    pool: ThreadPoolExecutor
    lanes: CallLanes


_lock = threading.Lock()
_runtimes: dict[int, Runtime] = {}


def build_runtime(settings: Settings) -> Runtime:
    client = redis_for(redis_url(settings, start=False), WORK)
    provider = make_provider(settings, gateway_url(settings, start=False))
    rate = settings.rate_limit.per_second if settings.rate_limit else None
    return Runtime(
        settings=settings,
        db=open_database(settings),
        redis=client,
        provider=provider,
        limiter=RateLimiter(client, provider.name, rate),
        breaker=CircuitBreaker(client, provider.name, settings.breaker_threshold,
                               settings.breaker_cooldown_s),
        pool=ThreadPoolExecutor(settings.send_concurrency, thread_name_prefix="send"),
        lanes=CallLanes(settings.send_concurrency),
    )


def runtime() -> Runtime:
    pid = os.getpid()
    with _lock:
        current = _runtimes.get(pid)
        if current is None:
            current = build_runtime(load_settings())
            _runtimes[pid] = current
        return current
