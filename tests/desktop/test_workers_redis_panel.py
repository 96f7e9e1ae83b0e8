"""The Workers page's Redis panel names the server in use and warns about known holes."""

from __future__ import annotations

import pytest
from pytestqt.qtbot import QtBot

from desktop.app import Console
from desktop.pages.workers_page import WorkersPage
from engine.infra.embedded_redis import EmbeddedRedis, find_redis_server
from tests.desktop.conftest import open_page
from tests.support import binary_version


def workers_page(console: Console) -> WorkersPage:
    page = open_page(console, "workers")
    assert isinstance(page, WorkersPage)
    return page


def test_panel_names_the_embedded_valkey(embedded_redis: EmbeddedRedis, console: Console,
                                         qtbot: QtBot) -> None:
    page = workers_page(console)
    expected = f"valkey {binary_version(find_redis_server())}"
    qtbot.waitUntil(lambda: page.redis_labels["version"].text() == expected, timeout=30_000)
    assert page.redis_warning.isHidden()


def test_panel_warns_about_a_vulnerable_server(old_redis_url: str, qtbot: QtBot,
                                               request: pytest.FixtureRequest) -> None:
    console = request.getfixturevalue("console")  # built after RELAYDESK_REDIS_URL is set
    page = workers_page(console)
    qtbot.waitUntil(lambda: page.redis_labels["version"].text().startswith("redis "),
                    timeout=30_000)
    assert not page.redis_warning.isHidden()
    assert "CVE-2025-49844" in page.redis_warning.text()
    assert "patched" in page.redis_warning.text()
