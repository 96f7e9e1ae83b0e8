"""Workers page: launch, stop and kill real worker processes from the console, see them
on Redis with their counts, events, and the embedded Redis panel."""

from __future__ import annotations

import os
import signal

from pytestqt.modeltest import ModelTester
from pytestqt.qtbot import QtBot

from desktop.app import Console
from desktop.pages.workers_page import WorkersPage
from desktop.workers_view import LocalRow
from engine.operations.supervisor import WorkerSpec
from tests.desktop.conftest import open_page


def workers_page(console: Console) -> WorkersPage:
    page = open_page(console, "workers")
    assert isinstance(page, WorkersPage)
    return page


def local_row(page: WorkersPage, worker_id: str) -> LocalRow | None:
    return next((r for r in page.local_model.rows if r.state.id == worker_id), None)


def state_of(page: WorkersPage, worker_id: str) -> str | None:
    page.refresh()
    row = local_row(page, worker_id)
    return row.state.state if row else None


def test_launch_resize_stop_and_kill_workers(pipeline_console: Console, qtbot: QtBot,
                                             qtmodeltester: ModelTester) -> None:
    page = workers_page(pipeline_console)
    qtbot.waitUntil(lambda: state_of(page, "local-1") == "online", timeout=30_000)
    first = local_row(page, "local-1")
    assert first is not None
    assert first.state.pid
    assert first.info is not None
    assert first.info.processed is not None  # reported by the worker itself
    assert page.all_model.row_for_key(first.state.hostname) is not None
    assert page.redis_labels["running"].text() == "running"
    assert page.redis_labels["keys"].text() != "–"
    assert not page.redis_start.isEnabled()

    page.add_worker(WorkerSpec(queues=("messages",), concurrency=1, pool="threads"))
    qtbot.waitUntil(lambda: state_of(page, "local-2") == "online", timeout=60_000)
    second = local_row(page, "local-2")
    assert second is not None
    assert page.local_model.index(1, 3).data() == "messages"
    assert page.local_model.index(1, 4).data() == "threads"

    page.local_table.selectRow(0)
    assert page.local_buttons["grow"].isEnabled()
    page.local_action("grow")
    qtbot.waitUntil(lambda: (page.refresh(), local_row(page, "local-1"))[1] is not None
                    and local_row(page, "local-1").info is not None
                    and local_row(page, "local-1").info.pool_size == 3, timeout=30_000)

    page.local_table.selectRow(1)
    page.local_action("stop")
    qtbot.waitUntil(lambda: state_of(page, "local-2") == "stopped", timeout=60_000)
    pipeline_console.ctx.services.supervisor.check()
    assert state_of(page, "local-2") == "stopped"  # an operator's stop is not undone

    page.local_table.selectRow(0)
    page.local_action("kill")
    qtbot.waitUntil(lambda: state_of(page, "local-1") == "stopped", timeout=30_000)
    qtbot.waitUntil(lambda: any("killed" in page.events.item(i).text()
                                for i in range(page.events.count())), timeout=10_000)
    events = [page.events.item(i).text() for i in range(page.events.count())]
    assert any("local-2" in e and "stopped" in e for e in events)
    qtmodeltester.check(page.local_model)
    qtmodeltester.check(page.all_model)


def test_a_worker_that_dies_is_restarted_and_the_event_shown(pipeline_console: Console,
                                                             qtbot: QtBot) -> None:
    from desktop.local_control import watch_workers

    watch_workers(pipeline_console)
    page = workers_page(pipeline_console)
    qtbot.waitUntil(lambda: state_of(page, "local-1") == "online", timeout=30_000)
    row = local_row(page, "local-1")
    assert row is not None
    assert row.state.pid is not None
    os.killpg(row.state.pid, signal.SIGKILL)  # a crash, not an operator's action
    qtbot.waitUntil(lambda: any("restarted" in page.events.item(i).text()
                                for i in range(page.events.count())), timeout=30_000)
    qtbot.waitUntil(lambda: state_of(page, "local-1") == "online", timeout=60_000)
    restarted = local_row(page, "local-1")
    assert restarted is not None
    assert restarted.state.pid != row.state.pid
    assert restarted.state.restarts == 1


def test_closing_asks_and_stops_the_workers_warm(pipeline_console: Console,
                                                 qtbot: QtBot) -> None:
    from desktop.local_control import install_close_policy

    install_close_policy(pipeline_console)
    window = pipeline_console.window
    supervisor = pipeline_console.ctx.services.supervisor
    assert supervisor.running
    window.close()
    qtbot.waitUntil(lambda: window.close_box is not None)  # looked up off the UI thread
    assert window.isVisible()  # not before the operator answered
    box = window.close_box
    assert box is not None
    assert box.text() == "1 local worker(s) are running."
    next(b for b in box.buttons() if b.text() == "Stop workers").click()
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=60_000)
    assert not supervisor.running
