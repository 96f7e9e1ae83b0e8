"""The receiver's sustained delivery report rate, with the reports applied, against the
pipeline's send rate on the same machine; prints JSON.

One run: a fresh data dir with Redis, `relaydesk receiver` and one `relaydesk worker` (its
dispatcher runs the report applier) as their own processes, and --reports messages created
directly in the database as the sender leaves them (provider sandbox, awaiting a report,
each its own provider id). --clients processes post one sandbox delivery report
(``{"id", "status": "delivered"}``) for each message, over keep-alive connections, all
starting together. Measured from that start:

- receiver_reports_per_s: reports acknowledged (200: stored in Redis) per second, until
  the last acknowledgement;
- applied_reports_per_s: reports applied per second, until the database shows every
  message delivered (polled every 0.1 s);
- the receiver's and the worker's CPU seconds over the run (psutil), so a client-bound run
  shows as a receiver well below one core.

The send rate is benchmarks/throughput.py's scenario (a child run: --send-recipients
messages through the sandbox gateway at 0 ms latency, pacing 0, 2 workers as supervise
starts them), run first, alone. ratio = applied / send: at least 1 means reports never
fall behind the sends.

Usage: python benchmarks/receiver.py [--reports 20000] [--clients 4]
           [--send-recipients 5000]
Everything it starts is stopped when it ends, also on failure or Ctrl+C.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import redis
from _pipeline_bench import answers, log, started, stop_on_signals, stop_tree, wait_until
from sqlalchemy import func, insert, select

from engine.config.callback_token import callback_token
from engine.config.settings import Settings, load_settings
from engine.domain.delivery import DeliveryStatus
from engine.infra import report_inbox
from engine.infra.embedded_redis import EmbeddedRedis, free_port
from engine.infra.worker_registry import live_workers
from engine.store.db import close_databases, open_database
from engine.store.models import (
    Campaign,
    CampaignStatus,
    DeliveryReport,
    MessageStatus,
    OutgoingMessage,
)

ROOT = Path(__file__).resolve().parent.parent
APPLY_TIMEOUT_S = 600.0


# --- the send rate: benchmarks/throughput.py's scenario -----------------------------------

def send_rate(recipients: int) -> dict[str, Any]:
    """throughput.py's 0 ms scenario in a child (its own data dir, gateway and workers)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAYDESK_")}
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--one", "0",
         "--recipients", str(recipients), "--workers", "2", "--naive-window", "3"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=ROOT,
        start_new_session=True)
    try:
        out, _ = process.communicate(timeout=600)
    finally:
        stop_tree(process)
    if process.returncode != 0:
        raise RuntimeError(f"benchmarks/throughput.py failed (exit {process.returncode})")
    result: dict[str, Any] = json.loads(out)
    return result


# --- the reports --------------------------------------------------------------------------

def create_sent_messages(settings: Settings, count: int) -> tuple[int, list[str]]:
    """A completed campaign of ``count`` messages awaiting their sandbox report."""
    db = open_database(settings)
    now = datetime.now(UTC)
    run = uuid.uuid4().hex[:8]
    ids = [f"sbx-{run}-{i}" for i in range(count)]
    with db.session() as session:
        campaign = Campaign(name="receiver benchmark", template="Dear {name}",
                            route="bulk", queue="bulk_messages",
                            status=CampaignStatus.COMPLETED, recipients=count,
                            segments=count, started_at=now, finished_at=now)
        session.add(campaign)
        session.flush()
        campaign_id = campaign.id
        rows = [{"campaign_id": campaign_id, "contact_id": None,
                 "phone": f"+2547{i:08d}", "body": "Dear member", "encoding": "GSM-7",
                 "segments": 1, "status": MessageStatus.SENT, "attempts": 1,
                 "provider_message_id": pid, "sent_at": now, "provider": "sandbox",
                 "delivery": DeliveryStatus.AWAITING_REPORT, "report_polls": 0}
                for i, pid in enumerate(ids)]
        for start in range(0, count, 5000):
            session.execute(insert(OutgoingMessage), rows[start:start + 5000])
    return campaign_id, ids


def delivered(settings: Settings, campaign_id: int) -> int:
    with open_database(settings).session() as session:
        return session.scalar(select(func.count(OutgoingMessage.id)).where(
            OutgoingMessage.campaign_id == campaign_id,
            OutgoingMessage.delivery == DeliveryStatus.DELIVERED)) or 0


def stored_reports(settings: Settings) -> int:
    with open_database(settings).session() as session:
        return session.scalar(select(func.count(DeliveryReport.id))) or 0


