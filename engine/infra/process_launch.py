"""How RelayDesk starts more of itself (workers, gateway): its own entry point through
``sys.executable``, never the ``celery`` script, so the packaged app can do it too."""

from __future__ import annotations

import sys

from engine.config.settings import Settings


def relaydesk_command(settings: Settings, *args: str) -> list[str]:
    frozen = getattr(sys, "frozen", False)  # the packaged app: the executable is RelayDesk
    base = [sys.executable] if frozen else [sys.executable, "-m", "engine"]
    return [*base, "--data-dir", str(settings.data_dir), *args]
