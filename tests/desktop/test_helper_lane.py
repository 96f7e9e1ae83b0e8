"""A helper process of its own for Compose's totals (desktop.helper_lane and
desktop.background.LatestInProcess): answers come from that process, only the newest
question is answered, a superseded call stops early and queued stale ones never run, a
crash is reported and the next call gets a new process, and a long call in the console's
other helper process never holds these up."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from desktop.background import Background, HelperCrashed, LatestInProcess
from tests.desktop import lane_calls


@pytest.fixture
def background(qapp: QApplication) -> Iterator[Background]:
    """A runner stopped after the test whatever happened (a call left in a helper process
    would otherwise keep the test run from exiting)."""
    runner = Background()
    yield runner
    runner.shutdown(wait=True)


def test_the_newest_answer_comes_from_the_lane_and_a_superseded_call_stops(
        background: Background, qtbot: QtBot) -> None:
    latest = LatestInProcess(background)
    answers: list[object] = []
    latest.start()
    latest.submit(lane_calls.until_stale, on_done=answers.append, on_error=answers.append)
    qtbot.waitUntil(lambda: latest.lane.begun, timeout=30_000)  # under way there
    latest.start()  # the question changed: the call under way is stale
    latest.submit(lane_calls.pid, "queued, stale", on_done=answers.append)
    latest.start()
    latest.submit(lane_calls.pid, "newest", on_done=answers.append)
    qtbot.waitUntil(lambda: background.in_flight == 0)
    assert len(answers) == 1  # nothing from the stale calls, not even their errors
    (helper, echo), = answers  # type: ignore[misc]
    assert echo == "newest"
    assert helper == latest.lane.pid
    assert helper != os.getpid()
    assert latest.lane.stopped == 1  # the first stopped early, on its own...
    assert latest.lane.ended == 0  # (its process was not ended: it is still the same)
    assert latest.lane.calls == 2  # ...and the queued stale one never ran
    assert not latest.pending
    background.shutdown(wait=True)
    assert not psutil.pid_exists(helper)


def test_a_stale_call_that_does_not_stop_has_its_process_ended(
        background: Background, qtbot: QtBot) -> None:
    latest = LatestInProcess(background)
    answers: list[object] = []
    latest.submit(lane_calls.unaware, on_done=answers.append, on_error=answers.append)
    qtbot.waitUntil(lambda: latest.lane.begun, timeout=30_000)  # past its start-up
    stuck = latest.lane.pid
    latest.start()
    latest.submit(lane_calls.pid, "after", on_done=answers.append)
    qtbot.waitUntil(lambda: len(answers) == 1, timeout=60_000)  # after STOP_GRACE_S
    assert answers == [(latest.lane.pid, "after")]
    assert latest.lane.pid != stuck
    assert stuck is not None
    assert not psutil.pid_exists(stuck)
    assert (latest.lane.stopped, latest.lane.ended) == (0, 1)
    background.shutdown(wait=True)


def test_a_crash_is_reported_and_the_next_call_gets_a_new_process(
        background: Background, qtbot: QtBot) -> None:
    latest = LatestInProcess(background)
    answers: list[object] = []
    latest.submit(lane_calls.pid, on_done=answers.append)
    qtbot.waitUntil(lambda: len(answers) == 1)
    first = latest.lane.pid
    errors: list[BaseException] = []
    latest.start()
    latest.submit(lane_calls.crash, on_error=errors.append)
    qtbot.waitUntil(lambda: len(errors) == 1)
    assert isinstance(errors[0], HelperCrashed)
    assert "Change the message or the recipients" in str(errors[0])
    latest.start()
    latest.submit(lane_calls.pid, "again", on_done=answers.append)
    qtbot.waitUntil(lambda: len(answers) == 2)
    assert answers[1] == (latest.lane.pid, "again")
    assert latest.lane.pid != first
    background.shutdown(wait=True)


def test_a_long_call_in_the_other_helper_process_does_not_hold_the_lane_up(
        background: Background, qtbot: QtBot, tmp_path: Path) -> None:
    latest = LatestInProcess(background)
    release = tmp_path / "release"
    imported: list[object] = []
    background.run_in_process(lane_calls.wait_for_file, str(release),
                              on_done=imported.append)
    answers: list[object] = []
    latest.submit(lane_calls.pid, "totals", on_done=answers.append)
    qtbot.waitUntil(lambda: len(answers) == 1, timeout=30_000)
    assert imported == []  # the import still runs
    release.touch()
    qtbot.waitUntil(lambda: imported == ["done"], timeout=30_000)
    background.shutdown(wait=True)


def test_warming_starts_the_process_before_the_first_question(
        background: Background, qtbot: QtBot) -> None:
    latest = LatestInProcess(background)
    assert latest.lane.pid is None
    latest.warm()
    qtbot.waitUntil(lambda: background.in_flight == 0)
    warm = latest.lane.pid
    assert warm is not None
    assert psutil.pid_exists(warm)
    answers: list[object] = []
    latest.submit(lane_calls.pid, on_done=answers.append)
    qtbot.waitUntil(lambda: len(answers) == 1)
    assert answers == [(warm, None)]
    background.shutdown(wait=True)
