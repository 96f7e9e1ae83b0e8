"""What benchmarks/gateway.py, throughput.py and soak.py share: processes that are always
stopped, waits on a condition, CPU and memory of a process tree, a fresh PostgreSQL
database per run, generated contacts, and counting a campaign's sent messages.

Not a benchmark itself; the scripts import it (they run with benchmarks/ on sys.path).
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from types import FrameType

import psutil
import redis
import urllib3
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from engine.config.settings import Settings, load_settings
from engine.infra.connections import celery_for
from engine.infra.embedded_redis import EmbeddedRedis, free_port
from engine.infra.worker_registry import live_workers
from engine.operations.supervisor import Supervisor
from engine.store.contacts_import import import_contacts
from engine.store.db import Database, close_databases, open_database
from engine.store.models import MessageStatus, OutgoingMessage

TEMPLATE = "Dear #name, of your pledge of #pledge you have paid #paid_amount; #balance remains."
# A body as long as TEMPLATE's personalised text, for requests sent without the pipeline.
SAMPLE_BODY = ("Dear Member 12345, of your pledge of KES 10,000 you have paid KES 2,500; "
               "KES 7,500 remains.")


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- processes, always stopped ------------------------------------------------------------

class Stopped(BaseException):
    """SIGTERM or SIGINT: unwind so that every process started is stopped (a
    BaseException, like KeyboardInterrupt: no `except Exception` on the way swallows it)."""


def stop_on_signals() -> None:
    def stop(signum: int, frame: FrameType | None) -> None:
        raise Stopped(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def stop_tree(process: subprocess.Popen[bytes] | subprocess.Popen[str],
              grace_s: float = 20.0) -> None:
    """SIGTERM the process (a warm shutdown for workers), then SIGKILL it and whatever it
    started that is still there."""
    try:
        family = psutil.Process(process.pid).children(recursive=True)
    except psutil.Error:
        family = []
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for child in family:
        with suppress(psutil.Error):
            child.kill()


@contextmanager
def started(args: list[str], log_path: Path, env: dict[str, str] | None = None
            ) -> Iterator[subprocess.Popen[bytes]]:
    """A process (its own session: a Ctrl+C reaches only us), stopped on leaving."""
    with log_path.open("ab") as out:
        process = subprocess.Popen(args, stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                                   start_new_session=True, env=env)
    try:
        yield process
    finally:
        stop_tree(process)


def relaydesk(*args: str) -> list[str]:
    """A RelayDesk command line run with this interpreter (``python -m engine ...``)."""
    return [sys.executable, "-m", "engine", *args]


def wait_until(condition: Callable[[], object], timeout_s: float, what: str,
               interval_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(interval_s)


def answers(port: int, path: str) -> bool:
    """GET path on 127.0.0.1:port answers at all (any status)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", path)
        connection.getresponse().read()
        return True
    except OSError:
        return False
    finally:
        connection.close()


def tree(pid: int) -> list[psutil.Process]:
    """The process and its descendants (a worker and its pool); empty when it is gone."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of the process (not its children) so far."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def tree_cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of the process and its living descendants so far."""
    total = 0.0
    for process in tree(pid):
        with suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine spent busy so far (not idle, not waiting)."""
    times = psutil.cpu_times()
    # (guest time is already inside user time on Linux)
    return float(sum(getattr(times, name, 0.0) for name in
                     ("user", "nice", "system", "irq", "softirq", "steal")))


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of the process and its descendants, summed."""
    total = 0
    for process in tree(pid):
        with suppress(psutil.Error):
            total += process.memory_info().rss
    return total


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


class RssSampler(threading.Thread):
    """Resident memory of each worker with its pool processes, every ``interval_s``: the
    peak since the start (``peak_mb``: the largest worker's) and, for windows of a run,
    the peak per worker since the last ``take_window()``."""

    def __init__(self, pids: list[int], interval_s: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._peak = dict.fromkeys(pids, 0)
        self._window = dict.fromkeys(pids, 0)
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.interval_s):
            self.sample()

    def sample(self) -> None:
        sizes = {pid: tree_rss_bytes(pid) for pid in self.pids}
        with self._lock:
            for pid, size in sizes.items():
                self._peak[pid] = max(self._peak[pid], size)
                self._window[pid] = max(self._window[pid], size)

    @property
    def peak_mb(self) -> float:
        with self._lock:
            return max(self._peak.values(), default=0) / 2**20

    def take_window(self) -> list[float]:
        """Each worker's peak (MB) since the previous call, in ``pids`` order."""
        self.sample()  # the window's end counts too
        with self._lock:
            peaks = [round(self._window[pid] / 2**20, 1) for pid in self.pids]
            self._window = dict.fromkeys(self.pids, 0)
        return peaks

    def stop(self) -> None:
        self._done.set()
        self.join(5)


# --- the database -------------------------------------------------------------------------

@contextmanager
def fresh_postgres(server_url: str) -> Iterator[str]:
    """A new, empty database on the PostgreSQL server at ``server_url`` (any database on it
    that the user may connect to, e.g. postgresql://postgres@127.0.0.1:5432/postgres),
    dropped on leaving, as tests/conftest.py's postgres_url does. Yields its URL."""
    admin_url = make_url(server_url.replace("postgresql://", "postgresql+psycopg://", 1))
    if not admin_url.drivername.startswith("postgresql"):
        raise SystemExit(f"--database-url must be a PostgreSQL server's URL "
                         f"(postgresql://user@host:port/postgres), not {server_url!r}")
    name = f"relaydesk_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        close_databases()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# --- campaigns ----------------------------------------------------------------------------

