"""Every end-to-end test runs on both stores: on SQLite and, when RELAYDESK_TEST_POSTGRES_URL
is set, again on a fresh PostgreSQL database (skipped with the reason otherwise)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config.settings import Settings

# Modules whose tests never open the configured store: a PostgreSQL variant would repeat the
# SQLite one exactly, so it is skipped with the reason.
STORE_FREE = {
    "test_selftest.py": "relaydesk selftest makes a data dir and a SQLite database of its own "
                        "whatever the store is set to (its first test proves it)",
}


@pytest.fixture(autouse=True)
def e2e_store(request: pytest.FixtureRequest, isolated_env: Path,
              db_settings: Settings) -> Settings:
    """The store of the test, chosen before anything loads settings or starts a process.

    ``db_settings`` (tests/conftest.py) sets RELAYDESK_DATABASE_URL in the environment for
    the PostgreSQL variant, so the CLI, the workers, the supervisor and the console the test
    starts all inherit it. A test that asks for ``db`` or ``db_settings`` itself gets the
    same store: pytest gives one parameter per fixture per test.
    """
    reason = STORE_FREE.get(request.path.name)
    if reason and db_settings.database_url:
        pytest.skip(reason)
    return db_settings
