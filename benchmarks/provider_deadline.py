"""What the total deadline of a provider call costs; prints JSON.

The same calls (POST, small JSON answer) to a local HTTP server, first through a plain
urllib3 pool (per-receive timeouts only), then through RelayDesk's ProviderHttp (a watchdog
that can cut each call at its deadline), interleaved in rounds so that both see the same
machine load. The sink answers in one write with TCP_NODELAY, and its own cost is measured
alone (``sink_us``: server CPU per request) so that the ratio measures the client.

Usage: python benchmarks/provider_deadline.py [--calls 3000] [--threads 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import urllib3

from engine.providers.http_client import ProviderHttp

ANSWER = b'{"id": "m1"}'
SERVER_CPU = [0.0]


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        started = time.thread_time()
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(ANSWER), ANSWER))
        SERVER_CPU[0] += time.thread_time() - started


def rate(call: Callable[[], Any], calls: int, threads: int) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(lambda _: call(), range(calls)):
            pass
    return calls / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/send"
    body = b'{"to": "+254712345678", "message": "hello"}'
    plain = urllib3.PoolManager(maxsize=args.threads, block=True, retries=False,
                                timeout=urllib3.Timeout(connect=5.0, read=15.0))
    guarded = ProviderHttp(15.0, args.threads)
    clients: dict[str, Callable[[], Any]] = {
        "plain": lambda: plain.request("POST", url, body=body),
        "deadline": lambda: guarded.request("POST", url, body=body),
    }
    for call in clients.values():  # warm the pools
        rate(call, args.threads * 4, args.threads)
    results: dict[str, list[float]] = {name: [] for name in clients}
    SERVER_CPU[0] = 0.0
    for _ in range(args.rounds):
        for name, call in clients.items():
            results[name].append(rate(call, args.calls, args.threads))
    served = args.rounds * args.calls * len(clients)
    best = {name: max(values) for name, values in results.items()}
    print(json.dumps({
        "calls_per_round": args.calls, "threads": args.threads, "rounds": args.rounds,
        "requests_per_s": {name: round(value) for name, value in best.items()},
        "deadline_vs_plain": round(best["deadline"] / best["plain"], 3),
        "sink_us": round(SERVER_CPU[0] / served * 1e6, 1),
    }, indent=2))
    server.shutdown()


if __name__ == "__main__":
    main()
