"""The report receiver (``relaydesk receiver``) RelayDesk runs for itself: by supervise and
the console when RELAYDESK_RECEIVER_PORT is set, or when they run the sandbox gateway (whose
simulated delivery reports and replies it takes in). One per data dir, found again by every
process through ``receiver/receiver.json``, like the local gateway."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from typing import ClassVar

from filelock import FileLock

from engine.config.settings import Settings
from engine.domain.errors import OperatorError
from engine.infra.embedded_redis import free_port
from engine.infra.local_gateway import LocalService, answers

HEALTH_PATH = "/health"


class ReceiverUnavailable(OperatorError, RuntimeError):
    """The report receiver cannot be started."""


@dataclass(frozen=True)
class LocalReceiver(LocalService):
    name: ClassVar[str] = "receiver"
    health_path: ClassVar[str] = HEALTH_PATH

    @classmethod
    def for_settings(cls, settings: Settings) -> LocalReceiver:
        return cls(settings.data_dir / "receiver")

    def start(self, settings: Settings) -> tuple[subprocess.Popen[bytes] | None, str]:
        """The receiver of this data dir: (None, its URL) when one answers already (started
        earlier, or by the operator on RELAYDESK_RECEIVER_PORT), else (the process started,
        its URL) on RELAYDESK_RECEIVER_PORT or a free port. Redis must run first: the
        receiver stores every report there before it answers."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.directory / "start.lock")):
            url = self.url()
            if url and self.ping():
                return None, url
            fixed = _fixed_url(settings)
            if fixed and answers(fixed + HEALTH_PATH):
                return None, fixed
            return self.launch(settings, settings.receiver_port or free_port())

    def unavailable(self, port: int) -> OperatorError:
        return ReceiverUnavailable(
            f"the report receiver did not start on port {port}; see {self.log_file} (if "
            "the port is taken, set RELAYDESK_RECEIVER_PORT to a free one)")


def _fixed_url(settings: Settings) -> str | None:
    port = settings.receiver_port
    return f"http://127.0.0.1:{port}" if port else None


def receiver_url(settings: Settings) -> str | None:
    """Where this data dir's receiver answers now, if one does: the one RelayDesk started,
    else one on RELAYDESK_RECEIVER_PORT on this machine."""
    receiver = LocalReceiver.for_settings(settings)
    if receiver.ping():
        return receiver.url()
    fixed = _fixed_url(settings)
    return fixed if fixed and answers(fixed + HEALTH_PATH) else None
