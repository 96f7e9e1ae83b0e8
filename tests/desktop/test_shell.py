"""The window around the pages: status bar, Redis banner, error reporting, remembered
geometry, one console per data dir, and the screenshot tour."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QMessageBox
from pytestqt.qtbot import QtBot
from sqlalchemy import select

from desktop.app import Console, build_console
from desktop.single_instance import InstanceServer, ask_running_instance_to_raise
from engine.config.settings import load_settings
from engine.infra.embedded_redis import EmbeddedRedis
from engine.operations.campaigns import CampaignError
from engine.store.campaign_state import campaign_summary
from engine.store.db import open_database
from engine.store.dead_letters import count_failed
from engine.store.inbox import list_inbox
from engine.store.models import Campaign, OptOut
from tests.support import RELAYDESK


def error_dialogs() -> list[QMessageBox]:
    return [w for w in QApplication.topLevelWidgets()
            if isinstance(w, QMessageBox) and w.objectName() == "error-dialog" and w.isVisible()]


def test_redis_down_is_said_plainly_and_can_be_started(console: Console, qtbot: QtBot,
                                                       isolated_env: Path) -> None:
    window = console.window
    qtbot.waitUntil(lambda: window.status is not None)
    assert window.redis_label.text().endswith("Embedded Redis is not running")
    assert window.banner.isVisible()
    assert window.banner.start_button.isVisible()
    assert window.workers_label.text() == "Workers: –"
    assert window.dead_label.text() == "Dead letters: 0"  # the database still answers
    window.banner.start_button.click()
    qtbot.waitUntil(lambda: window.status is not None and window.status.redis_ok,
                    timeout=30_000)
    assert "Redis connected (embedded)" in window.redis_label.text()
    assert window.workers_label.text() == "Workers: 0 (0 processes)"
    assert not window.banner.isVisible()
    server = EmbeddedRedis(isolated_env / "redis")
    assert server.ping()
    console.ctx.services.stop_local_services()  # the console stops what it started
    assert not server.ping()


def test_unexpected_error_is_shown_and_logged(console: Console, qtbot: QtBot,
                                             isolated_env: Path) -> None:
    from desktop.errors import setup_logging

    log_file = setup_logging(isolated_env)
    console.ctx.background.run(lambda: 1 / 0)
    qtbot.waitUntil(lambda: bool(error_dialogs()))
    dialog = error_dialogs()[0]
    assert "ZeroDivisionError: division by zero" in dialog.text()
    assert "Traceback" in dialog.detailedText()
    dialog.close()
    assert "ZeroDivisionError" in log_file.read_text()


def test_operator_error_is_one_plain_message(console: Console, qtbot: QtBot) -> None:
    def fail() -> None:
        raise CampaignError("Redis is unreachable; nothing was created.")

    console.ctx.background.run(fail)
    qtbot.waitUntil(lambda: bool(error_dialogs()))
    assert error_dialogs()[0].text() == "Redis is unreachable; nothing was created."


def test_window_geometry_and_page_are_remembered(console: Console, qtbot: QtBot) -> None:
    console.window.resize(790, 700)  # the offscreen screen is 800x800: fit what fits
    console.window.show_page("contacts")
    console.window.save_state()
    again = build_console(load_settings(), theme="dark")
    try:
        assert (again.window.size().width(), again.window.size().height()) == (790, 700)
        assert again.window.current_page() is again.window.page("contacts")
    finally:
        again.close(wait=True)


def test_pages_have_their_shortcuts_in_sidebar_order(console: Console, qtbot: QtBot) -> None:
    """Ctrl+1 to Ctrl+9, then Ctrl+0 for the tenth: Inbox follows Campaigns."""
    window = console.window
    order = [page.page_id for page in window.pages]
    assert order == ["dashboard", "compose", "contacts", "optouts", "campaigns", "inbox",
                     "workers", "failed", "inspector", "settings"]
    for row, key in [(5, Qt.Key.Key_6), (9, Qt.Key.Key_0), (0, Qt.Key.Key_1)]:
        qtbot.keyClick(window, key, Qt.KeyboardModifier.ControlModifier)
        qtbot.waitUntil(lambda row=row: window.current_page() is window.pages[row])
    assert window.sidebar.item(5).toolTip() == "Inbox (Ctrl+6)"
    assert window.sidebar.item(9).toolTip() == "Settings (Ctrl+0)"


def test_second_launch_raises_the_first(qapp: QApplication, qtbot: QtBot,
                                        isolated_env: Path) -> None:
    assert not ask_running_instance_to_raise(isolated_env)
    server = InstanceServer(isolated_env)
    try:
        with qtbot.waitSignal(server.raise_requested):
            assert ask_running_instance_to_raise(isolated_env)
    finally:
        server.close()


def test_instance_socket_lives_in_a_private_per_user_dir(
        qapp: QApplication, qtbot: QtBot, tmp_path: Path, isolated_env: Path,
        monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    # A short path, like /run/user/UID: a socket's path is limited to 107 bytes, and
    # tmp_path under pytest-xdist is long enough to pass it.
    runtime = Path(tempfile.mkdtemp(prefix="rd-run-"))
    request.addfinalizer(lambda: shutil.rmtree(runtime, ignore_errors=True))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    server = InstanceServer(isolated_env)
    try:
        socket = Path(server.server.fullServerName())
        assert socket.is_socket()
        # Not a predictable name in the shared temp dir: a directory only this user can
        # enter, below the user's runtime dir.
        directory = socket.parent.lstat()
        assert socket.parent.parent == runtime
        assert stat.S_IMODE(directory.st_mode) == 0o700
        assert directory.st_uid == os.getuid()
        other = InstanceServer(tmp_path / "other-data")  # one console per data dir
        try:
            assert other.server.fullServerName() != server.server.fullServerName()
        finally:
            other.close()
        with qtbot.waitSignal(server.raise_requested):
            assert ask_running_instance_to_raise(isolated_env)
    finally:
        server.close()


def test_screenshot_tour_saves_every_page_and_stops_what_it_started(
        tmp_path: Path, isolated_env: Path) -> None:
    shots = tmp_path / "shots"
    env = {k: v for k, v in os.environ.items() if k != "RELAYDESK_DATA_DIR"}
    env.update(QT_QPA_PLATFORM="offscreen", RELAYDESK_WORKER_CONCURRENCY="1",
               RELAYDESK_PACING_INDIVIDUAL_S="0.2")
    # --data-dir, not the environment: the workers must find it too.
    result = subprocess.run([RELAYDESK, "--data-dir", str(isolated_env), "gui",
                             "--screenshot-dir", str(shots), "--demo"],
                            capture_output=True, text=True, env=env, timeout=240, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    names = sorted(p.name for p in shots.glob("*.png"))
    assert names == ["campaigns.png", "compose-send-later.png", "compose.png", "contacts.png",
                     "dashboard.png", "failed.png", "inbox.png", "inspector.png", "optouts.png",
                     "settings-callbacks.png", "settings.png", "workers.png"]
    assert all(p.stat().st_size > 10_000 for p in shots.glob("*.png"))
    assert not EmbeddedRedis(isolated_env / "redis").ping()  # the tour stopped its Redis
    with open_database(load_settings()).session() as session:
        # The demo's dead letters come from a campaign of their own, sent first.
        compose_id = session.scalar(select(Campaign.id)
                                    .where(Campaign.name == "Demo: pledge reminder"))
        assert compose_id is not None
        summary = campaign_summary(session, compose_id)
        dead_letters = count_failed(session)
        # compose-send-later.png: a second campaign scheduled through Send later…
        scheduled = session.scalar(select(Campaign.status).where(
            Campaign.name == "Demo: still owing, east and west"))
        # campaigns.png and inbox.png: an earlier campaign's reports, and the replies.
        history_id = session.scalar(select(Campaign.id)
                                    .where(Campaign.name == "Demo: March pledge reminder"))
        assert history_id is not None
        history = campaign_summary(session, history_id)
        replies = list_inbox(session)
        stop = session.get(OptOut, "+254700000112")
    assert scheduled == "scheduled"
    assert history is not None
    assert (history["undelivered"], history["expired"]) == (3, 3)
    assert history["delivered"] == history["sent"] - 6
    assert len(replies) >= 6
    assert [r.keyword for r in replies if r.text == "STOP"] == ["optout"]
    assert stop is not None
    assert stop.source == "reply"  # the applier put Moses on the list
    assert summary is not None
    assert dead_letters >= 4  # failed.png shows data
    assert summary["sent"] > 0  # the worker it started sent from the same data dir
