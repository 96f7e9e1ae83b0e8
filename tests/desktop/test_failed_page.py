"""Failed jobs page over 100,000 dead letters seeded straight into the store (once per
module; each test works on its own copy): filter, sort, detail, retry and forget the
selection or everything that matches (with the count asked first), export to CSV."""

from __future__ import annotations

import csv
import io
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QMessageBox
from pytestqt.modeltest import ModelTester
from pytestqt.qtbot import QtBot
from sqlalchemy.orm import sessionmaker

from desktop.app import Console, build_console
from desktop.paged_model import LOADING
from desktop.pages.failed_page import FailedPage
from engine.config.settings import load_settings
from engine.domain.sending import Outcome, SendResult
from engine.infra import scheduler
from engine.store.db import Database, create_db_engine, upgrade
from engine.store.dead_letters import retry_ids
from engine.store.delivery_state import claim, mark_dead
from engine.store.models import MessageStatus
from tests.desktop.conftest import close, idle, open_page
from tests.failed_seed import rows, seed_failed

ROWS = 100_000
WAIT_MS = 60_000


@pytest.fixture(scope="module")
def seeded_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("failed-store") / "relaydesk.db"
    engine = create_db_engine(f"sqlite:///{path}")
    upgrade(engine)
    seed_failed(Database(engine, sessionmaker(engine, expire_on_commit=False)), ROWS)
    engine.dispose()  # the last connection closes: the WAL is folded into the file
    return path


@pytest.fixture
def seeded_console(seeded_file: Path, isolated_env: Path, qapp: QApplication,
                   qtbot: QtBot) -> Iterator[Console]:
    isolated_env.mkdir(parents=True, exist_ok=True)
    shutil.copy(seeded_file, isolated_env / "relaydesk.db")
    built = build_console(load_settings(), theme="light")
    built.window.show()
    qtbot.waitExposed(built.window)
    yield built
    close(built, qapp)


def failed_page(console: Console, qtbot: QtBot) -> FailedPage:
    page = open_page(console, "failed")
    assert isinstance(page, FailedPage)
    qtbot.waitUntil(lambda: page.model.rowCount() > 0 and idle(console), timeout=WAIT_MS)
    return page


def cell(page: FailedPage, row: int, column: int) -> Any:
    return page.model.index(row, column).data()


def expected(**where: Any) -> int:
    return sum(1 for r in rows(ROWS) if all(r[k] == v for k, v in where.items()))


def choose(combo: Any, data: Any) -> None:
    combo.setCurrentIndex(combo.findData(data))


def confirm(page: FailedPage, qtbot: QtBot, text: str, button: str) -> None:
    """Check the question names the count, then answer it."""
    qtbot.waitUntil(lambda: hasattr(page, "confirm_box") and page.confirm_box.isVisible())
    box = page.confirm_box
    assert text in box.text()
    [chosen] = [b for b in box.buttons() if b.text().replace("&", "") == button]
    with qtbot.waitSignal(page.model.loaded, timeout=WAIT_MS):
        chosen.click()  # the action runs, then the table reloads


def test_opens_filters_sorts_and_shows_details(seeded_console: Console, qtbot: QtBot,
                                               qtmodeltester: ModelTester) -> None:
    page = failed_page(seeded_console, qtbot)
    assert page.model.rowCount() == ROWS
    assert page.count_label.text() == "100,000 failed jobs"
    assert page.body.currentWidget() is page.splitter
    assert cell(page, 0, 7).endswith(f"(ref {ROWS - 1})")  # newest first
    assert "*" in cell(page, 0, 2)  # the recipient is masked
    qtbot.waitUntil(lambda: page.error_type.count() == 5)  # "All" + four error types

    with qtbot.waitSignal(page.model.loaded, timeout=WAIT_MS):
        page.search.setText("quota")
    assert page.model.rowCount() == ROWS // 1000
    assert page.count_label.text() == "100 failed jobs match"
    with qtbot.waitSignal(page.model.loaded, timeout=WAIT_MS):
        choose(page.error_type, "timeout")
    assert page.model.rowCount() == sum(1 for r in rows(ROWS) if r["i"] % 1000 == 7
                                        and r["error_type"] == "timeout")
    with qtbot.waitSignal(page.model.loaded, timeout=WAIT_MS):
        page.search.clear()
    assert page.model.rowCount() == expected(error_type="timeout")

    with qtbot.waitSignal(page.model.loaded, timeout=WAIT_MS):
        page.table.sortByColumn(5, Qt.SortOrder.AscendingOrder)  # attempts
    assert [cell(page, r, 5) for r in range(3)] == ["1", "1", "1"]
    with qtbot.waitSignal(page.model.loaded, timeout=WAIT_MS):
        page.table.sortByColumn(5, Qt.SortOrder.DescendingOrder)
    assert cell(page, 0, 5) == "3"
    with qtbot.waitSignal(page.model.loaded, timeout=WAIT_MS):
        choose(page.queue, "high_priority")
    assert page.model.rowCount() == expected(error_type="timeout", queue="high_priority")
    assert page.table.horizontalHeader().sortIndicatorSection() == 5  # the sort stays

    page.table.selectRow(0)
    qtbot.waitUntil(lambda: page.detail is not None, timeout=WAIT_MS)
    shown = page.details.toPlainText()
    assert "Attempts" in shown
    assert "Provider response" in shown
    assert "Dear member" in shown  # the rendered message
    assert "+2547***" in shown
    assert not re.search(r"\+254\d{9}", shown)  # no whole phone number anywhere
    qtmodeltester.check(page.model)


