from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect

from engine.config.masking import mask_url
from engine.config.settings import Settings, load_settings
from engine.infra.embedded_redis import EmbeddedRedis, free_port
from engine.infra.sandbox_gateway import GatewayServer
from engine.operations.connection_checks import check_database, check_provider, check_redis
from engine.store.db import open_database


def password_of(server: EmbeddedRedis) -> str:
    return server.password()


# --- Redis ---------------------------------------------------------------------------------

def test_embedded_redis_not_running_is_reported_without_starting_it(
    settings: Settings, isolated_env: Path
) -> None:
    result = check_redis(None, settings)
    assert result.ok  # nothing to fix: RelayDesk starts it with the workers
    assert "not running" in result.message
    assert result.detail["running"] is False
    assert not isolated_env.exists()  # nothing was created, nothing started


def test_embedded_redis_running(settings: Settings, embedded_redis: EmbeddedRedis) -> None:
    result = check_redis("", settings)
    assert result.ok, result.message
    assert result.message.startswith("Connected to RelayDesk's own Redis ")
    assert f"127.0.0.1:{embedded_redis.url().rsplit(':', 1)[1].split('/')[0]}" in result.message
    assert result.detail["maxmemory_policy"] == "noeviction"
    assert "Warning" not in result.message
    assert password_of(embedded_redis) not in repr(result)


def test_redis_url_with_and_without_the_right_password(
    settings: Settings, embedded_redis: EmbeddedRedis
) -> None:
    url = embedded_redis.url()
    result = check_redis(url, settings)
    assert result.ok, result.message
    assert result.detail["version"] in result.message
    assert result.detail["latency_ms"] >= 0
    assert password_of(embedded_redis) not in repr(result)
    wrong = url.replace(password_of(embedded_redis), "wrong-password-123")
    refused = check_redis(wrong, settings)
    assert not refused.ok
    assert "refused the password" in refused.message
    assert "fix the password in RELAYDESK_REDIS_URL" in refused.message
    assert "wrong-password-123" not in repr(refused)


