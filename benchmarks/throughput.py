"""End-to-end send throughput against the sandbox gateway; prints a JSON list, one object
per scenario (gateway latency).

Each scenario runs in a child process of its own: a fresh data dir with its embedded Redis
(SQLite, or with --database-url a new database created on that PostgreSQL server and
dropped afterwards), --recipients generated contacts, the sandbox gateway as its own
process with the scenario's latency, --workers workers started as `relaydesk supervise`
starts them, pacing 0. Measured, in this order, on the same gateway:

- msgs_per_s: one campaign to every contact (send_campaign), timed from the send until
  every message is sent; enqueue_s is the send_campaign call alone. The 100 ms scenario
  runs with RELAYDESK_RATE_LIMIT=--rate-limit-100ms and reports limit_fraction
  (msgs_per_s / the limit).
- naive_msgs_per_s: the same campaign again through RelayDesk's own workers as one
  send_message task and one publish per message, over at most --naive-window seconds.
- plain_celery_msgs_per_s: the fixed plain Celery baseline (benchmarks/plain_celery_app.py:
  one task per message, one apply_async each, whose body only makes the sandbox provider's
  HTTP call with a reused client), in as many `celery worker` processes with the same
  prefork concurrency, on the same Redis, after RelayDesk's workers stopped, over at most
  --plain-window seconds (default: --naive-window). vs_plain_celery = msgs_per_s / it.

Also the CPU used over the campaign (cores_used: 1.0 = one core busy) by the workers with
their pools, the gateway, Redis and the whole machine (others' processes included: with
the machine busy elsewhere, the figures are not the pipeline's), the workers' peak RSS and
the load average.

Usage: python benchmarks/throughput.py [--recipients 100000] [--workers 2]
           [--latencies 0,100] [--rate-limit-100ms 200/s] [--database-url URL]
           [--naive-window 120] [--plain-window S] [--skip-naive] [--skip-plain]
--database-url is a PostgreSQL server's URL that may create databases, e.g.
postgresql://postgres@127.0.0.1:5432/postgres (nothing in that database is touched).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import plain_celery_app
from _pipeline_bench import (
    SAMPLE_BODY,
    TEMPLATE,
    Pipeline,
    RssSampler,
    load_average,
    log,
    pipeline,
    started,
    stop_on_signals,
    wait_sent,
    wait_until,
)
from sqlalchemy import select

from engine.domain.queues import MESSAGES
from engine.infra.celery_app import publish
from engine.operations.campaigns import create_campaign, send_campaign
from engine.pipeline.sender import SEND_MESSAGE
from engine.store.models import OutgoingMessage

BENCHMARKS = Path(__file__).resolve().parent


def relaydesk_run(p: Pipeline, recipients: int) -> dict[str, Any]:
    """One campaign to every contact, from send_campaign until all are sent."""
    sampler = RssSampler(p.worker_pids)
    sampler.start()
    cpu_before = p.cpu_seconds()
    start = time.perf_counter()
    created = send_campaign(p.db, p.client, p.settings, TEMPLATE)
    enqueue_s = time.perf_counter() - start
    sent = wait_sent(p.settings, created.id, recipients, deadline_s=3600)
    elapsed = time.perf_counter() - start
    cpu = {name: round((seconds - cpu_before[name]) / elapsed, 2)
           for name, seconds in p.cpu_seconds().items()}
    sampler.stop()
    return {"enqueue_s": round(enqueue_s, 2), "sent": sent, "elapsed_s": round(elapsed, 1),
            "msgs_per_s": round(sent / elapsed, 1), "cores_used": cpu,
            "worker_peak_rss_mb": round(sampler.peak_mb, 1)}


def naive_run(p: Pipeline, recipients: int, window_s: float) -> dict[str, Any]:
    """The campaign again, as one send_message task and one publish per message."""
    naive = create_campaign(p.db, p.settings, TEMPLATE, name="naive")
    with p.db.session() as session:
        ids = list(session.scalars(select(OutgoingMessage.id).where(
            OutgoingMessage.campaign_id == naive.id).order_by(OutgoingMessage.id)))
    start = time.perf_counter()
    published = 0
    for message_id in ids:
        publish(SEND_MESSAGE, [naive.id, message_id, False], MESSAGES)
        published += 1
        if time.perf_counter() - start > window_s:
            break
    publish_s = time.perf_counter() - start
    sent = wait_sent(p.settings, naive.id, recipients, max(window_s - publish_s, 0))
    elapsed = time.perf_counter() - start
    return {"naive_msgs_per_s": round(sent / elapsed, 1), "naive_sent_in_window": sent,
            "naive_publish_per_s": round(published / publish_s, 1)}


def plain_celery_run(p: Pipeline, data_dir: Path, recipients: int, workers: int,
                     window_s: float) -> dict[str, Any]:
    """benchmarks/plain_celery_app.py in its own worker processes: --recipients tasks
    published one apply_async each, counted done by the gateway's received count."""
    env = {**os.environ, "PLAIN_CELERY_BROKER": p.redis_url,
           "PLAIN_CELERY_GATEWAY": p.gateway_url,
           "PYTHONPATH": os.pathsep.join([str(BENCHMARKS), os.environ.get("PYTHONPATH", "")])}
    concurrency = str(p.settings.worker_concurrency)
    app = plain_celery_app.app
    app.conf.broker_url = p.redis_url
    with ExitStack() as stack:
        for n in range(workers):
            stack.enter_context(started(
                [sys.executable, "-m", "celery", "-A", "plain_celery_app", "worker",
                 "--pool", "prefork", "--concurrency", concurrency,
                 "--queues", plain_celery_app.QUEUE, "--hostname", f"plain{n}@%h",
                 "--without-mingle", "--without-gossip", "--loglevel", "WARNING"],
                data_dir / f"plain-celery-{n}.log", env))
        wait_until(lambda: len(app.control.ping(timeout=1.0)) >= workers, 120,
                   "the plain Celery workers", interval_s=0.5)
        calls = [(f"+2547{i:07d}5", SAMPLE_BODY, "plain", f"plain-{i}")
                 for i in range(recipients)]
        received_before = p.gateway_stats()["received"]
        start = time.perf_counter()
        published = 0
        for call in calls:
            plain_celery_app.send.apply_async(args=call, queue=plain_celery_app.QUEUE)
            published += 1
            if time.perf_counter() - start > window_s:
                break
        publish_s = time.perf_counter() - start
        # Counted at least once: publishing alone may have used up the window.
        done = p.gateway_stats()["received"] - received_before
        while done < published and time.perf_counter() - start < window_s:
            time.sleep(0.2)
            done = p.gateway_stats()["received"] - received_before
        elapsed = time.perf_counter() - start
    app.close()
    return {"plain_celery_msgs_per_s": round(done / elapsed, 1),
            "plain_celery_done_in_window": done,
            "plain_celery_publish_per_s": round(published / publish_s, 1)}


