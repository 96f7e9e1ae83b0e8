"""Redis clients and the broker fail on a connection that never answers instead of hanging,
keep their connections alive, and the scheduler's lock is released only by its holder."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import kombu.exceptions
import pytest
import redis
from redis.commands.core import Script

from engine.config.settings import load_settings
from engine.domain.queues import MESSAGES
from engine.infra import redis_keys, scheduler
from engine.infra.celery_app import configure, publish
from engine.infra.connections import redis_client
from engine.infra.embedded_redis import EmbeddedRedis
from engine.pipeline.runtime import build_runtime
from engine.pipeline.sender import SEND_MESSAGE
from tests.support import wait_for


class SilentServer:
    """Accepts TCP connections and never answers: a half-open connection, as left by a
    Redis host that vanished behind a NAT or a firewall."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self.listener.getsockname()[1]}/0"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.listener.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


# pytest-timeout is the hang guard: without socket timeouts these calls never return.
@pytest.mark.timeout(120)
def test_a_redis_call_on_a_half_open_connection_fails_with_a_timeout(
        silent: SilentServer) -> None:
    with pytest.raises(redis.TimeoutError):
        redis_client(silent.url, read_timeout_s=1).ping()


@pytest.mark.timeout(120)
def test_the_workers_redis_client_does_not_hang_on_a_half_open_connection(
        silent: SilentServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYDESK_REDIS_URL", silent.url)
    monkeypatch.setenv("RELAYDESK_SMS_GATEWAY_URL", "http://127.0.0.1:9")
    rt = build_runtime(load_settings())
    try:
        with pytest.raises(redis.TimeoutError):
            rt.redis.exists(redis_keys.campaign_paused(1))  # the send threads' first call
    finally:
        rt.pool.shutdown()
        rt.redis.close()


@pytest.mark.timeout(120)
def test_a_publish_to_a_silent_broker_fails_instead_of_hanging(silent: SilentServer) -> None:
    configure(silent.url)
    try:
        with pytest.raises(kombu.exceptions.OperationalError):
            publish(SEND_MESSAGE, [1, 2, False], MESSAGES)
    finally:
        configure("redis://127.0.0.1:9/0")  # drop the pools held on the silent server


def test_redis_connections_keep_alive(embedded_redis: EmbeddedRedis) -> None:
    client = redis_client(embedded_redis.url())
    try:
        assert client.ping()
        connection = client.connection_pool.get_connection()
        try:
            sock = connection._sock
            assert sock is not None
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
            assert sock.gettimeout() is not None
        finally:
            client.connection_pool.release(connection)
    finally:
        client.close()


# --- the scheduler's lock ----------------------------------------------------------------

class TakeoverAfterRead:
    """The releaser's Redis client (redis-py, passed through) with one twist: right after
    the releaser reads or releases the scheduler lock, the lock expires and another
    releaser takes it, the interleaving a slow release meets in production."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.taken_over = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def register_script(self, script: str) -> Script:
        return Script(self, script)  # its EVALSHA comes through this wrapper

    def get(self, name: str) -> Any:
        value = self._client.get(name)
        self._take_over(name)
        return value

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        result = self._client.evalsha(sha, numkeys, *keys_and_args)
        self._take_over(keys_and_args[0] if numkeys else "")
        return result

    def _take_over(self, key: Any) -> None:
        lock = redis_keys.SCHEDULER_LOCK
        if self.taken_over or key not in (lock, lock.encode()):
            return
        self.taken_over = True
        self._client.pexpire(lock, 1)
        wait_for(lambda: not self._client.exists(lock), message="the lock to expire")
        assert self._client.set(lock, "other-releaser", nx=True, px=scheduler.LOCK_MS)


def test_a_lock_taken_over_by_another_releaser_is_not_deleted(redis_client: Any) -> None:
    job = scheduler.Job(SEND_MESSAGE, [1, 2, False], MESSAGES)
    scheduler.schedule(redis_client, [(time.time() - 1, job)])
    client = TakeoverAfterRead(redis_client)
    published: list[scheduler.Job] = []
    assert scheduler.release_due(client, published.append) == 1
    assert client.taken_over
    assert redis_client.get(redis_keys.SCHEDULER_LOCK) == b"other-releaser"


def test_a_lock_is_released_only_by_its_holder(redis_client: Any) -> None:
    key = redis_keys.SCHEDULER_LOCK
    redis_client.set(key, "holder", px=scheduler.LOCK_MS)
    assert not scheduler.release_lock(redis_client, key, "someone-else")
    assert redis_client.get(key) == b"holder"
    assert scheduler.release_lock(redis_client, key, "holder")
    assert not redis_client.exists(key)
