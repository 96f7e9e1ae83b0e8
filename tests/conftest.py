"""Shared fixtures: every test runs in its own data dir, with no settings leaking in."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import create_engine, text

from engine.config.settings import Settings, load_settings, setting_names
from engine.infra.embedded_redis import EmbeddedRedis, free_port
from engine.infra.sandbox_gateway import GatewayServer, start_gateway
from engine.infra.worker_registry import live_workers
from engine.store.db import Database, close_databases, open_database
from tests.support import counts_kept_in_open_databases, redis_answers, vulnerable_binary, wait_for

POSTGRES_URL_VAR = "RELAYDESK_TEST_POSTGRES_URL"


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh data dir, no config file, no .env, and none of the operator's settings."""
    for name in setting_names():
        monkeypatch.delenv(name, raising=False)
    for name in [n for n in os.environ if n.startswith(("RELAYDESK_", "SMS_", "SENTRY_"))]:
        if name != POSTGRES_URL_VAR:
            monkeypatch.delenv(name, raising=False)
    data_dir = tmp_path / "data"
    monkeypatch.setenv("RELAYDESK_DATA_DIR", str(data_dir))
    monkeypatch.setenv("RELAYDESK_CONFIG_FILE", str(tmp_path / "config.toml"))
    # "Today" and quiet hours must not depend on where the suite runs.
    monkeypatch.setenv("RELAYDESK_TIMEZONE", "UTC")
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    yield data_dir
    counts_kept_in_open_databases()
    close_databases()


@pytest.fixture
def settings() -> Settings:
    return load_settings()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test, dropped afterwards."""
    admin_url = os.environ.get(POSTGRES_URL_VAR)
    if not admin_url:
        pytest.skip(f"{POSTGRES_URL_VAR} is not set: no PostgreSQL server to test against")
    admin_url = admin_url.replace("postgresql://", "postgresql+psycopg://", 1)
    name = f"relaydesk_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        counts_kept_in_open_databases()
        close_databases()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_settings(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings for the SQLite default and, when a server is given, for PostgreSQL."""
    if request.param == "postgresql":
        monkeypatch.setenv("RELAYDESK_DATABASE_URL", request.getfixturevalue("postgres_url"))
    return load_settings()


@pytest.fixture
def db(db_settings: Settings) -> Database:
    return open_database(db_settings)


# --- the pipeline: real Redis, real gateway, real worker processes -----------------------

FAST_PIPELINE_ENV = {
    "RELAYDESK_PACING_INDIVIDUAL_S": "0",
    "RELAYDESK_PACING_CHUNK_S": "0",
    "RELAYDESK_RETRY_BACKOFF": "0.05",
    "RELAYDESK_WORKER_CONCURRENCY": "2",
}


@pytest.fixture
def fast_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in FAST_PIPELINE_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def embedded_redis(isolated_env: Path) -> Iterator[EmbeddedRedis]:
    """The embedded Redis of the test's data dir, on a free port, stopped afterwards."""
    server = EmbeddedRedis(isolated_env / "redis")
    process, _ = server.start()
    yield server
    server.stop()
    if process is not None:
        process.wait(10)


@pytest.fixture
def redis_client(embedded_redis: EmbeddedRedis) -> Iterator[Any]:
    client = redis.Redis.from_url(embedded_redis.url())
    yield client
    client.close()


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> Iterator[GatewayServer]:
    """The sandbox gateway on a free port; worker processes reach it over HTTP."""
    server = start_gateway()
    monkeypatch.setenv("RELAYDESK_SMS_GATEWAY_URL", server.url)
    yield server
    server.shutdown()
    server.server_close()


class Workers:
    """Real ``relaydesk worker`` processes for one test."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        before = {w["pid"] for w in live_workers(self.client)}
        log_path = Path(os.environ["RELAYDESK_DATA_DIR"]) / f"worker-{len(self.processes)}.log"
        with log_path.open("ab") as log:
            # Its own process group: a test can kill the worker with its pool processes.
            process = subprocess.Popen([sys.executable, "-m", "engine", "worker", *args],
                                       stdout=log, stderr=log, start_new_session=True)
        self.processes.append(process)
        wait_for(lambda: {w["pid"] for w in live_workers(self.client)} - before
                 or process.poll() is not None, timeout=60, message="the worker to come up")
        assert process.poll() is None, "the worker exited at start; see its log in the data dir"
        return process

    def kill_hard(self, process: subprocess.Popen[bytes]) -> None:
        """kill -9 the worker and its pool processes, as a crash or power loss would."""
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def workers(redis_client: Any, fast_pipeline: None) -> Iterator[Workers]:
    pool = Workers(redis_client)
    yield pool
    pool.stop_all()


@pytest.fixture
def old_redis_url(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """RELAYDESK_REDIS_URL pointing at a Redis release with known holes, when this machine
    has one to run."""
    binary = vulnerable_binary()
    if binary is None:
        pytest.skip("no Redis release with known holes on this machine to run")
    port = free_port()
    server = subprocess.Popen([str(binary), "--bind", "127.0.0.1", "--port", str(port),
                               "--save", "", "--dir", str(isolated_env.parent)],
                              stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_for(lambda: redis_answers(url), message="the old Redis")
        monkeypatch.setenv("RELAYDESK_REDIS_URL", url)
        yield url
    finally:
        server.kill()
        server.wait()
