"""What is waiting where: Celery queue depths (read as its Redis transport stores them),
how long the oldest job has waited, in-flight messages, durably scheduled jobs, live
workers."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from engine.domain.queues import ALL_QUEUES
from engine.infra import redis_keys
from engine.infra.celery_app import PUBLISHED_HEADER
from engine.infra.worker_registry import live_workers

# kombu splits a queue with priorities into lists "name", "name\x06\x163", ... "name\x06\x169"
PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)
UNACKED = "unacked"  # kombu's hash of delivered, not yet acknowledged messages


def priority_keys(queue: str) -> list[str]:
    return [queue if step == 0 else f"{queue}{PRIORITY_SEPARATOR}{step}"
            for step in PRIORITY_STEPS]


@dataclass(frozen=True)
class QueueLoad:
    name: str
    waiting: int  # all priority lists together
    by_priority: dict[int, int]
    in_flight: int  # delivered to a worker, not acknowledged yet
    oldest_wait_s: float  # age of the oldest job still waiting; 0 when none

    def as_dict(self) -> dict[str, Any]:
        return {"waiting": self.waiting, "in_flight": self.in_flight,
                "oldest_wait_s": round(self.oldest_wait_s, 1),
                "by_priority": {str(k): v for k, v in self.by_priority.items()}}


@dataclass(frozen=True)
class BrokerLoad:
    queues: dict[str, QueueLoad]
    in_flight: int
    scheduled: int  # paced or delayed jobs in RelayDesk's schedule, not yet in a queue
    read_at: float


def _published_at(raw: bytes | str | None) -> float | None:
    """The publish time a Celery message carries (our header); None for other messages."""
    if raw is None:
        return None
    try:
        envelope = json.loads(raw)
        if isinstance(envelope, list):  # unacked entries: [message, exchange, routing_key]
            envelope = envelope[0]
        return float(envelope["headers"][PUBLISHED_HEADER])
    except (ValueError, KeyError, TypeError, IndexError):
        return None


def _routing_key(raw: bytes | str) -> str | None:
    try:
        entry = json.loads(raw)
        return str(entry[2]) if isinstance(entry, list) and len(entry) > 2 else None
    except (ValueError, TypeError):
        return None


def broker_load(client: Any) -> BrokerLoad:
    """Every queue's depth, oldest wait and in-flight count, in one pipelined round trip.

    kombu pushes on the left and consumes from the right, so each list's oldest message is
    at index -1. In-flight messages are counted per queue from ``unacked``, which holds at
    most prefetch × processes entries per worker.
    """
    pipe = client.pipeline(transaction=False)
    for queue in ALL_QUEUES:
        for key in priority_keys(queue):
            pipe.llen(key)
            pipe.lindex(key, -1)
    pipe.hvals(UNACKED)
    pipe.zcard(redis_keys.SCHEDULED)
    replies = pipe.execute()
    now = time.time()
    unacked, scheduled = replies[-2], int(replies[-1])
    flight: dict[str, int] = {}
    for raw in unacked:
        routed = _routing_key(raw)
        if routed is not None:
            flight[routed] = flight.get(routed, 0) + 1
    loads: dict[str, QueueLoad] = {}
    per_queue = 2 * len(PRIORITY_STEPS)
    for i, queue in enumerate(ALL_QUEUES):
        part = replies[i * per_queue:(i + 1) * per_queue]
        by_priority = {step: int(part[2 * j]) for j, step in enumerate(PRIORITY_STEPS)}
        published = [t for t in (_published_at(part[2 * j + 1])
                                 for j in range(len(PRIORITY_STEPS))) if t is not None]
        oldest = max(0.0, now - min(published)) if published else 0.0
        loads[queue] = QueueLoad(queue, sum(by_priority.values()), by_priority,
                                 flight.get(queue, 0), oldest)
    return BrokerLoad(loads, len(unacked), scheduled, now)


def queue_depths(client: Any) -> dict[str, int]:
    """Messages waiting per queue, all priority lists included."""
    return {name: load.waiting for name, load in broker_load(client).queues.items()}


def broker_snapshot(client: Any, load: BrokerLoad | None = None,
                    workers: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The broker's state as ``status --json`` prints it; pass what was already read."""
    load = broker_load(client) if load is None else load
    return {
        "queues": {name: q.waiting for name, q in load.queues.items()},
        "queue_load": {name: q.as_dict() for name, q in load.queues.items()},
        "in_flight": load.in_flight,
        "scheduled": load.scheduled,
        "workers": live_workers(client) if workers is None else workers,
    }