def scenario(args: argparse.Namespace, latency_ms: int) -> dict[str, Any]:
    rate_limit = args.rate_limit_100ms if latency_ms >= 100 else None
    env = {"RELAYDESK_PACING_INDIVIDUAL_S": "0", "RELAYDESK_PACING_CHUNK_S": "0",
           "RELAYDESK_RATE_LIMIT": rate_limit or ""}
    plain_window = args.plain_window if args.plain_window is not None else args.naive_window
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="relaydesk-throughput-") as tmp, \
            pipeline(Path(tmp), recipients=args.recipients, latency_ms=latency_ms,
                     workers=args.workers, env=env, database_url=args.database_url) as p:
        result: dict[str, Any] = {
            "scenario": f"{latency_ms} ms gateway latency" + (
                f", rate limit {rate_limit}" if rate_limit else ""),
            "database": "postgresql" if args.database_url else "sqlite",
            "latency_ms": latency_ms, "recipients": args.recipients,
            "workers": args.workers, "worker_concurrency": p.settings.worker_concurrency,
            "send_concurrency_per_task": p.settings.send_concurrency,
            "rate_limit": rate_limit,
        }
        result.update(relaydesk_run(p, args.recipients))
        log(f"{latency_ms} ms: {result['sent']} sent in {result['elapsed_s']} s")
        if p.settings.rate_limit is not None:
            result["limit_fraction"] = round(
                result["msgs_per_s"] / p.settings.rate_limit.per_second, 3)
        if not args.skip_naive:
            result.update(naive_run(p, args.recipients, args.naive_window))
            log(f"naive: {result['naive_msgs_per_s']} msgs/s")
            if result["naive_msgs_per_s"]:  # none sent within the window: no ratio
                result["vs_naive"] = round(result["msgs_per_s"] / result["naive_msgs_per_s"], 2)
        # The plain baseline runs alone: RelayDesk's workers stop, and what the naive run
        # left queued goes.
        p.supervisor.stop()
        p.client.flushall()
        if not args.skip_plain:
            result.update(plain_celery_run(p, Path(tmp), args.recipients, args.workers,
                                           plain_window))
            log(f"plain Celery: {result['plain_celery_msgs_per_s']} msgs/s")
            result["vs_plain_celery"] = round(
                result["msgs_per_s"] / result["plain_celery_msgs_per_s"], 2)
    result.update({"load_average_before": load_before, "load_average_after": load_average(),
                   "cpus": os.cpu_count()})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--latencies", default="0,100")
    parser.add_argument("--rate-limit-100ms", default="200/s",
                        help="global rate limit for the 100 ms scenario")
    parser.add_argument("--database-url",
                        help="a PostgreSQL server to create each scenario's database on")
    parser.add_argument("--naive-window", type=float, default=120.0)
    parser.add_argument("--plain-window", type=float,
                        help="seconds for the plain Celery baseline (default: --naive-window)")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--skip-plain", action="store_true")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    stop_on_signals()
    if args.one is not None:  # a child run: one scenario, fresh process, fresh Celery app
        print(json.dumps(scenario(args, args.one)))
        return
    passed = ["--recipients", str(args.recipients), "--workers", str(args.workers),
              "--rate-limit-100ms", args.rate_limit_100ms,
              "--naive-window", str(args.naive_window)]
    passed += ["--database-url", args.database_url] if args.database_url else []
    passed += ["--plain-window", str(args.plain_window)] if args.plain_window else []
    passed += ["--skip-naive"] if args.skip_naive else []
    passed += ["--skip-plain"] if args.skip_plain else []
    results = []
    for latency in args.latencies.split(","):
        with subprocess.Popen([sys.executable, __file__, *passed, "--one", latency],
                              stdout=subprocess.PIPE, text=True) as child:
            try:
                out, _ = child.communicate()
            except BaseException:  # Stopped: the child stops what it started, then ends
                child.terminate()
                child.wait()
                raise
        if child.returncode:
            sys.exit(f"the {latency} ms scenario failed (exit status {child.returncode})")
        results.append(json.loads(out))
        log(json.dumps(results[-1]))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
