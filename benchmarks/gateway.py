"""The instruments alone: the sandbox gateway and the callback receiver; prints JSON.

Every pipeline benchmark measures the sandbox gateway too, so it must answer at once: at
`--latency-ms 0` it once took ~44 ms per request (headers and body as two TCP segments
without TCP_NODELAY: Nagle waited for the client's delayed ACK). Measured here, each server
as its own process, as RelayDesk runs it:

- gateway.sequential: `relaydesk gateway --port P --latency-ms 0`; --sequential sends
  (POST /messages with the body the sandbox provider sends, each its own idempotency key)
  one after another on ONE keep-alive connection (urllib3, the workers' client), after
  --warmup unmeasured ones: median_ms and p95_ms. Target: median < 2 ms.
- gateway.load: --clients client processes with --connections keep-alive connections each
  (a thread per connection), --load-requests sends in all, starting together: the
  gateway's requests_per_s, and its process's CPU time over the run (psutil, user +
  system) divided by the requests it counted (GET /stats): cpu_ms_per_request.
  Target: <= 0.25 ms.
- receiver.sequential: `relaydesk receiver` with the data dir's embedded Redis;
  GET /health, then sandbox delivery reports POSTed to /callbacks/sandbox/{token}/delivery
  (each pushed to Redis before the answer), one after another on one keep-alive
  connection: median_ms and p95_ms. Target: median < 2 ms.

Usage: python benchmarks/gateway.py [--sequential 2000] [--clients 2] [--connections 8]
           [--load-requests 20000] [--skip-receiver]
Everything it starts is stopped when it ends, also on failure or Ctrl+C.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import urllib3
from _pipeline_bench import (
    SAMPLE_BODY,
    answers,
    cpu_seconds,
    load_average,
    log,
    relaydesk,
    started,
    stop_on_signals,
    wait_until,
)

from engine.config.callback_token import callback_token
from engine.config.settings import load_settings
from engine.infra.embedded_redis import EmbeddedRedis, free_port

JSON_HEADERS = {"Content-Type": "application/json"}


def send_body(tag: str, n: int) -> bytes:
    """What SandboxProvider.send posts, a distinct number and idempotency key for each n."""
    return json.dumps({"to": f"+2547{n % 10**7:07d}5", "body": SAMPLE_BODY, "campaign": "1",
                       "idempotency_key": f"bench-{tag}-{n}"}).encode()


def sequential(port: int, requests: Sequence[tuple[str, str, bytes | None]], warmup: int
               ) -> dict[str, Any]:
    """The requests one after another on one keep-alive connection; each answer must be 200."""
    pool = urllib3.HTTPConnectionPool("127.0.0.1", port, maxsize=1, block=True,
                                      retries=False, timeout=10.0)
    times = []
    for i, (method, path, body) in enumerate(requests):
        start = time.perf_counter()
        response = pool.request(method, path, body=body, headers=JSON_HEADERS)
        elapsed = time.perf_counter() - start
        if response.status != 200:
            raise RuntimeError(f"{method} {path.split('/')[1]} answered {response.status}")
        if i >= warmup:
            times.append(elapsed)
    connections = pool.num_connections
    pool.close()
    times.sort()
    return {
        "requests": len(times),
        "connections_opened": connections,  # 1: every request reused one connection
        "median_ms": round(1000 * statistics.median(times), 3),
        "p95_ms": round(1000 * times[int(0.95 * (len(times) - 1))], 3),
        "max_ms": round(1000 * times[-1], 3),
    }


# --- the gateway under load from separate processes ---------------------------------------

def load_client(port: int, tag: str, connections: int, per_connection: int, ready: Any,
                go: Any, results: Any) -> None:
    """One client process: ``connections`` threads, each sending on its own connection."""
    pool = urllib3.HTTPConnectionPool("127.0.0.1", port, maxsize=connections, block=True,
                                      retries=False, timeout=30.0)
    counts = {"ok": 0, "failed": 0}
    lock = threading.Lock()

    def sender(index: int) -> None:
        ok = failed = 0
        for n in range(per_connection):
            body = send_body(f"{tag}-{index}", n)
            try:
                status = pool.request("POST", "/messages", body=body,
                                      headers=JSON_HEADERS).status
            except urllib3.exceptions.HTTPError:
                status = 0
            ok, failed = (ok + 1, failed) if status == 200 else (ok, failed + 1)
        with lock:
            counts["ok"] += ok
            counts["failed"] += failed

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(connections)]
    pool.urlopen("GET", "/stats")  # connected before the start
    ready.release()
    go.wait()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put((counts["ok"], counts["failed"], time.monotonic()))


def gateway_stats(port: int) -> dict[str, int]:
    response = urllib3.request("GET", f"http://127.0.0.1:{port}/stats", retries=False)
    stats: dict[str, int] = response.json()
    return stats


def load(port: int, pid: int, clients: int, connections: int, total: int) -> dict[str, Any]:
    spawn = multiprocessing.get_context("spawn")
    ready, go, results = spawn.Semaphore(0), spawn.Event(), spawn.Queue()
    per_connection = max(total // (clients * connections), 1)
    processes = [spawn.Process(target=load_client, daemon=True,
                               args=(port, f"load{c}", connections, per_connection, ready, go,
                                     results))
                 for c in range(clients)]
    for process in processes:
        process.start()
    try:
        for _ in processes:
            if not ready.acquire(timeout=60):
                raise RuntimeError("a client process did not start")
        received_before = gateway_stats(port)["received"]
        cpu_before = cpu_seconds(pid)
        start = time.monotonic()
        go.set()
        answers_ = [results.get(timeout=600) for _ in processes]
        cpu = cpu_seconds(pid) - cpu_before
        elapsed = max(t for _, _, t in answers_) - start
        received = gateway_stats(port)["received"] - received_before
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
            process.join(10)
    return {
        "clients": clients,
        "connections_per_client": connections,
        "requests": received,
        "failed": sum(f for _, f, _ in answers_),
        "elapsed_s": round(elapsed, 2),
        "requests_per_s": round(received / elapsed, 1),
        "gateway_cpu_s": round(cpu, 2),
        "gateway_cpu_ms_per_request": round(1000 * cpu / max(received, 1), 4),
        "gateway_cpu_fraction": round(cpu / elapsed, 2),  # of one core
    }


def measure_gateway(data_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    command = relaydesk("gateway", "--port", str(port), "--latency-ms", "0")
    with started(command, data_dir / "gateway.log") as gateway:
        wait_until(lambda: answers(port, "/stats"), 60, "the gateway")
        requests = [("POST", "/messages", send_body("seq", n))
                    for n in range(args.sequential + args.warmup)]
        result = {"sequential": sequential(port, requests, args.warmup)}
        log(f"gateway sequential: {result['sequential']}")
        result["load"] = load(port, gateway.pid, args.clients, args.connections,
                              args.load_requests)
        log(f"gateway load: {result['load']}")
    return result


def measure_receiver(data_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    redis_server = EmbeddedRedis(data_dir / "redis")
    redis_process, _ = redis_server.start()
    try:
        port = free_port()
        with started(relaydesk("receiver", "--port", str(port)), data_dir / "receiver.log"):
            wait_until(lambda: answers(port, "/health"), 60, "the receiver")
            health = [("GET", "/health", None)] * (args.sequential + args.warmup)
            path = f"/callbacks/sandbox/{callback_token(load_settings())}/delivery"
            reports = [("POST", path, json.dumps({"id": f"sbx-bench-{n}",
                                                  "status": "delivered"}).encode())
                       for n in range(args.sequential + args.warmup)]
            result = {"health": sequential(port, health, args.warmup),
                      "delivery_report": sequential(port, reports, args.warmup)}
            log(f"receiver: {result}")
            return result
    finally:
        redis_server.stop()
        if redis_process is not None:
            redis_process.wait(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequential", type=int, default=2000,
                        help="measured requests on one connection")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--clients", type=int, default=2, help="client processes under load")
    parser.add_argument("--connections", type=int, default=8, help="connections per client")
    parser.add_argument("--load-requests", type=int, default=20_000)
    parser.add_argument("--skip-receiver", action="store_true")
    args = parser.parse_args()
    stop_on_signals()
    with tempfile.TemporaryDirectory(prefix="relaydesk-gateway-bench-") as tmp:
        data_dir = Path(tmp)
        for name in [n for n in os.environ if n.startswith("RELAYDESK_")]:
            del os.environ[name]
        os.environ.update({"RELAYDESK_DATA_DIR": str(data_dir),
                           "RELAYDESK_CONFIG_FILE": str(data_dir / "config.toml")})
        load_before = load_average()
        gateway = measure_gateway(data_dir, args)
        receiver = None if args.skip_receiver else measure_receiver(data_dir, args)
    sequential_ms = gateway["sequential"]["median_ms"]
    cpu_ms = gateway["load"]["gateway_cpu_ms_per_request"]
    result: dict[str, Any] = {
        "gateway_median_ms": sequential_ms,
        "gateway_p95_ms": gateway["sequential"]["p95_ms"],
        "gateway_median_target_met": sequential_ms < 2.0,
        "gateway_cpu_ms_per_request": cpu_ms,
        "gateway_cpu_target_met": cpu_ms <= 0.25,
        "gateway_requests_per_s": gateway["load"]["requests_per_s"],
        "gateway": gateway,
    }
    if receiver is not None:
        report_ms = receiver["delivery_report"]["median_ms"]
        result.update({"receiver_report_median_ms": report_ms,
                       "receiver_report_p95_ms": receiver["delivery_report"]["p95_ms"],
                       "receiver_median_target_met": report_ms < 2.0
                       and receiver["health"]["median_ms"] < 2.0,
                       "receiver": receiver})
    result.update({"load_average_before": load_before, "load_average_after": load_average(),
                   "cpus": os.cpu_count()})
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
