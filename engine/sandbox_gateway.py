"""The sandbox SMS gateway: a real HTTP server that behaves like a provider, for trying
RelayDesk without an SMS account and for tests.

``POST /messages`` with JSON ``{"to", "body", "campaign", "idempotency_key"}`` answers
``200 {"id", "status": "delivered"}``, ``200 {"status": "duplicate"}`` for an idempotency
key already delivered, ``422`` for an invalid number (permanent) or ``503`` (transient).
Numbers ending in 0001 fail permanently, 0002 fail twice then succeed, 0003 always fail
transiently, 0004 answer ``402`` (insufficient balance, account-level). ``--fail-rate``
adds seeded random transient failures. ``GET /stats`` and ``GET /messages`` report.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SEND_PATH = "/messages"


@dataclass
class GatewayState:
    latency_s: float = 0.0
    fail_rate: float = 0.0
    seed: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    received: int = 0
    failed: int = 0
    deduplicated: int = 0
    duplicates: int = 0
    delivered: list[dict[str, Any]] = field(default_factory=list)
    seen_keys: set[str] = field(default_factory=set)
    per_recipient: Counter[tuple[str, str]] = field(default_factory=Counter)
    attempts: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def handle_send(self, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        to = str(payload.get("to", ""))
        body = payload.get("body")
        if not to or not isinstance(body, str):
            return 400, {"error": "bad_request", "message": "'to' and 'body' are required"}
        key = str(payload.get("idempotency_key") or "")
        campaign = str(payload.get("campaign") or "")
        with self.lock:
            self.received += 1
            attempt_key = key or f"{campaign}:{to}"
            self.attempts[attempt_key] += 1
            attempt = self.attempts[attempt_key]
            if key and key in self.seen_keys:
                self.deduplicated += 1
                return 200, {"id": key, "status": "duplicate"}
            failure = self._failure(to, attempt)
            if failure:
                self.failed += 1
                return failure
            if key:
                self.seen_keys.add(key)
            self.per_recipient[(campaign, to)] += 1
            if self.per_recipient[(campaign, to)] > 1:
                self.duplicates += 1
            message_id = f"sbx-{len(self.delivered) + 1}"
            self.delivered.append({"id": message_id, "to": to, "body": body,
                                   "campaign": campaign, "idempotency_key": key,
                                   "at": time.time()})
        return 200, {"id": message_id, "status": "delivered"}

    def _failure(self, to: str, attempt: int) -> tuple[int, dict[str, Any]] | None:
        if to.endswith("0001"):
            return 422, {"error": "invalid_number", "message": f"{to} is not a valid number"}
        if to.endswith("0002") and attempt <= 2:
            return 503, {"error": "unavailable", "message": "temporarily unavailable"}
        if to.endswith("0003"):
            return 503, {"error": "unavailable", "message": "temporarily unavailable"}
        if to.endswith("0004"):
            return 402, {"error": "insufficient_balance", "message": "account balance is empty"}
        if self.fail_rate and self.rng.random() < self.fail_rate:
            return 503, {"error": "unavailable", "message": "random sandbox failure"}
        return None

    def stats(self) -> dict[str, int]:
        with self.lock:
            return {
                "received": self.received,
                "delivered": len(self.delivered),
                "unique_recipients": len({(m["campaign"], m["to"]) for m in self.delivered}),
                "duplicates": self.duplicates,
                "deduplicated": self.deduplicated,
                "failed": self.failed,
            }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse pooled connections
    server: GatewayServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request would swamp the terminal at thousands per second

    def _reply(self, status: int, data: Any) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        state = self.server.state
        if self.path == "/stats":
            self._reply(200, state.stats())
        elif self.path == SEND_PATH:
            with state.lock:
                self._reply(200, list(state.delivered))
        else:
            self._reply(404, {"error": "not_found"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path != SEND_PATH:
            self._reply(404, {"error": "not_found"})
            return
        try:
            payload = json.loads(raw)
            if not isinstance(payload, dict):
                raise ValueError("not an object")
        except ValueError:
            self._reply(400, {"error": "bad_request", "message": "body must be a JSON object"})
            return
        if self.server.state.latency_s:
            time.sleep(self.server.state.latency_s)
        status, data = self.server.state.handle_send(payload)
        self._reply(status, data)

    def do_DELETE(self) -> None:
        if self.path == SEND_PATH:  # reset, for benchmarks that reuse one gateway
            state = self.server.state
            fresh = GatewayState(state.latency_s, state.fail_rate, state.seed)
            self.server.state = fresh
            self._reply(200, {"reset": True})
        else:
            self._reply(404, {"error": "not_found"})


class GatewayServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, host: str, port: int, state: GatewayState) -> None:
        self.state = state
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


def start_gateway(host: str = "127.0.0.1", port: int = 0, *, latency_ms: float = 0,
                  fail_rate: float = 0, seed: int | None = None) -> GatewayServer:
    """Start the gateway on a background thread; ``server.shutdown()`` stops it."""
    server = GatewayServer(host, port, GatewayState(latency_ms / 1000, fail_rate, seed))
    threading.Thread(target=server.serve_forever, args=(0.1,), name="sandbox-gateway",
                     daemon=True).start()
    return server