def test_retry_matching_asks_with_the_count_and_keeps_history(
        seeded_console: Console, qtbot: QtBot, redis_client: Any) -> None:
    page = failed_page(seeded_console, qtbot)
    with qtbot.waitSignal(page.model.loaded, timeout=WAIT_MS):
        choose(page.error_type, "blocked")
    with qtbot.waitSignal(page.model.loaded, timeout=WAIT_MS):
        choose(page.queue, "messages")
    matching = expected(error_type="blocked", queue="messages")
    assert page.model.rowCount() == matching
    page.retry_all_button.click()
    confirm(page, qtbot, f"Retry all {matching:,} failed job(s)", "Retry")
    qtbot.waitUntil(lambda: page.model.rowCount() == 0, timeout=WAIT_MS)
    assert page.body.currentWidget() is page.no_match
    assert scheduler.pending(redis_client) == matching  # queued again, due now
    # Retried records stay, with what became of them.
    with qtbot.waitSignal(page.model.loaded, timeout=WAIT_MS):
        page.include_retried.setChecked(True)
    assert page.model.rowCount() == matching
    assert cell(page, 0, 6) == "retried, sending"
    page.retry_all_button.click()  # a record is retried once
    qtbot.waitUntil(lambda: "not retried already" in page.count_label.text())
    assert scheduler.pending(redis_client) == matching


def test_forget_selected_and_matching(seeded_console: Console, qtbot: QtBot) -> None:
    page = failed_page(seeded_console, qtbot)
    page.table.selectRow(0)
    page.table.selectionModel().select(
        page.model.index(2, 0), page.table.selectionModel().SelectionFlag.Select
        | page.table.selectionModel().SelectionFlag.Rows)
    newest = {cell(page, 0, 7), cell(page, 2, 7)}
    QTest.keyClick(page.table, Qt.Key.Key_Delete)  # the same as Forget selected
    confirm(page, qtbot, "Forget 2 failed job(s)?", "Forget")
    qtbot.waitUntil(lambda: page.model.rowCount() == ROWS - 2, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: cell(page, 0, 7) not in (None, LOADING))
    assert cell(page, 0, 7) not in newest

    with qtbot.waitSignal(page.model.loaded, timeout=WAIT_MS):
        page.search.setText("quota")
    page.forget_all_button.click()
    confirm(page, qtbot, "Forget all 100 failed job(s) that match", "Forget")
    qtbot.waitUntil(lambda: page.model.rowCount() == 0, timeout=WAIT_MS)
    with qtbot.waitSignal(page.model.loaded, timeout=WAIT_MS):
        page.search.clear()
    assert page.model.rowCount() == ROWS - 2 - 100


def test_cancelled_question_does_nothing(seeded_console: Console, qtbot: QtBot) -> None:
    page = failed_page(seeded_console, qtbot)
    page.forget_all_button.click()
    qtbot.waitUntil(lambda: hasattr(page, "confirm_box") and page.confirm_box.isVisible())
    assert "Forget all 100,000 failed job(s)" in page.confirm_box.text()
    page.confirm_box.button(QMessageBox.StandardButton.Cancel).click()
    page.model.refresh()
    qtbot.waitUntil(lambda: idle(seeded_console), timeout=WAIT_MS)
    assert page.model.rowCount() == ROWS


def test_export_matching_to_csv(seeded_console: Console, qtbot: QtBot,
                                tmp_path: Path) -> None:
    page = failed_page(seeded_console, qtbot)
    with qtbot.waitSignal(page.model.loaded, timeout=WAIT_MS):
        choose(page.campaign, page.campaign.itemData(1))  # the newest campaign
    out = tmp_path / "failed.csv"
    page.export_to(out)
    qtbot.waitUntil(lambda: page.last_export is not None, timeout=WAIT_MS)
    lines = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert len(lines) == page.model.rowCount() == expected(campaign=2)
    assert {r["campaign"] for r in lines} == {"Building fund drive"}
    assert all("*" in r["recipient"] for r in lines)
    assert f"{len(lines):,} failed job(s) exported" in page.count_label.text()


def test_nothing_failed_says_so(console: Console, qtbot: QtBot,
                                qtmodeltester: ModelTester) -> None:
    page = open_page(console, "failed")
    assert isinstance(page, FailedPage)
    qtbot.waitUntil(lambda: idle(console) and page.count_label.text() != "")
    assert page.body.currentWidget() is page.empty
    assert not page.retry_all_button.isEnabled()
    assert not page.export_button.isEnabled()
    qtmodeltester.check(page.model)


def test_new_failures_appear_live(seeded_console: Console, qtbot: QtBot) -> None:
    page = failed_page(seeded_console, qtbot)
    page.table.selectRow(3)
    db = seeded_console.ctx.services.db()
    with db.session() as session:  # a worker gives up on a message meanwhile
        [job] = retry_ids(session, [1])
        claimed = claim(session, job.message_id, [MessageStatus.QUEUED], "messages")
        assert claimed is not None
        mark_dead(session, claimed, SendResult(Outcome.PERMANENT, error_type="opted_out",
                                               error="the recipient opted out"), "send")
    seeded_console.ctx.bus.campaigns_changed.emit()
    # The newest failure comes first; one record left the view (retried), one came in.
    qtbot.waitUntil(lambda: cell(page, 0, 4) == "opted_out", timeout=WAIT_MS)
    assert page.model.rowCount() == ROWS
    qtbot.waitUntil(lambda: page.error_type.findData("opted_out") >= 0, timeout=WAIT_MS)
    assert page.selected_ranges() == [(3, 3)]  # refreshed in place: the selection stays
    with qtbot.waitSignal(page.model.loaded, timeout=WAIT_MS):
        choose(page.error_type, "opted_out")
    assert page.model.rowCount() == 1
    assert cell(page, 0, 6) == "retry of #1"
