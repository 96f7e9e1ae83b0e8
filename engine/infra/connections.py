"""Every Redis connection RelayDesk opens gets its timeouts and keepalive from here.

Without them a half-open connection (a Redis host that vanished behind a NAT or a
firewall, a failover) blocks a read forever: the send threads and the dispatcher hang and
nothing says why. With them a command fails within READ_TIMEOUT_S as a redis TimeoutError,
which every caller already treats as "Redis is unavailable, retry".
"""

from __future__ import annotations

import socket
from typing import Any

import redis

# Connecting to a server that is up takes milliseconds; one that does not answer is down.
CONNECT_TIMEOUT_S = 5.0
# Longest wait for a reply. RelayDesk sends no blocking command on these clients, and no
# command it sends takes near this long; kombu's BRPOP waits 1 s (brpop_timeout), well
# under it. A reply later than this means the connection is dead.
READ_TIMEOUT_S = 10.0
# A connection idle this long is PINGed before it is used again (redis-py), and kombu
# checks its long-lived BRPOP and pub/sub connections this often.
HEALTH_CHECK_INTERVAL_S = 25
# TCP keepalive: the OS probes an idle connection after 30 s, every 10 s, and gives up
# after 3 unanswered probes, so a dead peer is noticed in about a minute, not two hours.
_KEEPALIVE = {"TCP_KEEPIDLE": 30, "TCP_KEEPINTVL": 10, "TCP_KEEPCNT": 3}


def keepalive_options() -> dict[int, int]:
    """The keepalive timings this platform lets a program set (all on Linux)."""
    return {getattr(socket, name): value for name, value in _KEEPALIVE.items()
            if hasattr(socket, name)}


def connection_options(*, connect_timeout_s: float = CONNECT_TIMEOUT_S,
                       read_timeout_s: float = READ_TIMEOUT_S) -> dict[str, Any]:
    """redis-py's connection arguments (kombu's transport options use the same names)."""
    return {
        "socket_connect_timeout": connect_timeout_s,
        "socket_timeout": read_timeout_s,
        "socket_keepalive": True,
        "socket_keepalive_options": keepalive_options(),
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
    }


def redis_client(url: str, *, connect_timeout_s: float = CONNECT_TIMEOUT_S,
                 read_timeout_s: float = READ_TIMEOUT_S, **options: Any) -> redis.Redis:
    """A client for ``url``; shorter timeouts are for quick probes (a status line, a ping),
    ``options`` for redis-py's other arguments (e.g. ``retry``)."""
    return redis.Redis.from_url(url, **connection_options(
        connect_timeout_s=connect_timeout_s, read_timeout_s=read_timeout_s), **options)
