"""A circuit breaker per provider, shared through Redis by every worker.

After ``threshold`` transient failures in a row the breaker opens: nobody sends for
``cooldown_s``. Then one worker may send a probe (half-open); its success closes the
breaker, its failure opens it again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from engine.infra import redis_keys

PROBE_LEASE_MS = 30_000


@dataclass(frozen=True)
class BreakerState:
    state: str  # closed | open | half-open
    failures: int
    reopens_in_s: float


@dataclass(frozen=True)
class Admission:
    wait_s: float  # 0: a send may go out now; else how long until the breaker lets one through
    probe: bool  # half-open, and this caller holds the probe: send exactly one message


class CircuitBreaker:
    def __init__(self, client: Any, provider: str, threshold: int, cooldown_s: float) -> None:
        self.client = client
        self.provider = provider
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.failures_key = redis_keys.breaker(provider, "failures")
        self.open_until_key = redis_keys.breaker(provider, "open_until")
        self.probe_key = redis_keys.breaker(provider, "probe")

    def wait_s(self) -> float:
        """0 when a send may go out now; else how long until the breaker lets one through."""
        return self.admit(self.client.get(self.open_until_key)).wait_s

    def admit(self, open_until: bytes | str | None) -> Admission:
        """What the breaker allows, given the value of ``open_until_key`` the caller read
        (in a pipeline with its other reads): send now, wait, or send one probe."""
        if open_until is None:
            return Admission(0.0, probe=False)
        remaining = float(open_until) - time.time()
        if remaining > 0:
            return Admission(remaining, probe=False)
        # Half-open: exactly one probe at a time.
        if self.client.set(self.probe_key, "1", nx=True, px=PROBE_LEASE_MS):
            return Admission(0.0, probe=True)
        return Admission(1.0, probe=False)

    def record_success(self) -> None:
        self.client.delete(self.failures_key, self.open_until_key, self.probe_key)

    def record_failure(self) -> None:
        failures = int(self.client.incr(self.failures_key))
        self.client.expire(self.failures_key, 300)
        probing = self.client.get(self.probe_key) is not None
        if failures >= self.threshold or probing:
            pipe = self.client.pipeline()
            pipe.set(self.open_until_key, str(time.time() + self.cooldown_s))
            pipe.delete(self.failures_key, self.probe_key)
            pipe.execute()

    def state(self) -> BreakerState:
        failures = int(self.client.get(self.failures_key) or 0)
        open_until = self.client.get(self.open_until_key)
        if open_until is None:
            return BreakerState("closed", failures, 0.0)
        remaining = float(open_until) - time.time()
        return BreakerState("open" if remaining > 0 else "half-open", failures,
                            max(remaining, 0.0))
