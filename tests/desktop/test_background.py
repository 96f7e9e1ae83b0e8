"""The runner every engine call goes through: results and errors come back on the UI
thread, calls for a closed window are dropped, and delivering them leaks no reference."""

from __future__ import annotations

import gc
import sys
import threading

from PySide6.QtWidgets import QApplication, QLabel
from pytestqt.qtbot import QtBot

from desktop.background import Background, Latest


def test_results_and_errors_arrive_on_the_ui_thread(qapp: QApplication, qtbot: QtBot) -> None:
    background = Background()
    seen: list[tuple[str, object, bool]] = []
    on_ui = threading.current_thread()
    background.run(lambda: threading.current_thread() is on_ui,
                   on_done=lambda v: seen.append(("done", v, threading.current_thread() is on_ui)))
    background.run(lambda: 1 / 0, on_done=lambda v: seen.append(("done", v, False)),
                   on_error=lambda e: seen.append(("error", type(e).__name__,
                                                   threading.current_thread() is on_ui)))
    qtbot.waitUntil(lambda: len(seen) == 2)
    assert sorted(seen) == [("done", False, True), ("error", "ZeroDivisionError", True)]
    qtbot.waitUntil(lambda: background.in_flight == 0)
    background.shutdown(wait=True)


def test_unhandled_errors_go_to_the_error_signal(qapp: QApplication, qtbot: QtBot) -> None:
    background = Background()
    with qtbot.waitSignal(background.error) as caught:
        background.run(lambda: int("x"))
    assert isinstance(caught.args[0], ValueError)
    background.shutdown(wait=True)


def test_a_deleted_widget_gets_no_callback_and_a_closed_runner_takes_no_work(
        qapp: QApplication, qtbot: QtBot) -> None:
    background = Background()
    label = QLabel()
    gate = threading.Event()
    background.run(lambda: gate.wait(10) and "late", on_done=label.setText)
    label.deleteLater()
    qtbot.waitUntil(lambda: not _alive(label))
    gate.set()
    qtbot.waitUntil(lambda: background.in_flight == 0)  # delivered to nobody, no crash
    background.shutdown(wait=True)
    assert background.run(lambda: "never").cancelled()


def test_delivering_many_results_leaks_no_reference(qapp: QApplication, qtbot: QtBot) -> None:
    # PySide6 6.12.0 dropped a reference to True on every emit of a Python signal, and a
    # console polling for an hour then aborted. Other objects come and go meanwhile, so
    # allow a little drift, far below one reference per delivery.
    deliveries = 1000
    background = Background()
    delivered: list[object] = []
    gc.collect()  # garbage left by earlier tests would give back None references meanwhile
    before = sys.getrefcount(True), sys.getrefcount(None)
    for _ in range(deliveries):
        background.run(lambda: None, on_done=delivered.append)
    qtbot.waitUntil(lambda: len(delivered) == deliveries)
    qtbot.waitUntil(lambda: background.in_flight == 0)
    delivered.clear()
    lost_true, lost_none = before[0] - sys.getrefcount(True), before[1] - sys.getrefcount(None)
    assert lost_true < deliveries / 10
    assert lost_none < deliveries / 10
    background.shutdown(wait=True)


def _alive(widget: QLabel) -> bool:
    import shiboken6

    return shiboken6.isValid(widget)


def test_only_the_newest_question_is_answered_whatever_order_answers_arrive_in(
        qapp: QApplication, qtbot: QtBot) -> None:
    background = Background()
    latest = Latest(background)
    delivered: list[str] = []
    first, second = threading.Event(), threading.Event()
    latest.start()
    latest.submit(lambda: first.wait(10) and "old", on_done=delivered.append)
    assert latest.pending
    latest.start()  # the question changed while the first answer is on its way
    latest.submit(lambda: second.wait(10) and "new", on_done=delivered.append)
    second.set()  # the newer answer comes first...
    qtbot.waitUntil(lambda: delivered == ["new"])
    assert not latest.pending
    first.set()  # ...and the older one after it: dropped
    qtbot.waitUntil(lambda: background.in_flight == 0)
    assert delivered == ["new"]

    third, fourth = threading.Event(), threading.Event()
    latest.start()
    latest.submit(lambda: third.wait(10) and "older", on_done=delivered.append)
    latest.start()
    latest.submit(lambda: fourth.wait(10) and "newest", on_done=delivered.append)
    third.set()  # in order this time: the stale answer is still dropped
    qtbot.waitUntil(lambda: background.in_flight == 1)
    assert latest.pending
    fourth.set()
    qtbot.waitUntil(lambda: background.in_flight == 0)
    assert delivered == ["new", "newest"]
    background.shutdown(wait=True)


def test_calls_without_a_new_question_all_answer_and_stale_errors_are_dropped(
        qapp: QApplication, qtbot: QtBot) -> None:
    background = Background()
    latest = Latest(background)
    delivered: list[object] = []
    errors: list[BaseException] = []
    background.error.connect(errors.append)
    for tick in range(3):  # a refresh timer asking the same question again
        latest.submit(lambda t=tick: t, on_done=delivered.append)
    qtbot.waitUntil(lambda: len(delivered) == 3)
    assert sorted(delivered) == [0, 1, 2]
    assert not latest.pending

    gate = threading.Event()
    latest.submit(lambda: gate.wait(10) and 1 / 0, on_done=delivered.append)
    latest.start()
    gate.set()
    qtbot.waitUntil(lambda: background.in_flight == 0)
    assert errors == []  # the failed call asked an old question: nobody is told

    with qtbot.waitSignal(background.error) as caught:  # a current call's error is told
        latest.submit(lambda: int("x"))
    assert isinstance(caught.args[0], ValueError)
    seen: list[BaseException] = []
    latest.submit(lambda: 1 / 0, on_done=delivered.append, on_error=seen.append)
    qtbot.waitUntil(lambda: bool(seen))
    assert isinstance(seen[0], ZeroDivisionError)
    assert len(delivered) == 3
    background.shutdown(wait=True)


def test_a_latest_answer_for_a_deleted_widget_is_dropped(qapp: QApplication,
                                                         qtbot: QtBot) -> None:
    background = Background()
    latest = Latest(background)
    label = QLabel()
    gate = threading.Event()
    latest.submit(lambda: gate.wait(10) and "late", on_done=label.setText)
    label.deleteLater()
    qtbot.waitUntil(lambda: not _alive(label))
    gate.set()
    qtbot.waitUntil(lambda: background.in_flight == 0)  # delivered to nobody, no crash
    background.shutdown(wait=True)
