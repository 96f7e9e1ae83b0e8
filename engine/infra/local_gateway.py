"""The sandbox gateway RelayDesk runs for itself when RELAYDESK_SMS_PROVIDER=sandbox and no
RELAYDESK_SMS_GATEWAY_URL is set: one per data dir, found again by every process, like the
embedded Redis."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class LocalGateway:
    directory: Path

    @classmethod
    def for_settings(cls, settings: Settings) -> LocalGateway:
        return cls(settings.data_dir / "gateway")

    @property
    def state_file(self) -> Path:
        return self.directory / "gateway.json"

    def url(self) -> str | None:
        try:
            return str(json.loads(self.state_file.read_text())["url"])
        except (OSError, ValueError, KeyError):
            return None

    def pid(self) -> int | None:
        """The process serving the recorded URL (as recorded when it was started)."""
        try:
            return int(json.loads(self.state_file.read_text())["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def ping(self) -> bool:
        url = self.url()
        if not url:
            return False
        try:
            response = urllib3.request("GET", url + "/stats", timeout=2.0, retries=False)
        except urllib3.exceptions.HTTPError:
            return False
        return response.status == 200

    def start(self, settings: Settings) -> tuple[subprocess.Popen[bytes] | None, str]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.directory / "start.lock")):
            url = self.url()
            if url and self.ping():
                return None, url
            port = free_port()
            command = relaydesk_command(settings, "gateway", "--port", str(port))
            with (self.directory / "gateway.log").open("ab") as log:  # the child keeps its copy
                process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                           stderr=log, start_new_session=True)
            url = f"http://127.0.0.1:{port}"
            self.state_file.write_text(json.dumps({"url": url, "pid": process.pid}))
            # Found again by a later console if the one that started it dies.
            process_records.record_process(settings.data_dir, "gateway", "gateway",
                                           process.pid, command)
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            while not self.ping():
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    raise GatewayUnavailable(
                        f"the sandbox gateway did not start; see {self.directory}/gateway.log")
                time.sleep(0.05)
            return process, url


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
