"""End-to-end send throughput against the sandbox gateway; prints a JSON list.

Each scenario: a fresh data dir, N generated contacts, the sandbox gateway as its own
process with the given latency, workers started as `relaydesk supervise` starts them, a
campaign sent with pacing 0, timed from the send until every message is sent. The naive
baseline sends the same campaign as one Celery task and one apply_async per message,
timed over at most --naive-window seconds.

Usage: python benchmarks/throughput.py [--recipients 100000] [--workers 2]
           [--latencies 0,100] [--rate-limit-100ms 200/s] [--naive-window 120]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psutil
import redis
from sqlalchemy import func, select

from engine.config.settings import Settings, load_settings
from engine.domain.queues import MESSAGES
from engine.infra.celery_app import publish
from engine.infra.connections import celery_for
from engine.infra.embedded_redis import EmbeddedRedis, free_port
from engine.infra.worker_registry import live_workers
from engine.operations.campaigns import create_campaign, send_campaign
from engine.operations.supervisor import Supervisor
from engine.pipeline.sender import SEND_MESSAGE
from engine.store.contacts_import import import_contacts
from engine.store.db import close_databases, open_database
from engine.store.models import MessageStatus, OutgoingMessage

TEMPLATE = "Dear #name, of your pledge of #pledge you have paid #paid_amount; #balance remains."


def write_contacts(path: Path, count: int) -> None:
    due = (date.today() + timedelta(days=30)).isoformat()
    with path.open("w") as f:
        f.write("name,phone,pledge,paid_amount,due_date\n")
        for i in range(count):
            # ends in 5: never one of the sandbox gateway's failing test numbers
            f.write(f"Member {i},07{i:07d}5,10000,2500,{due}\n")


class RssSampler(threading.Thread):
    """Peak resident memory of the worker processes (each worker with its pool)."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.peak_mb = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            for pid in self.pids:
                try:
                    tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
                    rss = sum(p.memory_info().rss for p in tree)
                except psutil.Error:
                    continue
                self.peak_mb = max(self.peak_mb, rss / 2**20)


def count_sent(settings: Settings, campaign_id: int) -> int:
    db = open_database(settings)
    with db.session() as session:
        return session.scalar(select(func.count(OutgoingMessage.id)).where(
            OutgoingMessage.campaign_id == campaign_id,
            OutgoingMessage.status == MessageStatus.SENT)) or 0


def wait_sent(settings: Settings, campaign_id: int, total: int, deadline_s: float) -> int:
    end = time.monotonic() + deadline_s
    sent = 0
    while time.monotonic() < end:
        sent = count_sent(settings, campaign_id)
        if sent >= total:
            break
        time.sleep(0.5)
    return sent


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def scenario(recipients: int, latency_ms: int, workers: int, rate_limit: str | None,
             naive_window_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        env = {
            "RELAYDESK_DATA_DIR": tmp, "RELAYDESK_PACING_INDIVIDUAL_S": "0",
            "RELAYDESK_PACING_CHUNK_S": "0", "RELAYDESK_SMS_GATEWAY_URL": f"http://127.0.0.1:{port}",
            "RELAYDESK_RATE_LIMIT": rate_limit or "",
        }
        os.environ.update(env)
        settings = load_settings()
        gateway = subprocess.Popen([sys.executable, "-m", "engine", "gateway", "--port",
                                    str(port), "--latency-ms", str(latency_ms)],
                                   stderr=subprocess.DEVNULL)
        csv = Path(tmp) / "contacts.csv"
        write_contacts(csv, recipients)
        db = open_database(settings)
        import_contacts(db, csv, settings.default_region)
        supervisor = Supervisor(settings, workers=workers)
        supervisor.start()
        client = redis.Redis.from_url(EmbeddedRedis.for_settings(settings).url())
        celery_for(EmbeddedRedis.for_settings(settings).url())
        while len(live_workers(client)) < workers:
            time.sleep(0.2)
        sampler = RssSampler([w.process.pid for w in supervisor.running])
        sampler.start()
        try:
            start = time.perf_counter()
            created = send_campaign(db, client, settings, TEMPLATE)
            enqueue_s = time.perf_counter() - start
            sent = wait_sent(settings, created.id, recipients, deadline_s=3600)
            elapsed = time.perf_counter() - start
            log(f"{latency_ms} ms: {sent} sent in {elapsed:.1f} s; naive run next")

            # The naive way: every message its own task and its own publish.
            naive = create_campaign(db, settings, TEMPLATE, name="naive")
            with db.session() as session:
                ids = list(session.scalars(select(OutgoingMessage.id).where(
                    OutgoingMessage.campaign_id == naive.id).order_by(OutgoingMessage.id)))
            naive_start = time.perf_counter()
            published = 0
            for message_id in ids:
                publish(SEND_MESSAGE, [naive.id, message_id, False], MESSAGES)
                published += 1
                if time.perf_counter() - naive_start > naive_window_s:
                    break
            naive_publish_s = time.perf_counter() - naive_start
            remaining = max(naive_window_s - naive_publish_s, 0)
            naive_sent = wait_sent(settings, naive.id, recipients, remaining)
            naive_elapsed = time.perf_counter() - naive_start
            log(f"naive: {naive_sent} sent in {naive_elapsed:.1f} s")
        finally:
            sampler.stop.set()
            client.flushall()  # drop what the naive run left queued
            supervisor.stop()
            gateway.terminate()
            gateway.wait()
            close_databases()
        return {
            "scenario": f"{latency_ms} ms gateway latency" + (
                f", rate limit {rate_limit}" if rate_limit else ""),
            "latency_ms": latency_ms,
            "recipients": recipients,
            "workers": workers,
            "worker_concurrency": settings.worker_concurrency,
            "send_concurrency_per_task": settings.send_concurrency,
            "rate_limit": rate_limit,
            "enqueue_s": round(enqueue_s, 2),
            "sent": sent,
            "elapsed_s": round(elapsed, 1),
            "msgs_per_s": round(sent / elapsed, 1),
            "naive_msgs_per_s": round(naive_sent / naive_elapsed, 1),
            "naive_sent_in_window": naive_sent,
            "naive_publish_per_s": round(published / naive_publish_s, 1),
            "worker_peak_rss_mb": round(sampler.peak_mb, 1),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--latencies", default="0,100")
    parser.add_argument("--rate-limit-100ms", default="200/s",
                        help="global rate limit for the 100 ms scenario")
    parser.add_argument("--naive-window", type=float, default=120.0)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:  # a child run: one scenario, fresh process, fresh Celery app
        rate = args.rate_limit_100ms if args.one >= 100 else None
        print(json.dumps(scenario(args.recipients, args.one, args.workers, rate,
                                  args.naive_window)))
        return
    results = []
    for latency in args.latencies.split(","):
        child = subprocess.run(
            [sys.executable, __file__, "--one", latency, "--recipients", str(args.recipients),
             "--workers", str(args.workers), "--rate-limit-100ms", args.rate_limit_100ms,
             "--naive-window", str(args.naive_window)],
            stdout=subprocess.PIPE, text=True, check=True)
        results.append(json.loads(child.stdout))
        log(json.dumps(results[-1]))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
