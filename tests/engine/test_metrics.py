"""Metrics buckets, retention, queue load and long-wait alerts against the real embedded
Redis (the worker-side recording is covered end to end in tests/e2e/test_metrics.py)."""

from __future__ import annotations

import json
import socketserver
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar

import pytest

from engine.config.settings import Settings, WaitThresholds, load_settings
from engine.infra import metrics
from engine.infra.embedded_redis import EmbeddedRedis
from engine.monitoring import monitor, wait_alerts
from engine.monitoring.queue_status import broker_load
from tests.support import wait_for

T0 = 1_800_000_000  # a fixed, round point in time (divisible by 3600)


def _sample(sent: int, runtime_ms: float) -> metrics.Sample:
    sample = metrics.Sample()
    scopes = (metrics.ALL, metrics.queue_scope("messages"))
    sample.add(scopes, metrics.Metric.SENT, sent)
    sample.timing(scopes, metrics.Metric.RUNTIME_MS, metrics.Metric.RUNTIME_MAX_MS, runtime_ms)
    return sample


def _keys(client: Any, step: str) -> int:
    return sum(1 for _ in client.scan_iter(f"{metrics.KEY_PREFIX}{step}:*", count=1000))


def test_samples_add_up_per_bucket_and_keep_the_largest(redis_client: Any,
                                                        settings: Settings) -> None:
    now = time.time()
    metrics.record(redis_client, settings, _sample(3, 40), at=now)
    metrics.record(redis_client, settings, _sample(2, 90), at=now)
    metrics.record(redis_client, settings, _sample(5, 10), at=now)
    minute = metrics.resolutions(settings)[1]
    bucket = metrics.read_bucket(redis_client, minute, now)
    assert bucket["all|sent"] == 10
    assert bucket["q:messages|runtime_ms"] == 140
    assert bucket["q:messages|runtime_max_ms"] == 90
    series = metrics.read_series(redis_client, minute, ["all|sent", "all|dead"], now - 300, now)
    assert len(series.starts) == 6
    assert series.total("all|sent") == 10
    assert series.values["all|sent"][-1] == 10
    assert series.total("all|dead") == 0
    # The same figures land at every resolution.
    for res in metrics.resolutions(settings):
        assert metrics.read_bucket(redis_client, res, now)["all|sent"] == 10


def test_buckets_expire_with_their_retention(redis_client: Any, settings: Settings) -> None:
    """Three simulated days, one sample a minute: Redis keeps only what retention allows."""
    settings = replace(settings, metrics_keep_10s_s=600, metrics_keep_minutes_s=3600,
                       metrics_keep_hours_s=6 * 3600)
    end = time.time()
    start = end - 3 * 86400
    for at in range(int(start), int(end), 60):
        metrics.record(redis_client, settings, _sample(1, 5), at=at)
    # A bucket lives until its start + step + retention: at most keep/step + 2 of each.
    assert _keys(redis_client, "10s") <= 600 / 10 + 2
    assert _keys(redis_client, "1m") <= 3600 / 60 + 2
    assert _keys(redis_client, "1h") <= 6 + 2
    assert all(0 < redis_client.ttl(k) <= 6 * 3600 + 7200
               for k in redis_client.scan_iter(f"{metrics.KEY_PREFIX}1h:*"))


