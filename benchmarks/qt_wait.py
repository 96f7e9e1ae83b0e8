"""Waiting in a benchmark without sleeping: run the Qt event loop until a condition holds,
checking every millisecond, so the time measured is the time the work took."""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import QEventLoop, QTimer


def wait_until(condition: Callable[[], bool], timeout_s: float = 60) -> None:
    loop = QEventLoop()
    deadline = time.monotonic() + timeout_s
    poll = QTimer(interval=1)
    poll.timeout.connect(lambda: (condition() or time.monotonic() > deadline) and loop.quit())
    poll.start()
    if not condition():
        loop.exec()
    poll.stop()
    if not condition():
        raise TimeoutError(f"the condition did not hold within {timeout_s:g} s")
