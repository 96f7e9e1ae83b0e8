"""Local worker processes kept running: the headless counterpart of the console.

Starts the embedded Redis and the sandbox gateway when they are needed and not running
(and stops them again at the end, as their owner), starts the configured workers through
RelayDesk's own entry point, and restarts any worker that dies.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import time
from dataclasses import dataclass, field

from engine.embedded_redis import EmbeddedRedis
from engine.local_gateway import LocalGateway
from engine.process_launch import relaydesk_command
from engine.settings import Settings

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 30.0


@dataclass
class WorkerProcess:
    command: list[str]
    process: subprocess.Popen[bytes]
    restarts: int = 0


@dataclass
class Supervisor:
    settings: Settings
    workers: int = 1
    concurrency: int | None = None
    pool: str | None = None
    queues: list[str] | None = None
    running: list[WorkerProcess] = field(default_factory=list)
    own_redis: subprocess.Popen[bytes] | None = None  # set when we started it
    own_gateway: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    def start(self) -> None:
        if not self.settings.redis_url:
            self.own_redis, _ = EmbeddedRedis.for_settings(self.settings).start()
        if self.settings.sms_provider == "sandbox" and not self.settings.sms_gateway_url:
            self.own_gateway, _ = LocalGateway.for_settings(self.settings).start(self.settings)
        for index in range(self.workers):
            command = self._worker_command()
            self.running.append(WorkerProcess(command, self._spawn(command, index)))

    def _spawn(self, command: list[str], index: int) -> subprocess.Popen[bytes]:
        logs = self.settings.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with (logs / f"worker-{index + 1}.log").open("ab") as log:
            return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def _worker_command(self) -> list[str]:
        args = ["worker"]
        if self.concurrency:
            args += ["--concurrency", str(self.concurrency)]
        if self.pool:
            args += ["--pool", self.pool]
        if self.queues:
            args += ["--queues", ",".join(self.queues)]
        return relaydesk_command(self.settings, *args)

    def check(self) -> None:
        """Restart workers that exited; call this periodically."""
        for index, worker in enumerate(self.running):
            code = worker.process.poll()
            if code is not None:
                log.warning("worker pid %s exited with %s; restarting", worker.process.pid, code)
                worker.process = self._spawn(worker.command, index)
                worker.restarts += 1
                self.restarts += 1

    def stop(self) -> None:
        """Warm shutdown: workers finish their current task, then the owned services stop."""
        for worker in self.running:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for worker in self.running:
            try:
                worker.process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
        self.running.clear()
        if self.own_gateway is not None:
            self.own_gateway.terminate()
            self.own_gateway.wait(10)
            self.own_gateway = None
        if self.own_redis is not None:
            EmbeddedRedis.for_settings(self.settings).stop()  # SHUTDOWN flushes the AOF
            self.own_redis.wait(10)
            self.own_redis = None
