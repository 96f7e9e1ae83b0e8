"""What is waiting where: Celery queue depths (read as its Redis transport stores them),
in-flight messages, durably scheduled jobs, live workers, breaker state."""

from __future__ import annotations

from typing import Any

from engine import scheduler
from engine.queues import ALL_QUEUES
from engine.worker_registry import live_workers

# kombu splits a queue with priorities into lists "name", "name\x06\x163", ... "name\x06\x169"
PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)


def priority_keys(queue: str) -> list[str]:
    return [queue if step == 0 else f"{queue}{PRIORITY_SEPARATOR}{step}"
            for step in PRIORITY_STEPS]


def queue_depths(client: Any) -> dict[str, int]:
    """Messages waiting per queue, all priority lists included, in one round trip."""
    pipe = client.pipeline(transaction=False)
    for queue in ALL_QUEUES:
        for key in priority_keys(queue):
            pipe.llen(key)
    lengths = pipe.execute()
    steps = len(PRIORITY_STEPS)
    return {queue: sum(lengths[i * steps:(i + 1) * steps]) for i, queue in enumerate(ALL_QUEUES)}


def broker_snapshot(client: Any) -> dict[str, Any]:
    return {
        "queues": queue_depths(client),
        "in_flight": int(client.hlen("unacked")),
        "scheduled": scheduler.pending(client),
        "workers": live_workers(client),
    }