def test_memory_does_not_grow_with_the_number_of_messages(redis_client: Any,
                                                          settings: Settings) -> None:
    """Ten times the messages over the same hours: the same keys, the same memory."""
    # Every bucket outlives the test (no key expires between the two fills), and both
    # fills write the same buckets however long the first one takes.
    settings = replace(settings, metrics_keep_10s_s=7 * 3600)
    now = time.time()

    def fill(per_minute: int) -> int:
        redis_client.flushall()
        for at in range(T0, T0 + 6 * 3600, 60):
            for _ in range(per_minute // 50):  # one record per 50-message chunk
                metrics.record(redis_client, settings, _sample(50, 30),
                               at=now - (T0 + 6 * 3600 - at))
        # What the metric keys themselves take: the server's own figures (dataset, buffers)
        # also move with the number of commands it ran, which is not what is measured here.
        return sum(redis_client.memory_usage(key)
                   for key in redis_client.scan_iter(f"{metrics.KEY_PREFIX}*", count=1000))

    small = fill(50)
    keys = redis_client.dbsize()
    large = fill(500)
    assert redis_client.dbsize() == keys
    assert large < small * 1.05, (small, large)


@pytest.fixture
def celery_app(embedded_redis: EmbeddedRedis) -> Any:
    from engine.infra.connections import celery_for

    return celery_for(embedded_redis.url())


def test_queue_load_counts_every_priority_list_and_the_oldest_wait(
        celery_app: Any, redis_client: Any) -> None:
    from engine.infra.celery_app import PUBLISHED_HEADER, publish

    publish("relaydesk.send_message", [1, 1, False], "messages")
    celery_app.send_task("relaydesk.send_message", args=[1, 2, False], queue="messages",
                         priority=9, headers={PUBLISHED_HEADER: time.time() - 120})
    celery_app.send_task("relaydesk.send_message", args=[1, 3, False], queue="messages",
                         priority=3)
    wait_for(lambda: broker_load(redis_client).queues["messages"].waiting == 3,
             message="the three publishes")
    load = broker_load(redis_client)
    messages = load.queues["messages"]
    assert messages.by_priority == {0: 1, 3: 1, 6: 0, 9: 1}
    assert 120 <= messages.oldest_wait_s < 180  # the back-dated one, in its own list
    assert load.queues["bulk_messages"].waiting == 0
    assert load.queues["bulk_messages"].oldest_wait_s == 0


class _Webhook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        type(self).received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


class _Smtp(socketserver.StreamRequestHandler):
    """Just enough SMTP to take one message, as a mail server answers."""

    mails: ClassVar[list[str]] = []

    def handle(self) -> None:
        def say(line: str) -> None:
            self.wfile.write(line.encode() + b"\r\n")

        say("220 test ESMTP")
        data: list[str] = []
        while line := self.rfile.readline().decode():
            command = line.strip().upper()
            if command.startswith(("EHLO", "HELO")):
                say("250 test")
            elif command == "DATA":
                say("354 go on")
                while (body := self.rfile.readline().decode()).rstrip("\r\n") != ".":
                    data.append(body)
                type(self).mails.append("".join(data))
                say("250 queued")
            elif command == "QUIT":
                say("221 bye")
                return
            else:
                say("250 ok")


@pytest.fixture
def receivers() -> Iterator[tuple[str, str]]:
    _Webhook.received.clear()
    _Smtp.mails.clear()
    web = HTTPServer(("127.0.0.1", 0), _Webhook)
    smtp = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Smtp)
    for server in (web, smtp):
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield (f"http://127.0.0.1:{web.server_address[1]}/hook?token=s3cret",
           f"smtp://127.0.0.1:{smtp.server_address[1]}")
    for server in (web, smtp):
        server.shutdown()
        server.server_close()