def client(port: int, path: str, ids: list[str], ready: Any, go: Any, results: Any) -> None:
    """One client process: a report per id, one after another on one keep-alive
    connection (headers and body in one send: http.client joins them for a bytes body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    bodies = [json.dumps({"id": pid, "status": "delivered"}).encode() for pid in ids]
    acked = refused = 0
    connection.connect()
    ready.release()
    go.wait()
    for body in bodies:
        try:
            connection.request("POST", path, body, headers)
            response = connection.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            refused += 1
            connection.close()  # reconnects on the next request
            continue
        if response.status == 200:
            acked += 1
        else:
            refused += 1
    results.put((acked, refused, time.monotonic()))
    connection.close()


def cpu_s(process: psutil.Process) -> float:
    """CPU seconds of the process and its children so far."""
    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        with suppress(psutil.Error):
            times = p.cpu_times()
            total += times.user + times.system
    return total


class Clients:
    """--clients processes, connected and waiting for ``go``, each with a share of ids."""

    def __init__(self, port: int, path: str, ids: list[str], count: int) -> None:
        spawn = multiprocessing.get_context("spawn")
        ready = spawn.Semaphore(0)
        self.go, self.results = spawn.Event(), spawn.Queue()
        self.processes = [spawn.Process(target=client, daemon=True,
                                        args=(port, path, ids[n::count], ready, self.go,
                                              self.results))
                          for n in range(count)]
        for process in self.processes:
            process.start()
        for _ in self.processes:
            if not ready.acquire(timeout=60):
                raise RuntimeError("a client process did not start")

    def answers(self) -> list[tuple[int, int, float]]:
        return [self.results.get(timeout=60) for _ in self.processes]

    def stop(self) -> None:
        for process in self.processes:
            if process.is_alive():
                process.kill()
            process.join(10)


def run_reports(settings: Settings, store: Any, campaign_id: int, reports: int,
                clients: Clients, watched: list[psutil.Process]) -> dict[str, Any]:
    """Let the clients go; wait until every message shows delivered."""
    cpu_before = [cpu_s(p) for p in watched]
    inbox_peak = done = 0
    start = time.monotonic()
    clients.go.set()
    while done < reports:
        inbox_peak = max(inbox_peak, report_inbox.pending(store))
        done = delivered(settings, campaign_id)
        if time.monotonic() - start > APPLY_TIMEOUT_S:
            raise RuntimeError(f"only {done} of {reports} reports applied")
        time.sleep(0.1)
    applied_at = time.monotonic()
    receiver_cpu, worker_cpu = (cpu_s(p) - before for p, before in zip(watched, cpu_before,
                                                                       strict=True))
    answers = clients.answers()
    acked = sum(a for a, _, _ in answers)
    acked_at = max(t for _, _, t in answers)
    return {
        "reports": reports, "clients": len(answers), "acknowledged": acked,
        "refused": sum(r for _, r, _ in answers), "stored": stored_reports(settings),
        "receiver_reports_per_s": round(acked / (acked_at - start), 1),
        "applied_reports_per_s": round(reports / (applied_at - start), 1),
        "acknowledge_s": round(acked_at - start, 2),
        "apply_s": round(applied_at - start, 2),
        "apply_lag_after_last_ack_s": round(max(applied_at - acked_at, 0), 2),
        "inbox_peak": inbox_peak,
        "receiver_cpu_s": round(receiver_cpu, 2),
        "worker_cpu_s": round(worker_cpu, 2),
        "receiver_cpu_ms_per_report": round(1000 * receiver_cpu / max(acked, 1), 3),
    }


def measure_reports(settings: Settings, data_dir: Path, reports: int, clients: int
                    ) -> dict[str, Any]:
    """Redis, the receiver and a worker for this data dir; the clients; the figures."""
    redis_server = EmbeddedRedis(data_dir / "redis")
    redis_process, redis_url = redis_server.start()
    store = redis.Redis.from_url(redis_url)
    posting: Clients | None = None
    try:
        campaign_id, ids = create_sent_messages(settings, reports)
        port = free_port()
        receiver_args = [sys.executable, "-m", "engine", "receiver", "--port", str(port)]
        worker_args = [sys.executable, "-m", "engine", "worker", "-c", "1"]
        with started(receiver_args, data_dir / "receiver.log") as receiver, \
                started(worker_args, data_dir / "worker.log") as worker:
            wait_until(lambda: live_workers(store), 60, "the worker")
            wait_until(lambda: answers(port, "/health"), 60, "the receiver")
            posting = Clients(port, f"/callbacks/sandbox/{callback_token(settings)}/delivery",
                              ids, clients)
            watched = [psutil.Process(receiver.pid), psutil.Process(worker.pid)]
            return run_reports(settings, store, campaign_id, reports, posting, watched)
    finally:
        if posting is not None:
            posting.stop()
        store.close()
        close_databases()
        redis_server.stop()
        if redis_process is not None:
            redis_process.wait(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reports", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--send-recipients", type=int, default=5_000)
    args = parser.parse_args()
    stop_on_signals()

    log(f"send rate: throughput.py with {args.send_recipients} recipients at 0 ms")
    send = send_rate(args.send_recipients)
    log(f"send rate: {send['msgs_per_s']} msgs/s; reports next")
    with tempfile.TemporaryDirectory(prefix="relaydesk-receiver-bench-") as tmp:
        data_dir = Path(tmp)
        for name in [n for n in os.environ if n.startswith("RELAYDESK_")]:
            del os.environ[name]
        os.environ.update({"RELAYDESK_DATA_DIR": str(data_dir),
                           "RELAYDESK_CONFIG_FILE": str(data_dir / "config.toml")})
        result = measure_reports(load_settings(), data_dir, args.reports, args.clients)
    applied = result["applied_reports_per_s"]
    print(json.dumps({
        "receiver_reports_per_s": result["receiver_reports_per_s"],
        "applied_reports_per_s": applied,
        "send_msgs_per_s": send["msgs_per_s"],
        "ratio": round(applied / send["msgs_per_s"], 2),
        "reports": result["reports"],
        "clients": result["clients"],
        "details": {**result, "send": {k: send[k] for k in (
            "recipients", "workers", "elapsed_s", "msgs_per_s")}},
        "cpus": os.cpu_count(),
    }, indent=2))


if __name__ == "__main__":
    main()
