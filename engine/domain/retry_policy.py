"""How long to wait before the next attempt: exponential backoff with jitter, capped."""

from __future__ import annotations

import random


def backoff_s(failures: int, base_s: float, cap_s: float,
              rng: random.Random | None = None) -> float:
    """Delay after the ``failures``-th failed attempt: base x 2^(failures-1), capped, then
    jittered down to between half and all of it so retries of a burst spread out."""
    if failures < 1:
        return 0.0
    delay: float = min(cap_s, base_s * 2.0 ** (failures - 1))
    jitter: float = (rng or random).random()
    return delay * (0.5 + 0.5 * jitter)
