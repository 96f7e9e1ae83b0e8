"""Worker heartbeats in Redis: every worker on every machine sharing this Redis shows up,
and one that stops beating disappears by itself (the key expires)."""

from __future__ import annotations

import json
import time
from typing import Any

from engine.infra import redis_keys

HEARTBEAT_TTL_S = 10


def beat(client: Any, name: str, info: dict[str, Any]) -> None:
    client.set(redis_keys.WORKER_HEARTBEAT + name, json.dumps({**info, "seen": time.time()}),
               ex=HEARTBEAT_TTL_S)


def forget(client: Any, name: str) -> None:
    client.delete(redis_keys.WORKER_HEARTBEAT + name)


def live_workers(client: Any) -> list[dict[str, Any]]:
    """Workers whose heartbeat is fresh."""
    keys = list(client.scan_iter(redis_keys.WORKER_HEARTBEAT + "*", count=500))
    if not keys:
        return []
    return [json.loads(v) for v in client.mget(keys) if v]
