"""Embedded Redis, durable schedule, global rate limit and breaker, against a real Redis."""

from __future__ import annotations

import os
import stat
import time
from typing import Any

import pytest
import redis

from engine.config.settings import Settings
from engine.domain.retry_policy import backoff_s
from engine.infra import scheduler
from engine.infra.breaker import CircuitBreaker
from engine.infra.embedded_redis import EmbeddedRedis, RedisUnavailable, redis_url
from engine.infra.rate_limit import RateLimiter
from tests.support import wait_for


def test_embedded_redis_is_private_durable_and_shared(embedded_redis: EmbeddedRedis,
                                                      settings: Settings) -> None:
    mode = stat.S_IMODE(os.stat(embedded_redis.password_file).st_mode)
    assert mode == 0o600
    url = embedded_redis.url()
    assert "@127.0.0.1:" in url
    client = redis.Redis.from_url(url)
    config = client.config_get("*")
    assert config["bind"].split()[0] == "127.0.0.1"
    assert config["appendonly"] == "yes"
    assert config["maxmemory-policy"] == "noeviction"
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=int(url.rsplit(":", 1)[1].split("/")[0])).ping()

    # A second process on the same data dir reuses the server instead of starting another.
    process, again = EmbeddedRedis.for_settings(settings).start()
    assert process is None
    assert again == url
    assert redis_url(settings) == url

    # Queued work survives a restart: the append-only file is in the data dir.
    client.rpush("messages", "job-1")
    client.close()
    embedded_redis.stop()
    assert not embedded_redis.ping()
    process, url_after = embedded_redis.start()
    assert url_after == url  # same port: workers reconnect to the same URL
    client = redis.Redis.from_url(url_after)
    assert client.lrange("messages", 0, -1) == [b"job-1"]
    client.close()
    embedded_redis.stop()
    assert process is not None
    process.wait(10)


def test_not_running_is_a_clear_error(settings: Settings) -> None:
    with pytest.raises(RedisUnavailable, match="relaydesk redis"):
        redis_url(settings, start=False)


def test_schedule_releases_only_due_jobs_once(redis_client: Any) -> None:
    now = time.time()
    due = scheduler.Job("relaydesk.send_chunk", [1, [1, 2]], "bulk_messages")
    later = scheduler.Job("relaydesk.send_chunk", [1, [3, 4]], "bulk_messages")
    assert scheduler.schedule(redis_client, [(now - 1, due), (now + 3600, later)]) == 2
    published: list[scheduler.Job] = []
    assert scheduler.release_due(redis_client, published.append) == 1
    assert published == [due]
    assert scheduler.release_due(redis_client, published.append) == 0
    assert scheduler.pending(redis_client) == 1
    assert 3500 < (scheduler.next_due_in(redis_client) or 0) <= 3600


def test_release_keeps_jobs_when_publishing_fails(redis_client: Any) -> None:
    job = scheduler.Job("relaydesk.send_message", [1, 2, False], "messages")
    scheduler.schedule(redis_client, [(time.time() - 1, job)])

    def broken(_: scheduler.Job) -> None:
        raise ConnectionError("broker down")

    with pytest.raises(ConnectionError):
        scheduler.release_due(redis_client, broken)
    assert scheduler.pending(redis_client) == 1  # still there for the next try


def test_rate_limit_is_shared_between_clients(embedded_redis: EmbeddedRedis) -> None:
    """Two clients (as two worker processes would be) draw from one 50/s budget."""
    a = RateLimiter(redis.Redis.from_url(embedded_redis.url()), "sandbox", 50)
    b = RateLimiter(redis.Redis.from_url(embedded_redis.url()), "sandbox", 50)
    waits = [limiter.reserve() for _ in range(10) for limiter in (a, b)]
    # 20 reservations at 50/s: the last is due about 19 intervals (0.38 s) after the first.
    assert waits[0] == pytest.approx(0.0, abs=0.01)
    assert waits == sorted(waits)
    assert waits[-1] == pytest.approx(19 * 0.02, abs=0.05)
    assert RateLimiter(redis.Redis.from_url(embedded_redis.url()), "sandbox", None).reserve() == 0


def test_breaker_opens_probes_and_closes(redis_client: Any) -> None:
    breaker = CircuitBreaker(redis_client, "sandbox", threshold=3, cooldown_s=0.2)
    for _ in range(2):
        breaker.record_failure()
    assert breaker.state().state == "closed"
    assert breaker.wait_s() == 0
    breaker.record_failure()
    assert breaker.state().state == "open"
    assert breaker.wait_s() > 0
    other_worker = CircuitBreaker(redis_client, "sandbox", threshold=3, cooldown_s=0.2)
    assert other_worker.wait_s() > 0  # shared through Redis
    wait_for(lambda: breaker.state().state == "half-open", message="the cool-down to pass")
    assert breaker.wait_s() == 0  # one probe may go
    assert other_worker.wait_s() > 0  # ...and only one
    breaker.record_failure()  # the probe failed: open again
    assert breaker.state().state == "open"
    wait_for(lambda: breaker.state().state == "half-open", message="the cool-down to pass")
    assert breaker.wait_s() == 0
    breaker.record_success()
    assert breaker.state().state == "closed"
    assert other_worker.wait_s() == 0


@pytest.mark.parametrize(("failures", "low", "high"), [
    (1, 5, 10), (2, 10, 20), (3, 20, 40), (10, 50, 100),
])
def test_backoff_doubles_with_jitter_and_cap(failures: int, low: float, high: float) -> None:
    delays = [backoff_s(failures, base_s=10, cap_s=100) for _ in range(200)]
    assert all(low <= d <= high for d in delays)
    assert len(set(delays)) > 100  # jittered, not synchronised
    assert backoff_s(0, 10, 100) == 0


def test_a_job_lands_in_its_own_queue_only(embedded_redis: EmbeddedRedis,
                                           redis_client: Any) -> None:
    """Each queue has its own routing key: a shared one would copy a job into all three."""
    from engine.infra.celery_app import publish
    from engine.infra.connections import celery_for
    from engine.monitoring.queue_status import queue_depths

    celery_for(embedded_redis.url())
    publish("relaydesk.process_bulk", [1], "bulk_messages")
    publish("relaydesk.send_message", [1, 2, False], "high_priority")
    wait_for(lambda: sum(queue_depths(redis_client).values()) >= 2, message="the publishes")
    assert queue_depths(redis_client) == {"high_priority": 1, "messages": 0,
                                          "bulk_messages": 1}
