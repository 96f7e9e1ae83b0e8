"""Which campaigns still have a job somewhere in the broker: waiting in a Celery queue, in
flight (kombu's ``unacked`` hash) or waiting on purpose in RelayDesk's durable schedule.

Used only to decide that a stalled campaign's jobs were lost, so it scans; it never runs on
the hot path. Every RelayDesk job carries its campaign id as its first argument
(``process_bulk [campaign]``, ``send_chunk [campaign, ids]``, ``send_message [campaign, id,
retry]``), and each job is read from its body, as the worker reads it: never from
Celery's ``argsrepr`` header, which is a display string (``[5, [12, 13]]``), cut short for
long arguments.

Why read the broker instead of keeping a count of outstanding jobs per campaign: the queues
are the truth about where the jobs are. A separate marker would have to be kept in step by
every path that creates, releases, runs, retries, restores or drops a job, and kombu's
publish cannot share a transaction with it; the one event recovery exists for (a job acked
and lost while Redis restarts) is exactly when clearing such a marker fails, and a marker
left standing would keep the campaign from ever being recovered. Reading the jobs
themselves, a job can at worst be missed for the milliseconds kombu moves it between a list
and ``unacked``: recovery then queues a spare copy, which sends nothing twice (every send
claims its row).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Iterable, Iterator
from typing import Any

from engine.domain.queues import ALL_QUEUES
from engine.infra import redis_keys, scheduler
from engine.monitoring.queue_status import UNACKED, priority_keys
from engine.pipeline.sender import PROCESS_BULK, SEND_CHUNK, SEND_MESSAGE

log = logging.getLogger(__name__)

_PAGE = 1000  # list entries per LRANGE: bounds one reply on a very long queue
RELAYDESK_TASKS = frozenset({PROCESS_BULK, SEND_CHUNK, SEND_MESSAGE})


def campaigns_with_jobs(client: Any, queues: Iterable[str] = ALL_QUEUES) -> set[int]:
    """The ids of campaigns with at least one job anywhere in the broker.

    Jobs move from the schedule to a queue (published, then removed from the schedule) and
    from a queue to ``unacked`` (popped, then recorded); reading in that same order means a
    job moving meanwhile is seen at its old place or its new one. Scheduled jobs count
    whatever their due time: work that waits on purpose (pacing, retry backoff, a send
    scheduled for later) is outstanding, never lost.
    """
    found = {c for c in _scheduled_campaigns(client) if c is not None}
    unreadable = 0
    raws = [raw for queue in queues for key in priority_keys(queue)
            for raw in _list_entries(client, key)]
    raws += client.hvals(UNACKED)
    for raw in raws:
        campaign = message_campaign(raw)
        if campaign is None:
            unreadable += 1
        else:
            found.add(campaign)
    if unreadable:  # not a RelayDesk job (another program's, on a shared Redis)
        log.warning("%d message(s) in RelayDesk's queues are not RelayDesk jobs; ignored "
                    "when looking for lost campaigns", unreadable)
    return found


def message_campaign(raw: bytes | str) -> int | None:
    """The campaign id of a Celery message as kombu's Redis transport stores it: a queue
    entry (the message) or an ``unacked`` entry (``[message, exchange, routing_key]``).
    None for anything that is not a RelayDesk job."""
    try:
        message = json.loads(raw)
        if isinstance(message, list):
            message = message[0]
        return _first_arg_campaign(_task_args(message))
    except (ValueError, KeyError, TypeError, IndexError, binascii.Error):
        return None


def _task_args(message: dict[str, Any]) -> Any:
    """A RelayDesk task's positional arguments from the message body (JSON, base64 on
    Redis); None for another program's task, whatever its arguments look like."""
    headers = message.get("headers") or {}
    if headers.get("task") not in RELAYDESK_TASKS:
        return None
    if message.get("content-type") != "application/json" or headers.get("compression"):
        return None  # RelayDesk publishes uncompressed JSON only
    body = message["body"]
    if message.get("properties", {}).get("body_encoding") == "base64":
        body = base64.b64decode(body, validate=True)
    payload = json.loads(body)
    # Protocol 2 (Celery's default): [args, kwargs, embed]; protocol 1: {"args": [...], ...}
    return payload[0] if isinstance(payload, list) else payload["args"]


def _first_arg_campaign(args: Any) -> int | None:
    if isinstance(args, list) and args and type(args[0]) is int:  # bool is no campaign
        return int(args[0])
    return None


def _scheduled_campaigns(client: Any) -> Iterator[int | None]:
    for raw, _due in client.zscan_iter(redis_keys.SCHEDULED, count=_PAGE):
        try:
            yield _first_arg_campaign(scheduler.Job.decode(raw).args)
        except (ValueError, KeyError, TypeError):
            yield None


def _list_entries(client: Any, key: str) -> Iterator[bytes]:
    """A queue list, page by page. kombu pushes at the head and pops at the tail, so paging
    from the head can see an entry twice but never skips one that stays in the list."""
    start = 0
    while page := client.lrange(key, start, start + _PAGE - 1):
        yield from page
        if len(page) < _PAGE:
            return
        start += _PAGE
