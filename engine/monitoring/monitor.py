"""The monitor tick each worker's dispatcher runs: one worker at a time (a Redis lock)
samples the queues into the metrics buckets and raises or clears long-wait alerts.

Queue depth is a gauge, so somebody has to look at it regularly for the history charts to
exist; the workers are what runs all the time, the console may not be open.
"""

from __future__ import annotations

import threading
from typing import Any

from engine.config.settings import Settings
from engine.infra import metrics
from engine.infra.metrics import Metric
from engine.infra.redis_keys import PREFIX
from engine.monitoring import wait_alerts
from engine.monitoring.queue_status import broker_load

TICK_EVERY_S = 5.0
LOCK = PREFIX + "monitor:lock"


def tick(client: Any, settings: Settings, owner: str) -> bool:
    """Sample and check once, unless another worker did within the last tick; True if
    this call did the work."""
    if not client.set(LOCK, owner, nx=True, px=int(TICK_EVERY_S * 1000)):
        return False
    load = broker_load(client)
    sample = metrics.Sample()
    for queue in load.queues.values():
        scope = (metrics.queue_scope(queue.name),)
        sample.peak(scope, Metric.DEPTH, queue.waiting)
        sample.peak(scope, Metric.OLDEST_WAIT_MS, queue.oldest_wait_s * 1000)
    sample.peak((metrics.ALL,), Metric.DEPTH, sum(q.waiting for q in load.queues.values()))
    metrics.record(client, settings, sample, at=load.read_at)
    for alert in wait_alerts.update(client, settings, load):
        # Off this thread: a slow webhook or mail server must not hold up job release.
        threading.Thread(target=wait_alerts.notify, args=(settings, alert),
                         name="relaydesk-alert", daemon=True).start()
    return True
