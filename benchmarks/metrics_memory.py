"""Redis memory used by metrics as messages are recorded. Prints JSON.

Usage: python benchmarks/metrics_memory.py [--messages 1000000]

Figures are recorded the way workers record them: one sample per 50-message chunk, with
the per-queue, per-campaign and per-provider scopes, a new campaign every 1,000 messages,
and the job figures of each chunk. Two runs on a fresh embedded Redis each:

- ``same_day``: every message falls within the last 24 hours, spread evenly, in four
  passes; memory after each pass (more messages into the same buckets).
- ``ten_days``: the messages spread over the last ten days (100,000 a day); memory after
  each day. Minute and 10-second buckets stop growing after a day; hourly ones grow until
  their retention (30 days), so the bound is projected from the cost of one hour bucket.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

CHUNK = 50


def chunk_sample(metrics: Any, campaign: int) -> Any:
    sample = metrics.Sample()
    scopes = (metrics.ALL, metrics.queue_scope("bulk_messages"), metrics.campaign_scope(campaign))
    sample.add(scopes, metrics.Metric.SENT, CHUNK - 1)
    sample.add(scopes, metrics.Metric.DEAD, 1)
    calls = (metrics.ALL, metrics.provider_scope("sandbox"))
    sample.add(calls, metrics.Metric.CALLS, CHUNK)
    sample.timing(calls, metrics.Metric.CALL_MS, metrics.Metric.CALL_MAX_MS, 80 * CHUNK)
    jobs = (metrics.ALL, metrics.queue_scope("bulk_messages"))
    sample.add(jobs, metrics.Metric.JOBS)
    sample.timing(jobs, metrics.Metric.RUNTIME_MS, metrics.Metric.RUNTIME_MAX_MS, 900)
    sample.timing(jobs, metrics.Metric.WAIT_MS, metrics.Metric.WAIT_MAX_MS, 40)
    return sample


def used(client: Any) -> int:
    """The dataset's memory: used_memory also counts transient buffers (the embedded
    server's append-only rewrite, client buffers) that come and go with the writing."""
    return int(client.info("memory")["used_memory_dataset"])


def record_span(client: Any, settings: Any, messages: int, start: float, end: float,
                first_message: int) -> None:
    from engine.infra import metrics

    chunks = messages // CHUNK
    for i in range(chunks):
        at = start + (end - start) * i / chunks
        campaign = (first_message + i * CHUNK) // 1000
        metrics.record(client, settings, chunk_sample(metrics, campaign), at=at)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1_000_000)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="relaydesk-metrics-bench-"))
    os.environ.update({"RELAYDESK_DATA_DIR": str(data_dir),
                       "RELAYDESK_CONFIG_FILE": str(data_dir / "config.toml")})
    import redis

    from engine.config.settings import load_settings
    from engine.infra import metrics
    from engine.infra.embedded_redis import EmbeddedRedis

    settings = load_settings()
    server = EmbeddedRedis(data_dir / "redis")
    server.start()
    client = redis.Redis.from_url(server.url())
    try:
        client.flushall()
        empty = used(client)
        now = time.time()
        same_day = []
        started = time.perf_counter()
        per_pass = args.messages // 4
        for p in range(4):
            record_span(client, settings, per_pass, now - 86_400, now, p * per_pass)
            same_day.append({"messages": (p + 1) * per_pass,
                             "used_memory_mb": round((used(client) - empty) / 2**20, 2),
                             "keys": client.dbsize()})
        record_rate = args.messages / (time.perf_counter() - started)

        client.flushall()
        empty = used(client)
        per_day = args.messages // 10
        ten_days = []
        for day in range(10):
            start = now - (10 - day) * 86_400
            record_span(client, settings, per_day, start, start + 86_400, day * per_day)
            ten_days.append({"day": day + 1, "messages": (day + 1) * per_day,
                             "used_memory_mb": round((used(client) - empty) / 2**20, 2),
                             "keys": client.dbsize()})
        hour_keys = list(client.scan_iter(f"{metrics.KEY_PREFIX}1h:*", count=1000))
        hour_bytes = sum(int(client.memory_usage(k) or 0) for k in hour_keys) / len(hour_keys)
        steady = ten_days[-1]["used_memory_mb"] + (
            (settings.metrics_keep_hours_s // 3600 - len(hour_keys)) * hour_bytes / 2**20)
    finally:
        client.close()
        server.stop()
    print(json.dumps({
        "messages": args.messages,
        "retention": {"10s": settings.metrics_keep_10s_s,
                      "1m": settings.metrics_keep_minutes_s,
                      "1h": settings.metrics_keep_hours_s},
        "same_day": same_day,
        "ten_days": ten_days,
        "hour_bucket_bytes": round(hour_bytes),
        "projected_mb_at_hour_retention": round(steady, 2),
        "messages_recorded_per_s": round(record_rate),
    }, indent=2))


if __name__ == "__main__":
    main()
