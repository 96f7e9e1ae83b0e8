"""Worker memory over a long run: does a worker's memory grow with the messages it sends?
Prints JSON.

One pipeline as benchmarks/throughput.py builds it (a fresh data dir and Redis, SQLite or
with --database-url a new PostgreSQL database, the sandbox gateway at 0 ms latency as its
own process, --workers workers as `relaydesk supervise` starts them, pacing 0), then
--messages messages sent as campaigns of --campaign-size recipients, one after another.

Child recycling is off, so growth cannot hide: neither RelayDesk's worker command nor its
Celery configuration sets --max-tasks-per-child or --max-memory-per-child (Celery's
default: a pool process lives as long as its worker), no worker autoscales, and nothing
restarts a worker here. The run checks it: `pool_processes_replaced` counts pool processes
that were not there at the start (0 expected).

Every 0.5 s each worker's resident memory is sampled, the worker process and its pool
processes summed; for each --window messages sent, the peak per worker. growth_pct =
(peak in the last window - peak in the first) / peak in the first * 100, for the largest
worker (and per worker). Target: < 10 % over 1,000,000 messages.

Usage: python benchmarks/soak.py [--messages 1000000] [--campaign-size 100000]
           [--window 100000] [--workers 2] [--database-url URL]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from _pipeline_bench import (
    TEMPLATE,
    Pipeline,
    RssSampler,
    count_sent,
    load_average,
    log,
    pipeline,
    stop_on_signals,
    tree,
)

from engine.operations.campaigns import send_campaign

STALL_S = 300.0  # nothing sent for this long: the pipeline is broken, the run ends


def pool_pids(p: Pipeline) -> set[int]:
    return {process.pid for pid in p.worker_pids for process in tree(pid)[1:]}


def growth(first: float, last: float) -> float:
    return round((last - first) / first * 100, 1)


def soak(p: Pipeline, args: argparse.Namespace) -> dict[str, Any]:
    """Send the campaigns one after another; one window of peaks per --window sent."""
    pools_at_start = pool_pids(p)
    seen_pools = set(pools_at_start)
    sampler = RssSampler(p.worker_pids)
    sampler.start()
    windows: list[dict[str, Any]] = []
    start = window_start = time.monotonic()
    done = 0  # sent by the campaigns already finished
    for number in range(args.messages // args.campaign_size):
        created = send_campaign(p.db, p.client, p.settings, TEMPLATE, name=f"soak {number}")
        sent, progress_at = 0, time.monotonic()
        while sent < args.campaign_size:
            time.sleep(0.5)
            seen_pools |= pool_pids(p)
            now_sent = count_sent(p.settings, created.id)
            if now_sent > sent:
                sent, progress_at = now_sent, time.monotonic()
            elif time.monotonic() - progress_at > STALL_S:
                raise RuntimeError(f"nothing sent for {STALL_S:g} s (campaign {number}: "
                                   f"{sent} of {args.campaign_size})")
            while done + sent >= (len(windows) + 1) * args.window:
                now = time.monotonic()
                peaks = sampler.take_window()
                windows.append({"sent": (len(windows) + 1) * args.window,
                                "peak_rss_mb": max(peaks), "worker_peak_rss_mb": peaks,
                                "msgs_per_s": round(args.window / (now - window_start), 1)})
                window_start = now
                log(json.dumps(windows[-1]))
        done += sent
    elapsed = time.monotonic() - start
    sampler.stop()
    first, last = windows[0], windows[-1]
    per_worker = [growth(a, b) for a, b in zip(first["worker_peak_rss_mb"],
                                                last["worker_peak_rss_mb"], strict=True)]
    return {
        "messages": done, "elapsed_s": round(elapsed, 1),
        "msgs_per_s": round(done / elapsed, 1),
        "growth_pct": growth(first["peak_rss_mb"], last["peak_rss_mb"]),
        "growth_pct_per_worker": per_worker,
        "target_met": growth(first["peak_rss_mb"], last["peak_rss_mb"]) < 10,
        "first_window_peak_rss_mb": first["peak_rss_mb"],
        "last_window_peak_rss_mb": last["peak_rss_mb"],
        "pool_processes_replaced": len(seen_pools - pools_at_start),
        "worker_restarts": p.supervisor.restarts,
        "windows": windows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--campaign-size", type=int, default=100_000)
    parser.add_argument("--window", type=int, default=100_000,
                        help="messages per memory window")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--database-url",
                        help="a PostgreSQL server to create the run's database on")
    args = parser.parse_args()
    if args.messages % args.campaign_size or args.messages < args.window:
        parser.error("--messages must be a multiple of --campaign-size and at least --window")
    stop_on_signals()
    env = {"RELAYDESK_PACING_INDIVIDUAL_S": "0", "RELAYDESK_PACING_CHUNK_S": "0",
           "RELAYDESK_RATE_LIMIT": ""}
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="relaydesk-soak-") as tmp, \
            pipeline(Path(tmp), recipients=args.campaign_size, latency_ms=0,
                     workers=args.workers, env=env, database_url=args.database_url) as p:
        result = {"database": "postgresql" if args.database_url else "sqlite",
                  "workers": args.workers, "worker_concurrency": p.settings.worker_concurrency,
                  "campaign_size": args.campaign_size, "window": args.window,
                  **soak(p, args)}
    result.update({"load_average_before": load_before, "load_average_after": load_average(),
                   "cpus": os.cpu_count()})
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
