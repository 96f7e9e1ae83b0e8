"""A send rate shared by every worker process on every machine (GCRA in one Lua script).

Celery's own ``rate_limit`` counts per worker instance; this one lives in Redis. Each call
reserves the next free slots and says how long to wait for each, so callers queue up fairly
instead of spinning. The script reads Redis' own clock: machines' clocks need not agree.
"""

from __future__ import annotations

from typing import Any

from engine.infra import redis_keys

# ARGV: the interval between two slots (µs), how many consecutive slots to reserve.
# Returns how long until the first of them (µs); the others follow one interval apart.
_RESERVE = """
local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now_us then tat = now_us end
local after = tat + tonumber(ARGV[1]) * tonumber(ARGV[2])
redis.call('SET', KEYS[1], after, 'PX', math.ceil((after - now_us) / 1000) + 1000)
return tat - now_us
"""


class RateLimiter:
    def __init__(self, client: Any, provider: str, per_second: float | None) -> None:
        self.key = redis_keys.rate_limit(provider)
        self.interval_us = int(1_000_000 / per_second) if per_second else 0
        self._script = client.register_script(_RESERVE) if per_second else None

    @property
    def interval_s(self) -> float:
        """Seconds between two consecutive slots (0 when there is no limit)."""
        return self.interval_us / 1_000_000

    def reserve(self) -> float:
        """Seconds to wait before this send may go out (0 when there is no limit)."""
        return self.reserve_many(1)[0]

    def reserve_many(self, count: int) -> list[float]:
        """Seconds to wait before each of ``count`` sends may go out, in one round trip:
        consecutive slots, so the last is due ``(count - 1) * interval_s`` after the first.
        All zeros when there is no limit."""
        if self._script is None or count <= 0:
            return [0.0] * max(count, 0)
        first = int(self._script(keys=[self.key], args=[self.interval_us, count]))
        return [(first + i * self.interval_us) / 1_000_000 for i in range(count)]
