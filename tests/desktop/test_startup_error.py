"""A console that cannot use its data dir says so in a window (started from a menu, it has
no terminal) and on stderr, and exits non-zero without a traceback."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox
from pytestqt.qtbot import QtBot

from desktop.cli import cli
from tests.support import RELAYDESK


def read_and_close_the_message_box() -> list[str]:
    """Once the event loop runs, the text of the first modal message box; it is closed."""
    shown: list[str] = []

    def read_and_close() -> None:
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            QTimer.singleShot(20, read_and_close)
            return
        shown.append(box.text())
        box.accept()

    QTimer.singleShot(0, read_and_close)
    return shown


def test_the_console_shows_why_it_cannot_start(tmp_path: Path, qapp: QApplication,
                                               qtbot: QtBot) -> None:
    (tmp_path / "a-file").write_text("not a folder\n")
    data = tmp_path / "a-file" / "data"
    shown = read_and_close_the_message_box()
    result = CliRunner().invoke(cli, ["--data-dir", str(data), "gui"])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    [text] = shown
    assert text.startswith(f"cannot use the data dir {data}: not a directory.")
    assert "--data-dir" in text


def test_without_a_window_the_console_says_it_on_stderr(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder\n")
    data = tmp_path / "a-file" / "data"
    result = subprocess.run([RELAYDESK, "--data-dir", str(data), "gui", "--screenshot-dir",
                             str(tmp_path / "shots")], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"cannot use the data dir {data}: not a directory" in result.stderr
    assert not (tmp_path / "shots").exists()


def test_a_bad_setting_is_said_the_same_way(tmp_path: Path) -> None:
    result = subprocess.run([RELAYDESK, "gui", "--screenshot-dir", str(tmp_path / "shots")],
                            capture_output=True, text=True, timeout=120, check=False,
                            env={**os.environ, "RELAYDESK_CHUNK_SIZE": "lots"})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "RELAYDESK_CHUNK_SIZE='lots' (from environment) is not valid" in result.stderr


def test_no_private_runtime_dir_is_said_in_a_window(
    tmp_path: Path, qapp: QApplication, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "relaydesk").write_text("")  # where RelayDesk's runtime dir would go
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    shown = read_and_close_the_message_box()
    result = CliRunner().invoke(cli, ["gui"])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    [text] = shown
    assert "XDG_RUNTIME_DIR" in text
