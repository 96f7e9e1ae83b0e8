"""Redis clients and the broker fail on a connection that never answers instead of hanging,
wait as long as their purpose says, keep their connections alive, never show the password,
a publish needs a broker it was told of, and the scheduler's lock is released only by its
holder."""

from __future__ import annotations

import socket
import subprocess
import sys
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
from engine.infra.celery_app import app, publish
from engine.infra.connections import (
    CHECK,
    CONSOLE,
    PROBE,
    WORK,
    Purpose,
    celery_for,
    redis_for,
    waiting,
)
from engine.infra.embedded_redis import EmbeddedRedis
from engine.pipeline.runtime import build_runtime
from engine.pipeline.sender import SEND_MESSAGE
from tests.support import wait_for

PASSWORD = "s3cret-Pw"


class SilentServer:
    """Accepts TCP connections and never answers: a half-open connection, as left by a
    Redis host that vanished behind a NAT or a firewall."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://:{PASSWORD}@127.0.0.1:{self.listener.getsockname()[1]}/0"
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
    with pytest.raises(redis.TimeoutError) as failed:
        redis_for(silent.url, PROBE).ping()
    assert PASSWORD not in str(failed.value)


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
    celery_for(silent.url)
    try:
        with pytest.raises(kombu.exceptions.OperationalError) as failed:
            publish(SEND_MESSAGE, [1, 2, False], MESSAGES)
        assert PASSWORD not in str(failed.value)
        assert PASSWORD not in repr(app.connection_for_write())
    finally:
        celery_for("redis://127.0.0.1:9/0")  # drop the pools held on the silent server


def test_a_publish_before_the_broker_is_named_fails_clearly() -> None:
    """Without celery_for(url) first, Celery would try amqp://localhost: far from the bug."""
    probe = (
        "from engine.infra.celery_app import BrokerNotConfigured, publish\n"
        "try:\n"
        "    publish('relaydesk.send_message', [1, 2, False], 'messages')\n"
        "except BrokerNotConfigured as exc:\n"
        "    print(exc)\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=60, check=True)
    assert "celery_for(url)" in result.stdout


def _socket_timeouts(client: redis.Redis) -> tuple[float | None, float | None]:
    """(connect, read) timeouts of a live connection of ``client``."""
    assert client.ping()
    connection = client.connection_pool.get_connection()
    try:
        assert connection._sock is not None
        return connection.socket_connect_timeout, connection._sock.gettimeout()
    finally:
        client.connection_pool.release(connection)


@pytest.mark.parametrize("purpose", [WORK, CONSOLE, CHECK, PROBE, waiting(15.0)])
def test_a_client_waits_as_long_as_its_purpose_says(embedded_redis: EmbeddedRedis,
                                                    purpose: Purpose) -> None:
    client = redis_for(embedded_redis.url(), purpose)
    try:
        assert _socket_timeouts(client) == (purpose.connect_timeout_s, purpose.read_timeout_s)
    finally:
        client.close()


@pytest.mark.timeout(120)
def test_a_check_reports_the_first_failure_without_retrying(silent: SilentServer) -> None:
    with pytest.raises(redis.TimeoutError):
        redis_for(silent.url, CHECK).ping()
    assert len(silent.held) == 1  # one connection: no second attempt


def test_the_broker_waits_as_a_worker_does(embedded_redis: EmbeddedRedis) -> None:
    options = celery_for(embedded_redis.url()).conf.broker_transport_options
    assert options["socket_connect_timeout"] == WORK.connect_timeout_s
    assert options["socket_timeout"] == WORK.read_timeout_s
    assert options["visibility_timeout"]  # the app's own transport options are kept


def test_the_password_never_shows_in_a_client_or_its_errors(
        embedded_redis: EmbeddedRedis) -> None:
    password = embedded_redis.password()
    refused = f"redis://:{password}@127.0.0.1:9/0"
    wrong = embedded_redis.url().replace(password, PASSWORD)
    for url, error in [(refused, redis.ConnectionError),
                       (wrong, redis.AuthenticationError)]:
        client = redis_for(url, PROBE)
        try:
            with pytest.raises(error) as failed:
                client.ping()
            for secret in (password, PASSWORD):
                assert secret not in str(failed.value)
                assert secret not in repr(client)
        finally:
            client.close()


def test_redis_connections_keep_alive(embedded_redis: EmbeddedRedis) -> None:
    client = redis_for(embedded_redis.url(), WORK)
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
