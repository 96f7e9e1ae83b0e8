"""A console killed without closing (SIGKILL, as when the X server goes away) leaves its
worker, gateway and Redis running. The next console takes them back under "This machine"
and its close policy ("Stop workers") stops them all."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from desktop.app import build_console
from desktop.local_control import install_close_policy, start_local_pipeline
from desktop.pages.workers_page import WorkersPage
from engine.config.settings import load_settings
from engine.infra.embedded_redis import EmbeddedRedis
from engine.infra.local_gateway import LocalGateway
from engine.infra.worker_registry import live_workers
from tests.desktop.conftest import close, open_page
from tests.support import RELAYDESK, wait_for

STARTUP_S = 120


def running(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def heartbeats(data_dir: Path) -> list[dict[str, object]]:
    client = redis.Redis.from_url(EmbeddedRedis(data_dir / "redis").url())
    try:
        return live_workers(client)
    finally:
        client.close()


@pytest.fixture
def killed_console(isolated_env: Path, fast_pipeline: None) -> Iterator[dict[str, int]]:
    """A real console (offscreen) that started Redis, the gateway and a worker, then was
    killed with SIGKILL. Yields the pids it left running."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "RELAYDESK_WORKER_CONCURRENCY": "1"}
    console = subprocess.Popen([RELAYDESK, "--data-dir", str(isolated_env), "gui"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server, gateway = EmbeddedRedis(isolated_env / "redis"), LocalGateway(isolated_env / "gateway")
    left: dict[str, int] = {}
    try:
        wait_for(lambda: server.ping() or console.poll() is not None, timeout=STARTUP_S,
                 message="the console's embedded Redis")
        beats = wait_for(lambda: heartbeats(isolated_env) or console.poll() is not None,
                         timeout=STARTUP_S, message="the console's worker")
        assert console.poll() is None, "the console exited; see its log in the data dir"
        wait_for(gateway.ping, timeout=STARTUP_S, message="the console's gateway")
        left = {"worker": int(str(beats[0]["pid"])), "redis": server.pid() or 0,
                "gateway": int(json.loads(gateway.state_file.read_text())["pid"])}
    finally:
        console.kill()
        console.wait()
    assert all(running(pid) for pid in left.values()), "they outlive the console"
    yield left
    for role, pid in left.items():  # after a failed test: leave nothing running
        if running(pid):
            with contextlib.suppress(ProcessLookupError):
                (os.killpg if role == "worker" else os.kill)(pid, signal.SIGKILL)


def test_a_new_console_takes_back_and_stops_what_a_killed_one_left(
        killed_console: dict[str, int], qapp: QApplication, qtbot: QtBot,
        isolated_env: Path) -> None:
    console = build_console(load_settings(), theme="light")
    try:
        install_close_policy(console)
        console.window.show()
        start_local_pipeline(console)  # as the app starts
        qtbot.waitUntil(lambda: console.window.statusBar().currentMessage() ==
                        "Took back 1 local worker(s) left running by an earlier console",
                        timeout=60_000)
        page = open_page(console, "workers")
        assert isinstance(page, WorkersPage)

        def adopted_row() -> bool:
            page.refresh()
            rows = page.local_model.rows
            return len(rows) == 1 and rows[0].state.state == "online" and \
                rows[0].state.cpu_percent is not None

        qtbot.waitUntil(adopted_row, timeout=60_000)
        row = page.local_model.rows[0]
        assert row.state.pid == killed_console["worker"]
        assert row.state.adopted
        assert page.local_model.index(0, 0).data() == "local-1 (adopted)"
        assert row.state.rss_bytes
        assert page.local_model.index(0, 9).data() != "–"  # Memory
        assert page.local_note.text().startswith("1 of 1 local worker(s) running")
        assert [int(str(b["pid"])) for b in heartbeats(isolated_env)] == \
            [killed_console["worker"]]  # taken back, not started twice

        # Full control over it: its pool grows on request, like a worker started here.
        assert row.info is not None
        size = row.info.pool_size or 0
        page.local_table.selectRow(0)
        assert page.local_buttons["grow"].isEnabled()
        page.local_action("grow")

        def grown() -> bool:
            page.refresh()
            info = page.local_model.rows[0].info if page.local_model.rows else None
            return info is not None and info.pool_size == size + 1

        qtbot.waitUntil(grown, timeout=30_000)
        pool = [p.pid for p in psutil.Process(killed_console["worker"]).children()]
        assert len(pool) == size + 1

        window = console.window
        qtbot.waitUntil(lambda: not console.ctx.services.starting)
        window.close()
        qtbot.waitUntil(lambda: window.close_box is not None)  # looked up off the UI thread
        box = window.close_box
        assert box is not None
        assert box.text() == "1 local worker(s) are running."
        next(b for b in box.buttons() if b.text() == "Stop workers").click()
        qtbot.waitUntil(lambda: not window.isVisible(), timeout=90_000)
        # Worker, its pool, the gateway and Redis: nothing of the old console is left.
        assert not [pid for pid in [*killed_console.values(), *pool] if running(pid)]
        assert not EmbeddedRedis(isolated_env / "redis").ping()
    finally:
        close(console, qapp)