def write_contacts(path: Path, count: int) -> None:
    due = (date.today() + timedelta(days=30)).isoformat()
    with path.open("w") as f:
        f.write("name,phone,pledge,paid_amount,due_date\n")
        for i in range(count):
            # ends in 5: never one of the sandbox gateway's failing test numbers
            f.write(f"Member {i},07{i:07d}5,10000,2500,{due}\n")


def count_sent(settings: Settings, campaign_id: int) -> int:
    with open_database(settings).session() as session:
        return session.scalar(select(func.count(OutgoingMessage.id)).where(
            OutgoingMessage.campaign_id == campaign_id,
            OutgoingMessage.status == MessageStatus.SENT)) or 0


def wait_sent(settings: Settings, campaign_id: int, total: int, deadline_s: float,
              stall_s: float = 300.0, interval_s: float = 0.5) -> int:
    """Poll until the campaign has ``total`` sent messages, the deadline passes, or nothing
    more was sent for ``stall_s`` (a broken pipeline ends the run instead of hanging it);
    the count."""
    end = time.monotonic() + deadline_s
    sent, progress_at = 0, time.monotonic()
    while True:  # counted at least once, even with the deadline already past
        now_sent = count_sent(settings, campaign_id)
        if now_sent > sent:
            sent, progress_at = now_sent, time.monotonic()
        if sent >= total or time.monotonic() >= end:
            break
        if time.monotonic() - progress_at > stall_s:
            log(f"nothing sent for {stall_s:g} s: {sent} of {total}; giving up")
            break
        time.sleep(interval_s)
    return sent


# --- RelayDesk as supervise runs it, against its own sandbox gateway ----------------------

@dataclass
class Pipeline:
    """A running pipeline (see ``pipeline``)."""

    settings: Settings
    db: Database
    redis_url: str
    client: redis.Redis
    gateway_port: int
    gateway_pid: int
    redis_pid: int
    supervisor: Supervisor
    worker_pids: list[int]

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def gateway_stats(self) -> dict[str, int]:
        stats: dict[str, int] = urllib3.request("GET", f"{self.gateway_url}/stats",
                                                retries=False, timeout=10.0).json()
        return stats

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds so far of the workers (with their pools), the gateway, Redis, and
        the whole machine (busy, all processes: the database server and whatever else
        runs are in it)."""
        return {"workers": sum(tree_cpu_seconds(pid) for pid in self.worker_pids),
                "gateway": tree_cpu_seconds(self.gateway_pid),
                "redis": tree_cpu_seconds(self.redis_pid),
                "machine": machine_busy_seconds()}


@contextmanager
def pipeline(data_dir: Path, *, recipients: int, latency_ms: float, workers: int,
             env: dict[str, str], database_url: str | None = None) -> Iterator[Pipeline]:
    """RelayDesk in a fresh data dir, everything stopped on leaving: the embedded Redis;
    the sandbox gateway as its own process (``relaydesk gateway --latency-ms``); a new
    PostgreSQL database on ``database_url``'s server (else SQLite in the data dir);
    ``recipients`` generated contacts imported; ``workers`` workers started as
    ``relaydesk supervise`` starts them (this process's RELAYDESK_* environment, plus
    ``env``, goes to every process)."""
    with ExitStack() as stack:
        if database_url:
            env = {**env, "RELAYDESK_DATABASE_URL":
                   stack.enter_context(fresh_postgres(database_url))}
        port = free_port()
        os.environ.update({
            "RELAYDESK_DATA_DIR": str(data_dir),
            "RELAYDESK_CONFIG_FILE": str(data_dir / "config.toml"),  # not the user's
            "RELAYDESK_SMS_PROVIDER": "sandbox",
            "RELAYDESK_SMS_GATEWAY_URL": f"http://127.0.0.1:{port}",  # ours, not supervise's
            "RELAYDESK_QUIET_HOURS": "",
            **env,
        })
        stack.callback(close_databases)
        settings = load_settings()
        redis_server = EmbeddedRedis.for_settings(settings)
        redis_process, url = redis_server.start()
        if redis_process is not None:
            stack.callback(redis_process.wait, 15)  # after stop(): no zombie left
        stack.callback(redis_server.stop)
        redis_pid = redis_server.pid() or (redis_process.pid if redis_process else 0)
        gateway = stack.enter_context(started(
            relaydesk("gateway", "--port", str(port), "--latency-ms", str(latency_ms)),
            data_dir / "gateway.log"))
        wait_until(lambda: answers(port, "/stats"), 60, "the sandbox gateway")
        db = open_database(settings)
        contacts = data_dir / "contacts.csv"
        write_contacts(contacts, recipients)
        import_contacts(db, contacts, settings.default_region)
        supervisor = Supervisor(settings, workers=workers)
        stack.callback(supervisor.stop)
        supervisor.start()
        client = redis.Redis.from_url(url)
        stack.callback(client.close)
        celery_for(url)
        wait_until(lambda: len(live_workers(client)) >= workers, 120, "the workers")
        yield Pipeline(settings, db, url, client, port, gateway.pid, redis_pid, supervisor,
                       [w.process.pid for w in supervisor.running if w.process is not None])
