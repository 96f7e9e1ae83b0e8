"""Shared fixtures: every test runs in its own data dir, with no settings leaking in."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from engine.db import Database, close_databases, open_database
from engine.settings import Settings, load_settings, setting_names

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
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    yield data_dir
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
        close_databases()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_settings(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings for the SQLite default and, when a server is given, for PostgreSQL."""
    if request.param == "postgresql":
        monkeypatch.setenv("DATABASE_URL", request.getfixturevalue("postgres_url"))
    return load_settings()


@pytest.fixture
def db(db_settings: Settings) -> Database:
    return open_database(db_settings)
