"""One pooled HTTP client per process (created after fork: pools must not cross it)."""

from __future__ import annotations

import os
import threading

import urllib3

_lock = threading.Lock()
_clients: dict[tuple[int, float, int], urllib3.PoolManager] = {}


def http_client(timeout_s: float, pool_size: int) -> urllib3.PoolManager:
    key = (os.getpid(), timeout_s, pool_size)
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = urllib3.PoolManager(
                num_pools=8,
                maxsize=pool_size,
                block=True,  # at most pool_size connections per host; threads wait their turn
                timeout=urllib3.Timeout(connect=min(timeout_s, 5.0), read=timeout_s),
                retries=False,  # retrying is RelayDesk's job, with backoff and a breaker
            )
            _clients[key] = client
        return client
