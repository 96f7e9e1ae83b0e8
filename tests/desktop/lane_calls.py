"""Module-level functions the helper-lane tests run in a helper process (a spawned process
imports what it runs by module name)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import NoReturn

from desktop.helper_lane import Stale, Superseded


def pid(stale: Stale, echo: object = None) -> tuple[int, object]:
    return os.getpid(), echo


def until_stale(stale: Stale) -> NoReturn:
    """A call that would run for ever if it were not superseded: what the totals over a
    very large audience look like from here."""
    while not stale():
        time.sleep(0.001)
    raise Superseded


def crash(stale: Stale) -> NoReturn:
    os._exit(3)  # the helper process dies mid-call (as when the system kills it)


def wait_for_file(path: str) -> str:
    """A long call in the console's other helper process (an import, a send)."""
    while not Path(path).exists():
        time.sleep(0.005)
    return "done"


def unaware(stale: Stale) -> NoReturn:
    """A call that never looks whether it is stale (or is stuck in one long step)."""
    while True:
        time.sleep(0.01)
