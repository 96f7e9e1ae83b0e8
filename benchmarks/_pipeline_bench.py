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
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import date, timedelta
from pathlib import Path
from types import FrameType

import psutil
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from engine.config.settings import Settings
from engine.store.db import close_databases, open_database
from engine.store.models import MessageStatus, OutgoingMessage

TEMPLATE = "Dear #name, of your pledge of #pledge you have paid #paid_amount; #balance remains."
# A body as long as TEMPLATE's personalised text, for requests sent without the pipeline.
SAMPLE_BODY = ("Dear Member 12345, of your pledge of KES 10,000 you have paid KES 2,500; "
               "KES 7,500 remains.")


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- processes, always stopped ------------------------------------------------------------

class Stopped(Exception):
    """SIGTERM or SIGINT: unwind so that every process started is stopped."""


def stop_on_signals() -> None:
    def stop(signum: int, frame: FrameType | None) -> None:
        raise Stopped(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def stop_tree(process: subprocess.Popen[bytes], grace_s: float = 20.0) -> None:
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
def started(args: list[str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process (its own session: a Ctrl+C reaches only us), stopped on leaving."""
    with log_path.open("ab") as out:
        process = subprocess.Popen(args, stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
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
    return times.user + times.system


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of the process and its descendants, summed."""
    total = 0
    for process in tree(pid):
        with suppress(psutil.Error):
            total += process.memory_info().rss
    return total


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


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
              interval_s: float = 0.5) -> int:
    """Poll until the campaign has ``total`` sent messages or the deadline passes; the count."""
    end = time.monotonic() + deadline_s
    sent = 0
    while time.monotonic() < end:
        sent = count_sent(settings, campaign_id)
        if sent >= total:
            break
        time.sleep(interval_s)
    return sent
