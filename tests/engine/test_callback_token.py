"""The callback token: one per data dir, the same for every process, never empty."""

from __future__ import annotations

import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from engine.config.callback_token import MIN_LENGTH, TOKEN_FILE, callback_token
from engine.config.settings import load_settings


def test_generated_once_and_kept_private(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYDESK_DATA_DIR", str(tmp_path))
    settings = load_settings()
    first = callback_token(settings)
    assert len(first) >= MIN_LENGTH
    assert callback_token(load_settings()) == first
    assert stat.S_IMODE((tmp_path / TOKEN_FILE).stat().st_mode) == 0o600


def test_processes_starting_together_agree(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Many first calls at once, in fresh data dirs: one token each time, never empty
    (a call that found no file must not overwrite the one another call just put there)."""
    for attempt in range(20):
        data_dir = tmp_path / str(attempt)
        monkeypatch.setenv("RELAYDESK_DATA_DIR", str(data_dir))
        settings = load_settings()
        with ThreadPoolExecutor(16) as pool:
            tokens = set(pool.map(callback_token, [settings] * 32))
        assert len(tokens) == 1
        assert "" not in tokens
        assert (data_dir / TOKEN_FILE).read_text().strip() in tokens
        assert not list(data_dir.glob(f".{TOKEN_FILE}.*"))  # no temporary file left


def test_an_empty_file_is_replaced_by_a_token(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYDESK_DATA_DIR", str(tmp_path))
    (tmp_path / TOKEN_FILE).write_text("")
    token = callback_token(load_settings())
    assert len(token) >= MIN_LENGTH
    assert (tmp_path / TOKEN_FILE).read_text().strip() == token


def test_the_setting_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYDESK_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("RELAYDESK_CALLBACK_TOKEN", "set-on-every-machine-0123")
    assert callback_token(load_settings()) == "set-on-every-machine-0123"
    assert not (tmp_path / TOKEN_FILE).exists()