def test_a_long_wait_raises_one_alert_notifies_and_clears(
        celery_app: Any, redis_client: Any, receivers: tuple[str, str]) -> None:
    from engine.infra.celery_app import PUBLISHED_HEADER

    webhook, smtp = receivers
    settings = replace(load_settings(), long_wait=WaitThresholds(60, (("bulk_messages", 600),)),
                       alert_webhook=webhook, smtp_url=smtp, alert_email="ops@example.org")
    old = time.time() - 90  # past messages' 60 s, not bulk_messages' 600 s
    for queue in ("messages", "bulk_messages"):
        celery_app.send_task("relaydesk.process_bulk", args=[7], queue=queue,
                             headers={PUBLISHED_HEADER: old})
    wait_for(lambda: broker_load(redis_client).queues["bulk_messages"].waiting == 1,
             message="the publishes")

    assert monitor.tick(redis_client, settings, "test")
    assert not monitor.tick(redis_client, settings, "other")  # one monitor per tick
    active = wait_alerts.active(redis_client)
    assert [a.queue for a in active] == ["messages"]
    assert active[0].threshold_s == 60
    assert active[0].wait_s >= 90
    # The queue's depth and oldest wait went into the metrics buckets.
    bucket = metrics.read_bucket(redis_client, metrics.resolutions(settings)[1], time.time())
    assert bucket["q:messages|depth"] == 1
    assert bucket["q:messages|oldest_wait_ms"] >= 90_000

    # Notified once, from a thread: the webhook and the mail both name the queue.
    wait_for(lambda: _Webhook.received and _Smtp.mails, message="the notifications")
    assert _Webhook.received[0]["queue"] == "messages"
    assert _Webhook.received[0]["alert"] == "long_wait"
    assert "Subject: RelayDesk: long wait on messages" in _Smtp.mails[0]
    # Still waiting: the same episode, no second notification.
    assert wait_alerts.update(redis_client, settings, broker_load(redis_client)) == []

    redis_client.delete("messages")
    assert wait_alerts.update(redis_client, settings, broker_load(redis_client)) == []
    assert wait_alerts.active(redis_client) == []
    kinds = [e["kind"] for e in wait_alerts.recent(redis_client)]
    assert kinds == ["long_wait_over", "long_wait"]
    assert len(_Webhook.received) == 1


def test_a_failing_webhook_is_reported_without_its_address(receivers: tuple[str, str],
                                                          settings: Settings) -> None:
    settings = replace(settings, alert_webhook="http://127.0.0.1:9/hook?token=s3cret")
    alert = wait_alerts.LongWait("messages", 75, 60, time.time())
    problems = wait_alerts.notify(settings, alert)
    assert len(problems) == 1
    assert "webhook" in problems[0]
    assert "s3cret" not in problems[0]
    assert "127.0.0.1" not in problems[0]


def test_a_window_reads_incrementally_and_matches_a_full_read(redis_client: Any,
                                                               settings: Settings) -> None:
    res = metrics.resolutions(settings)[0]
    now = float(res.bucket(time.time()))
    for back in (0, 10, 60, 300, 890, 950):  # the last two: inside, then outside 15 min
        metrics.record(redis_client, settings, _sample(back + 1, 5), at=now - back + 1)
    window = metrics.MetricWindow(res, 900, ["all|sent"])
    first = window.refresh(redis_client, now + 1)
    assert len(first.starts) == 90
    assert first.total("all|sent") == 1 + 11 + 61 + 301 + 891
    # Newer figures land in the current bucket; a later refresh sees them and drops what
    # left the window, without reading the old buckets again.
    metrics.record(redis_client, settings, _sample(1000, 5), at=now + 25)
    redis_client.delete(res.key(res.bucket(now - 300)))  # would change a full read only
    later = window.refresh(redis_client, now + 25)
    assert len(later.starts) == 90
    assert later.starts[-1] == res.bucket(now + 25)
    # 891 left the window; 301 is still counted though its bucket is gone from Redis.
    assert later.total("all|sent") == 1 + 11 + 61 + 301 + 1000


def test_no_password_goes_to_a_mail_server_without_tls(receivers: tuple[str, str],
                                                       settings: Settings) -> None:
    _, smtp = receivers
    settings = replace(settings, alert_email="ops@example.org",
                       smtp_url=smtp.replace("smtp://", "smtp://ops:s3cret@"))
    problems = wait_alerts.notify(settings, wait_alerts.LongWait("messages", 75, 60, 0))
    assert problems == ["alert e-mail failed: ValueError"]
    assert _Smtp.mails == []
