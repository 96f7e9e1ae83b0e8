"""Durable delayed jobs: a Redis sorted set of jobs by due time, released when due.

Celery's countdown/ETA tasks wait in a worker's memory (and are redelivered as duplicates
after the visibility timeout); pacing a 100,000-message campaign that way exhausts memory.
Here a delayed job is a small JSON entry in Redis (persisted with the rest of Redis) and
becomes a Celery message only when due. Release is at-least-once: publish, then remove;
tasks are idempotent, so a job released twice after a crash costs nothing.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from engine.infra import redis_keys

RELEASE_BATCH = 500
LOCK_MS = 10_000


@dataclass(frozen=True)
class Job:
    task: str
    args: list[Any]
    queue: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def encode(self) -> str:
        return json.dumps({"id": self.id, "task": self.task, "args": self.args,
                           "queue": self.queue}, separators=(",", ":"))

    @classmethod
    def decode(cls, raw: str | bytes) -> Job:
        data = json.loads(raw)
        return cls(data["task"], data["args"], data["queue"], data["id"])


Publish = Callable[[Job], None]


def schedule(client: Any, jobs: Iterable[tuple[float, Job]]) -> int:
    """Add jobs with their due times (epoch seconds) in pipelined batches."""
    count = 0
    pipe = client.pipeline(transaction=False)
    for due, job in jobs:
        pipe.zadd(redis_keys.SCHEDULED, {job.encode(): due})
        count += 1
        if count % 1000 == 0:
            pipe.execute()
    pipe.execute()
    return count


def pending(client: Any) -> int:
    return int(client.zcard(redis_keys.SCHEDULED))


def next_due_in(client: Any) -> float | None:
    first = client.zrange(redis_keys.SCHEDULED, 0, 0, withscores=True)
    return float(first[0][1]) - time.time() if first else None


def release_due(client: Any, publish: Publish, limit: int = RELEASE_BATCH) -> int:
    """Publish the jobs that are due; one releaser at a time across all machines."""
    token = uuid.uuid4().hex
    if not client.set(redis_keys.SCHEDULER_LOCK, token, nx=True, px=LOCK_MS):
        return 0
    try:
        due = client.zrangebyscore(redis_keys.SCHEDULED, "-inf", time.time(), start=0,
                                   num=limit)
        for raw in due:
            publish(Job.decode(raw))
        if due:
            client.zrem(redis_keys.SCHEDULED, *due)
        return len(due)
    finally:
        release_lock(client, redis_keys.SCHEDULER_LOCK, token)


# Delete the lock only if it still holds our token, in one step: with a GET then a DEL, a
# lock that expired (a slow release) and was taken by another releaser in between would
# be deleted under it, and two releasers would run at once.
_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


def release_lock(client: Any, key: str, token: str) -> bool:
    """Release a ``SET key token NX PX`` lock if it is still ours; True if it was."""
    return bool(client.register_script(_RELEASE_LOCK)(keys=[key], args=[token]))
