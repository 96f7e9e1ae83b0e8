"""Whether the broker still holds any job of a campaign: in its Celery queue, in flight
(kombu's ``unacked`` hash) or durably scheduled. Used only to decide that a stalled
campaign's jobs were lost, so it scans; it never runs on the hot path."""

from __future__ import annotations

import json
from typing import Any

from engine import redis_keys
from engine.queue_status import priority_keys


def _job_campaign(raw: bytes | str) -> int | None:
    """The campaign id of a Celery message (protocol 2: the args' repr is a header)."""
    try:
        envelope = json.loads(raw)
        if isinstance(envelope, list):  # unacked entries: [message, exchange, routing_key]
            envelope = envelope[0]
        argsrepr = str(envelope["headers"]["argsrepr"])
        return int(argsrepr.strip("(").split(",")[0].strip(")"))
    except (ValueError, KeyError, TypeError, IndexError):
        return None


def campaign_has_jobs(client: Any, campaign_id: int, queue: str) -> bool:
    for key in priority_keys(queue):
        if any(_job_campaign(raw) == campaign_id for raw in client.lrange(key, 0, -1)):
            return True
    if any(_job_campaign(raw) == campaign_id for raw in client.hvals("unacked")):
        return True
    pattern = f'*"args":\\[{campaign_id},*'  # '[' opens a character class in MATCH
    return any(True for _ in client.zscan_iter(redis_keys.SCHEDULED, match=pattern, count=1000))