def test_a_masked_redis_url_is_tested_with_the_password_in_force(
    embedded_redis: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELAYDESK_REDIS_URL", embedded_redis.url())
    settings = load_settings()
    result = check_redis(mask_url(embedded_redis.url()), settings)
    assert result.ok, result.message


def test_redis_on_a_closed_port(settings: Settings) -> None:
    port = free_port()
    result = check_redis(f"redis://:some-secret-pw@127.0.0.1:{port}/0", settings)
    assert not result.ok
    assert result.message.startswith(f"Could not connect to 127.0.0.1:{port}: connection refused")
    assert "fix RELAYDESK_REDIS_URL" in result.message
    assert result.detail["url"] == f"redis://:****@127.0.0.1:{port}/0"
    assert "some-secret-pw" not in repr(result)


def test_not_a_redis_url(settings: Settings) -> None:
    result = check_redis("http://:pw-in-url@localhost:6379", settings)
    assert not result.ok
    assert "not a Redis URL" in result.message
    assert "pw-in-url" not in repr(result)


# --- database ------------------------------------------------------------------------------

def test_sqlite_default_that_does_not_exist_yet_is_not_created(
    settings: Settings, isolated_env: Path
) -> None:
    result = check_database(None, settings)
    assert result.ok
    assert "creates it on first use" in result.message
    assert not settings.sqlite_path.exists()


def test_sqlite_database_in_use(settings: Settings) -> None:
    open_database(settings)  # created and migrated, as any RelayDesk process does
    result = check_database("", settings)
    assert result.ok, result.message
    assert result.message.startswith("Opened SQLite 3.")
    assert "schema up to date" in result.message
    assert result.detail["revision"]


def test_checking_an_empty_database_does_not_migrate_it(
    settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "other.db"
    sqlite3.connect(path).close()
    result = check_database(f"sqlite:///{path}", settings)
    assert result.ok, result.message
    assert "no RelayDesk tables yet" in result.message
    with sqlite3.connect(path) as connection:
        tables = connection.execute("SELECT name FROM sqlite_master").fetchall()
        journal = connection.execute("PRAGMA journal_mode").fetchone()[0]
    assert tables == []
    assert journal == "delete"  # not switched to WAL either


@pytest.mark.parametrize(("url", "fragment"), [
    ("not a url", "not a database URL"),
    ("mysql://app:db-secret-pw@localhost/relaydesk", "PostgreSQL or SQLite"),
    ("sqlite://", "in-memory"),
])
def test_bad_database_urls(settings: Settings, url: str, fragment: str) -> None:
    result = check_database(url, settings)
    assert not result.ok
    assert fragment in result.message
    assert "db-secret-pw" not in repr(result)


def test_postgresql_server_that_does_not_answer(settings: Settings) -> None:
    port = free_port()
    result = check_database(f"postgresql://app:pg-secret-pw@127.0.0.1:{port}/relaydesk",
                            settings)
    assert not result.ok
    assert f"Could not connect to the database at 127.0.0.1:{port}/relaydesk" in result.message
    assert "refused" in result.message.lower()
    assert "Check RELAYDESK_DATABASE_URL" in result.message
    assert "pg-secret-pw" not in repr(result)


@pytest.mark.postgres
def test_postgresql(settings: Settings, postgres_url: str) -> None:
    result = check_database(postgres_url, settings)
    assert result.ok, result.message
    assert result.message.startswith("Connected to PostgreSQL ")
    assert "no RelayDesk tables yet" in result.message
    engine = create_engine(postgres_url)
    try:
        assert inspect(engine).get_table_names() == []  # testing did not migrate it
    finally:
        engine.dispose()
    open_database(replace(settings, database_url=postgres_url))
    assert "schema up to date" in check_database(postgres_url, settings).message


# --- provider ------------------------------------------------------------------------------

def provider_settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings()


def test_sandbox_not_running_is_fine(settings: Settings) -> None:
    result = check_provider(settings)
    assert result.ok
    assert "not running" in result.message


def test_sandbox_gateway_answering(gateway: GatewayServer) -> None:
    result = check_provider(load_settings())
    assert result.ok, result.message
    assert "accepts connections" in result.message
    assert result.detail["place"] in gateway.url


def test_incomplete_provider_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = provider_settings(monkeypatch, RELAYDESK_SMS_PROVIDER="twilio",
                                 RELAYDESK_TWILIO_ACCOUNT_SID="AC1")
    result = check_provider(settings)
    assert not result.ok
    assert "RELAYDESK_TWILIO_AUTH_TOKEN" in result.message
    assert "RELAYDESK_TWILIO_FROM" in result.message


def twilio_at(monkeypatch: pytest.MonkeyPatch, api_url: str) -> Settings:
    return provider_settings(monkeypatch, RELAYDESK_SMS_PROVIDER="twilio",
                             RELAYDESK_TWILIO_ACCOUNT_SID="AC1",
                             RELAYDESK_TWILIO_AUTH_TOKEN="twilio-secret-token-xyz",
                             RELAYDESK_TWILIO_FROM="+14155550100", RELAYDESK_TWILIO_API_URL=api_url)


def test_provider_reachable(monkeypatch: pytest.MonkeyPatch, gateway: GatewayServer) -> None:
    result = check_provider(twilio_at(monkeypatch, gateway.url))  # any listening server
    assert result.ok, result.message
    assert result.message.startswith("Twilio settings are complete")
    assert "No message was sent" in result.message
    assert "twilio-secret-token-xyz" not in repr(result)


def test_provider_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    result = check_provider(twilio_at(monkeypatch, f"http://127.0.0.1:{port}"))
    assert not result.ok
    assert f"Could not connect to Twilio at 127.0.0.1:{port}: connection refused" in \
        result.message
    detail: dict[str, Any] = result.detail
    assert detail["provider"] == "twilio"
