"""Metrics in bounded Redis time buckets: what the workers did, per queue, per campaign and
per provider, kept at three resolutions.

Every figure lands in three hashes at once: a 10-second bucket, a minute bucket and an hour
bucket (``relaydesk:metrics:<step>:<bucket start>``), each field ``<scope>|<name>``. Each
bucket expires at its start plus its resolution's retention (EXPIREAT), so memory is
bounded by the number of buckets kept (360 + 1,440 + 720 with the defaults) times the
fields written per bucket — whatever the number of messages. Counters and sums are
integers (milliseconds for times); "max" fields keep the largest value seen.

Writers batch: a chunk task adds each message's outcome to a ``Sample`` and writes it in
one script call when the chunk is done. Metrics are observations, not state: a worker that
dies mid-chunk loses that chunk's figures, never a message.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from engine.config.settings import Settings
from engine.infra.redis_keys import PREFIX

KEY_PREFIX = PREFIX + "metrics:"

ALL = "all"


def queue_scope(queue: str) -> str:
    return f"q:{queue}"


def campaign_scope(campaign_id: int) -> str:
    return f"c:{campaign_id}"


def provider_scope(provider: str) -> str:
    return f"p:{provider}"


class Metric(StrEnum):
    """What a figure measures: the ``<name>`` in a bucket's ``<scope>|<name>`` fields (the
    values are stored in Redis and printed by ``relaydesk metrics --json``)."""

    # Counters.
    JOBS = "jobs"
    SENT = "sent"
    DEAD = "dead"
    RETRIED = "retried"
    SUPPRESSED = "suppressed"  # not sent: the number opted out (at send time or per provider)
    CALLS = "calls"
    CALL_ERRORS = "call_errors"
    # Delivery reports applied (engine.pipeline.report_applier): every report, the final
    # ones by outcome, and replies received.
    REPORTS = "reports"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    INBOUND = "inbound"
    # Delivery reports kept without their message: an id RelayDesk did not send (or not
    # yet: one that came before its send's commit, matched later).
    UNMATCHED = "unmatched"
    # Sums (ms), each with its max.
    RUNTIME_MS = "runtime_ms"
    RUNTIME_MAX_MS = "runtime_max_ms"
    WAIT_MS = "wait_ms"
    WAIT_MAX_MS = "wait_max_ms"
    CALL_MS = "call_ms"
    CALL_MAX_MS = "call_max_ms"
    # From a message's send to its delivered report: the sum over DELIVERED, and the max.
    DELIVERY_MS = "delivery_ms"
    DELIVERY_MAX_MS = "delivery_max_ms"
    # Gauges sampled by the monitor (max over the bucket).
    DEPTH = "depth"
    OLDEST_WAIT_MS = "oldest_wait_ms"


@dataclass(frozen=True)
class Resolution:
    name: str
    step_s: int
    keep_s: int

    def bucket(self, at: float) -> int:
        return int(at) // self.step_s * self.step_s

    def key(self, bucket: int) -> str:
        return f"{KEY_PREFIX}{self.name}:{bucket}"


def resolutions(settings: Settings) -> tuple[Resolution, Resolution, Resolution]:
    return (Resolution("10s", 10, settings.metrics_keep_10s_s),
            Resolution("1m", 60, settings.metrics_keep_minutes_s),
            Resolution("1h", 3600, settings.metrics_keep_hours_s))


# KEYS: bucket hashes; ARGV: one expire-at per key, then (op, field, value) triples where
# op "i" adds and "m" keeps the larger. One call writes a whole sample to every resolution.
_RECORD = """
local n = #KEYS
for k = 1, n do
  local key = KEYS[k]
  for i = n + 1, #ARGV, 3 do
    local op, field, value = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    if op == 'i' then
      redis.call('HINCRBY', key, field, value)
    else
      local current = tonumber(redis.call('HGET', key, field))
      if current == nil or tonumber(value) > current then
        redis.call('HSET', key, field, value)
      end
    end
  end
  redis.call('EXPIREAT', key, ARGV[k])
