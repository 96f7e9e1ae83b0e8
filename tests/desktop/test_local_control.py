"""Closing the console looks up what runs locally off the UI thread: the supervisor's
answers wait on processes and on its lock, which a worker being started holds."""

from __future__ import annotations

import threading

import pytest
from pytestqt.qtbot import QtBot

from desktop.app import Console
from desktop.local_control import install_close_policy
from engine.operations.supervisor import Supervisor


@pytest.fixture
def asked_on(monkeypatch: pytest.MonkeyPatch) -> list[threading.Thread]:
    """The threads that asked the supervisor what runs (the real answers are given)."""
    threads: list[threading.Thread] = []
    running, owns_services = Supervisor.running, Supervisor.owns_services

    def spied_running(self: Supervisor) -> object:
        threads.append(threading.current_thread())
        return running.fget(self)  # type: ignore[attr-defined]

    def spied_owns_services(self: Supervisor) -> bool:
        threads.append(threading.current_thread())
        return owns_services(self)

    monkeypatch.setattr(Supervisor, "running", property(spied_running))
    monkeypatch.setattr(Supervisor, "owns_services", spied_owns_services)
    return threads


def test_closing_asks_what_runs_off_the_ui_thread(console: Console,
                                                  asked_on: list[threading.Thread],
                                                  qtbot: QtBot) -> None:
    install_close_policy(console)
    asked_on.clear()  # only what closing asks
    console.window.close()
    qtbot.waitUntil(lambda: not console.window.isVisible())  # nothing ran: it closes
    assert asked_on
    assert threading.main_thread() not in asked_on
