"""The receiver's durable hand-off to the applier: a Redis list of reports as JSON.

The receiver answers a provider 2xx only after its report is in this list (Redis's
append-only file keeps it across a restart), so an acknowledged report is never lost even
if the receiver dies right after. One applier at a time (REPORT_APPLY_LOCK) reads the
oldest entries, applies them in one database transaction, then trims them off: a crash
between the commit and the trim applies them again, which each report's unique receipt
makes harmless (engine.store.delivery_reports).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from engine.domain.delivery import Report
from engine.infra import redis_keys

log = logging.getLogger(__name__)

INBOX = redis_keys.REPORT_INBOX


def encode(report: Report) -> str:
    return json.dumps(report.to_json_dict(), separators=(",", ":"))


def push(client: Any, reports: Sequence[Report]) -> None:
    """Append reports to the inbox (one round trip)."""
    if reports:
        client.rpush(INBOX, *(encode(r) for r in reports))


async def push_async(client: Any, report: Report) -> None:
    """push() for the receiver's asyncio Redis client."""
    await client.rpush(INBOX, encode(report))


def peek(client: Any, limit: int) -> tuple[int, list[Report]]:
    """(entries read, reports) for the oldest ``limit`` entries, which stay in the inbox
    until ``acknowledge(client, entries read)``. An entry that cannot be read (written by
    something else) is logged and skipped: it must not block the ones behind it."""
    raws = client.lrange(INBOX, 0, limit - 1)
    reports = []
    for raw in raws:
        try:
            reports.append(Report.from_json_dict(json.loads(raw)))
        except (ValueError, KeyError, TypeError):
            log.error("skipping an unreadable entry in %s", INBOX)
    return len(raws), reports


def acknowledge(client: Any, count: int) -> None:
    """Drop the ``count`` oldest entries: they are applied."""
    if count:
        client.ltrim(INBOX, count, -1)


def pending(client: Any) -> int:
    return int(client.llen(INBOX))
