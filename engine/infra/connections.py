"""Every Redis client and the Celery broker connection RelayDesk opens are made here.

A client is made for a purpose, and the purpose says how long it waits. Without timeouts a
half-open connection (a Redis host that vanished behind a NAT or a firewall, a failover)
blocks a read forever: the send threads and the dispatcher hang and nothing says why. With
them a command fails within its purpose's read timeout as a redis TimeoutError, which every
caller already treats as "Redis is unavailable, retry".

Celery publishes through one process-wide app; :func:`celery_for` points it at a broker
and ``celery_app.publish`` refuses to run before that.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, replace
from typing import Any

import redis
from celery import Celery
from redis.backoff import NoBackoff
from redis.retry import Retry

from engine.infra.celery_app import app


@dataclass(frozen=True)
class Purpose:
    """How long a client waits to connect and for each reply."""

    connect_timeout_s: float
    read_timeout_s: float
    # False: the first failure is the answer, whatever redis-py's default retry policy is
    # (it has changed between versions), so a check fails within its timeout.
    retry: bool = True


# The pipeline and the commands: a worker's send threads and dispatcher, the CLI, a
# campaign being queued, the broker. Connecting to a server that is up takes milliseconds.
# RelayDesk sends no blocking command on these clients and none it sends takes near 10 s
# (kombu's BRPOP waits 1 s, brpop_timeout): a reply later than that means the connection
# is dead.
WORK = Purpose(connect_timeout_s=5.0, read_timeout_s=10.0)
# The console's client, which every page reads through on its background threads: someone
# is looking, so a server that does not answer is shown as unavailable within 3 s instead
# of holding every page's refresh for WORK's 10.
CONSOLE = Purpose(connect_timeout_s=3.0, read_timeout_s=3.0)
# A connection check ("Test connection", 'relaydesk check'): someone is waiting, as on the
# console, and the first failure is what the check reports.
CHECK = replace(CONSOLE, retry=False)
# "Is it up?" asked often: the embedded server's ping (also its start loop's), the
# supervisor's probe of its workers every second, the Redis status panel, the development
# inspector's recorder. Each has an answer for silence (down, unknown, record nothing), so
# waiting longer would only stall the loop it runs in.
PROBE = Purpose(connect_timeout_s=1.0, read_timeout_s=2.0)


def waiting(read_timeout_s: float) -> Purpose:
    """WORK, for a command the server may take ``read_timeout_s`` to answer (SHUTDOWN
    flushing its append-only file)."""
    return replace(WORK, read_timeout_s=read_timeout_s)


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


def connection_options(purpose: Purpose) -> dict[str, Any]:
    """redis-py's connection arguments (kombu's transport options use the same names)."""
    return {
        "socket_connect_timeout": purpose.connect_timeout_s,
        "socket_timeout": purpose.read_timeout_s,
        "socket_keepalive": True,
        "socket_keepalive_options": keepalive_options(),
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
    }


def redis_for(url: str, purpose: Purpose) -> redis.Redis:
    """A client for ``url`` that waits as long as ``purpose`` allows. The caller closes it."""
    retry = {} if purpose.retry else {"retry": Retry(NoBackoff(), 0)}
    return redis.Redis.from_url(url, **connection_options(purpose), **retry)


def celery_for(url: str) -> Celery:
    """The process's Celery app, publishing to and controlling workers through ``url``.

    Pointing it elsewhere later (the console after a settings change) drops the cached
    connection and producer pools, which would otherwise keep publishing to the old broker.
    """
    if app.conf.broker_url not in (None, url) and app._pool is not None:
        app._pool.force_close_all()
        app._pool = None
        app.amqp._producer_pool = None
    # Timeouts and keepalive, as every RelayDesk Redis client has them: a half-open broker
    # connection must fail a publish or a poll, not hang it forever.
    app.conf.broker_transport_options = {**app.conf.broker_transport_options,
                                         **connection_options(WORK)}
    app.conf.broker_url = url
    if url.startswith("rediss://") and "ssl_cert_reqs" not in url:
        # kombu refuses a TLS URL that does not say how to check the certificate;
        # verify it, as any TLS client should.
        app.conf.broker_use_ssl = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    return app
