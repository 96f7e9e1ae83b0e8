"""The sandbox gateway RelayDesk runs for itself when RELAYDESK_SMS_PROVIDER=sandbox and no
RELAYDESK_SMS_GATEWAY_URL is set: one per data dir, found again by every process, like the
embedded Redis. What it shares with the local receiver (engine.infra.local_receiver) is
LocalService: a state file with the URL and pid, a health ping, and the launch."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import urllib3
from filelock import FileLock

from engine.config.settings import Settings
from engine.domain.errors import OperatorError
from engine.infra import process_records
from engine.infra.embedded_redis import free_port
from engine.infra.process_launch import relaydesk_command

STARTUP_TIMEOUT_S = 15.0


class GatewayUnavailable(OperatorError, RuntimeError):
    """The sandbox gateway cannot be started or reached."""


def answers(url: str) -> bool:
    """``url`` answers a GET with 200 within 2 s."""
    try:
        response = urllib3.request("GET", url, timeout=2.0, retries=False)
    except urllib3.exceptions.HTTPError:
        return False
    return response.status == 200


@dataclass(frozen=True)
class LocalService:
    """A server process a data dir runs for itself (``relaydesk gateway``, ``relaydesk
    receiver``), found again by every process through ``DIR/NAME.json`` ({url, pid, ...}),
    and recorded in ``DATA_DIR/run`` so that a later console can take it back."""

    directory: Path
    name: ClassVar[str]  # the state file's and the log's name, and the process record's role
    health_path: ClassVar[str]  # answers 200 while it serves

    @property
    def state_file(self) -> Path:
        return self.directory / f"{self.name}.json"

    @property
    def log_file(self) -> Path:
        return self.directory / f"{self.name}.log"

    def state(self) -> dict[str, Any]:
        """What was recorded when it was started; {} when nothing was."""
        try:
            data = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def url(self) -> str | None:
        url = self.state().get("url")
        return str(url) if url else None

    def pid(self) -> int | None:
        """The process serving the recorded URL (as recorded when it was started)."""
        try:
            return int(self.state()["pid"])
        except (KeyError, ValueError, TypeError):
            return None

    def ping(self) -> bool:
        url = self.url()
        return bool(url) and answers(f"{url}{self.health_path}")

    def launch(self, settings: Settings, port: int, *args: str,
               **recorded: Any) -> tuple[subprocess.Popen[bytes], str]:
        """Start ``relaydesk NAME --port PORT ARGS`` and wait until it answers; the caller
        holds the start lock. ``recorded`` joins the state file."""
        command = relaydesk_command(settings, self.name, "--port", str(port), *args)
        with self.log_file.open("ab") as log:  # the child keeps its copy
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=log, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        self.state_file.write_text(json.dumps({"url": url, "pid": process.pid, **recorded}))
        # Found again by a later console if the one that started it dies.
        process_records.record_process(settings.data_dir, self.name, self.name, process.pid,
                                       command)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self.ping():
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise self.unavailable(port)
            time.sleep(0.05)
        return process, url

    def unavailable(self, port: int) -> OperatorError:
        return GatewayUnavailable(f"the {self.name} did not start; see {self.log_file}")


@dataclass(frozen=True)
class LocalGateway(LocalService):
    name: ClassVar[str] = "gateway"
    health_path: ClassVar[str] = "/stats"

    @classmethod
    def for_settings(cls, settings: Settings) -> LocalGateway:
        return cls(settings.data_dir / "gateway")

    def reports_url(self) -> str | None:
        """The receiver the running gateway posts reports to (as recorded at its start)."""
        url = self.state().get("reports_url")
        return str(url) if url else None

    def start(self, settings: Settings,
              port: int | None = None) -> tuple[subprocess.Popen[bytes] | None, str]:
        """The gateway of this data dir: (None, its URL) when it runs already, else (the
        process started, its URL) on ``port`` or a free one. It posts delivery reports to
        this data dir's receiver when one runs."""
        from engine.infra.local_receiver import receiver_url  # it builds on LocalService

        self.directory.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.directory / "start.lock")):
            url = self.url()
            if url and self.ping():
                return None, url
            reports = receiver_url(settings)
            args = ["--reports-url", reports] if reports else []
            return self.launch(settings, port or free_port(), *args, reports_url=reports)

    def unavailable(self, port: int) -> OperatorError:
        return GatewayUnavailable(f"the sandbox gateway did not start; see {self.log_file}")


def gateway_url(settings: Settings, *, start: bool = True) -> str | None:
    """Where sandbox sends go: RELAYDESK_SMS_GATEWAY_URL, else the local gateway (started if
    asked)."""
    if settings.sms_gateway_url:
        return settings.sms_gateway_url
    if settings.sms_provider != "sandbox":
        return None
    gateway = LocalGateway.for_settings(settings)
    if gateway.ping():
        return gateway.url()
    if not start:
        return None
    return gateway.start(settings)[1]