end
return n
"""


class Sample:
    """Figures gathered in one process before they are written; safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sums: dict[str, int] = {}
        self._peaks: dict[str, int] = {}

    def add(self, scopes: Iterable[str], name: Metric, value: float = 1) -> None:
        with self._lock:
            for scope in scopes:
                field = f"{scope}|{name}"
                self._sums[field] = self._sums.get(field, 0) + round(value)

    def peak(self, scopes: Iterable[str], name: Metric, value: float) -> None:
        with self._lock:
            for scope in scopes:
                field = f"{scope}|{name}"
                self._peaks[field] = max(self._peaks.get(field, 0), round(value))

    def timing(self, scopes: Sequence[str], total: Metric, peak: Metric, ms: float) -> None:
        self.add(scopes, total, ms)
        self.peak(scopes, peak, ms)

    def __bool__(self) -> bool:
        return bool(self._sums or self._peaks)

    def take(self) -> list[str]:
        """The script's (op, field, value) triples, emptying the sample."""
        with self._lock:
            args = [x for f, v in self._sums.items() for x in ("i", f, str(v))]
            args += [x for f, v in self._peaks.items() for x in ("m", f, str(v))]
            self._sums, self._peaks = {}, {}
        return args


def record(client: Any, settings: Settings, sample: Sample, at: float | None = None) -> None:
    """Write a sample into its 10 s, minute and hour buckets (one round trip)."""
    if not sample:
        return
    at = time.time() if at is None else at
    keys, expire_at = [], []
    for res in resolutions(settings):
        bucket = res.bucket(at)
        keys.append(res.key(bucket))
        expire_at.append(str(bucket + res.step_s + res.keep_s))
    client.eval(_RECORD, len(keys), *keys, *expire_at, *sample.take())


@dataclass(frozen=True)
class Series:
    """Values per bucket, oldest first; a missing bucket reads as 0."""

    step_s: int
    starts: list[int]
    values: dict[str, list[int]]  # field -> one value per bucket

    def total(self, field: str) -> int:
        return sum(self.values.get(field, ()))

    def peak(self, field: str) -> int:
        return max(self.values.get(field, ()), default=0)


def resolution_for(settings: Settings, span_s: float) -> Resolution:
    """The finest resolution that still keeps the whole span."""
    for res in resolutions(settings):
        if span_s <= res.keep_s:
            return res
    return resolutions(settings)[-1]


def read_series(client: Any, res: Resolution, fields: Sequence[str], since: float,
                until: float | None = None) -> Series:
    """The given fields for every bucket from ``since`` to ``until`` (pipelined HMGETs)."""
    until = time.time() if until is None else until
    starts = list(range(res.bucket(since), res.bucket(until) + 1, res.step_s))
    pipe = client.pipeline(transaction=False)
    for start in starts:
        pipe.hmget(res.key(start), list(fields))
    rows = pipe.execute() if starts else []
    values = {f: [int(row[i] or 0) for row in rows] for i, f in enumerate(fields)}
    return Series(res.step_s, starts, values)


def read_bucket(client: Any, res: Resolution, at: float) -> dict[str, int]:
    """Every field of one bucket (e.g. to find which campaigns were active)."""
    raw = client.hgetall(res.key(res.bucket(at)))
    return {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}


def field(scope: str, name: Metric) -> str:
    return f"{scope}|{name}"


class MetricWindow:
    """The last ``span_s`` of some fields at one resolution, read incrementally: the whole
    window once, then only the previous and the current bucket (figures are always written
    to the bucket of the moment they are recorded, so older buckets no longer change)."""

    def __init__(self, res: Resolution, span_s: int, fields: Sequence[str]) -> None:
        self.res = res
        self.span_s = span_s
        self.fields = list(fields)
        self._rows: dict[int, list[int]] = {}
        self._read_until: int | None = None

    def refresh(self, client: Any, now: float | None = None) -> Series:
        now = time.time() if now is None else now
        step = self.res.step_s
        first, last = self.res.bucket(now - self.span_s + step), self.res.bucket(now)
        since = first if self._read_until is None else max(first, self._read_until - step)
        fresh = read_series(client, self.res, self.fields, since, now)
        for i, start in enumerate(fresh.starts):
            self._rows[start] = [fresh.values[f][i] for f in self.fields]
        for start in [s for s in self._rows if s < first]:
            del self._rows[start]
        self._read_until = last
        starts = list(range(first, last + 1, step))
        empty = [0] * len(self.fields)
        rows = [self._rows.get(s, empty) for s in starts]
        return Series(step, starts, {f: [r[j] for r in rows] for j, f in enumerate(self.fields)})
