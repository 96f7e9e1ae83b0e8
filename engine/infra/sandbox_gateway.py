"""The sandbox SMS gateway: a real HTTP server that behaves like a provider, for trying
RelayDesk without an SMS account and for tests.

``POST /messages`` with JSON ``{"to", "body", "campaign", "idempotency_key"}`` answers
``200 {"id", "status": "delivered"}``, ``200 {"status": "duplicate"}`` for an idempotency
key already delivered, ``422`` for an invalid number (permanent) or ``503`` (transient).
Numbers ending in 0001 fail permanently, 0002 fail twice then succeed, 0003 always fail
transiently, 0004 answer ``402`` (insufficient balance, account-level), 0006 answer
``422 {"error": "opted_out"}`` as for a recipient who unsubscribed (as Twilio's 21610 or
Africa's Talking's UserInBlacklist: the number goes on the opt-out list). ``--fail-rate``
adds seeded random transient failures. ``GET /stats`` and ``GET /messages`` report.

It has no authentication, so it stays on this machine: it listens on loopback only and
answers only requests addressed to a loopback name with its own port (a web page cannot
reach it by DNS rebinding). A request body above MAX_BODY_BYTES is refused (413) before
it is read, and its record of delivered messages is bounded in memory: counts stay exact,
``GET /messages`` lists the latest messages up to MAX_RECORDED / MAX_RECORDED_BYTES, and
``GET /stats`` says how many older ones it forgot.
"""

from __future__ import annotations

import ipaddress
import json
import random
import socket
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, TypeVar

from engine.infra.local_gateway import GatewayUnavailable

SEND_PATH = "/messages"
OPTED_OUT_ERROR = "opted_out"  # the answer for a recipient who unsubscribed (0006)
MAX_BODY_BYTES = 64 * 1024  # one send is well under 2 KB of JSON
# What the gateway remembers: the latest delivered messages with their text (for
# GET /messages; a selftest or a test campaign reads far fewer), and per idempotency key
# and per recipient the counts behind dedupe and duplicate detection. Each is bounded:
# measured, the process holds about 190 MB at these limits (1,000,000 sends of 150
# characters) and no more however many follow, or however large the bodies.
MAX_RECORDED = 100_000
MAX_RECORDED_BYTES = 64 * 1024 * 1024
MAX_TRACKED = 200_000  # twice the largest benchmark campaign (100,000)
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
# The test numbers that fail the same way every time, by their last four digits.
_FIXED_ANSWERS: dict[str, tuple[int, dict[str, str]]] = {
    "0003": (503, {"error": "unavailable", "message": "temporarily unavailable"}),
    "0004": (402, {"error": "insufficient_balance", "message": "account balance is empty"}),
    # Not 0005: many tests' generated numbers end in 5 and expect to be delivered.
    "0006": (422, {"error": OPTED_OUT_ERROR,
                   "message": "the recipient unsubscribed from this sender"}),
}

_K = TypeVar("_K", bound=Hashable)


class GatewayHostError(GatewayUnavailable):
    """The gateway was asked to listen beyond this machine."""


class _BoundedCounter(Generic[_K]):
    """Counts per key for the latest MAX_TRACKED keys: the oldest key is forgotten first."""

    def __init__(self) -> None:
        self.counts: OrderedDict[_K, int] = OrderedDict()
        self.forgotten = 0

    def __contains__(self, key: _K) -> bool:
        return key in self.counts

    def __len__(self) -> int:
        return len(self.counts)

    def add(self, key: _K) -> int:
        count = self.counts.get(key, 0) + 1
        self.counts[key] = count
        if len(self.counts) > MAX_TRACKED:
            self.counts.popitem(last=False)
            self.forgotten += 1
        return count


def _record_size(record: dict[str, Any]) -> int:
    return 200 + sum(len(v) for v in record.values() if isinstance(v, str))


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
    delivered_count: int = 0
    delivered: deque[dict[str, Any]] = field(default_factory=deque)  # the latest, bounded
    recorded_bytes: int = 0
    forgotten: int = 0  # delivered messages dropped from ``delivered`` to bound memory
    seen_keys: _BoundedCounter[str] = field(default_factory=_BoundedCounter)
    per_recipient: _BoundedCounter[tuple[str, str]] = field(default_factory=_BoundedCounter)
    attempts: _BoundedCounter[str] = field(default_factory=_BoundedCounter)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def _record(self, record: dict[str, Any]) -> None:
        self.delivered.append(record)
        self.recorded_bytes += _record_size(record)
        while len(self.delivered) > MAX_RECORDED or self.recorded_bytes > MAX_RECORDED_BYTES:
            self.recorded_bytes -= _record_size(self.delivered.popleft())
            self.forgotten += 1

    def handle_send(self, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        to = str(payload.get("to", ""))
        body = payload.get("body")
        if not to or not isinstance(body, str):
            return 400, {"error": "bad_request", "message": "'to' and 'body' are required"}
        key = str(payload.get("idempotency_key") or "")
        campaign = str(payload.get("campaign") or "")
        with self.lock:
            self.received += 1
            attempt = self.attempts.add(key or f"{campaign}:{to}")
            if key and key in self.seen_keys:
                self.deduplicated += 1
                return 200, {"id": key, "status": "duplicate"}
            failure = self._failure(to, attempt)
            if failure:
                self.failed += 1
                return failure
            if key:
                self.seen_keys.add(key)
            if self.per_recipient.add((campaign, to)) > 1:
                self.duplicates += 1
            self.delivered_count += 1
            message_id = f"sbx-{self.delivered_count}"
            self._record({"id": message_id, "to": to, "body": body, "campaign": campaign,
                          "idempotency_key": key, "at": time.time()})
        return 200, {"id": message_id, "status": "delivered"}

    def _failure(self, to: str, attempt: int) -> tuple[int, dict[str, Any]] | None:
        if to.endswith("0001"):
            return 422, {"error": "invalid_number", "message": f"{to} is not a valid number"}
        if to.endswith("0002") and attempt <= 2:
            return 503, {"error": "unavailable", "message": "temporarily unavailable"}
        fixed = _FIXED_ANSWERS.get(to[-4:])
        if fixed:
            status, answer = fixed
            return status, dict(answer)
        if self.fail_rate and self.rng.random() < self.fail_rate:
            return 503, {"error": "unavailable", "message": "random sandbox failure"}
        return None

    def stats(self) -> dict[str, int]:
        with self.lock:
            return {
                "received": self.received,
                "delivered": self.delivered_count,
                "unique_recipients": len(self.per_recipient),
                "duplicates": self.duplicates,
                "deduplicated": self.deduplicated,
                "failed": self.failed,
            }

    def memory_stats(self) -> dict[str, int]:
        """How much of its history the gateway still holds: ``forgotten`` messages are
        no longer in GET /messages, ``*_forgotten`` keys no longer count for dedupe or
        duplicates (all 0 unless more than the limits went through one gateway)."""
        with self.lock:
            return {
                "recorded": len(self.delivered),
                "forgotten": self.forgotten,
                "keys_forgotten": self.seen_keys.forgotten + self.attempts.forgotten,
                "recipients_forgotten": self.per_recipient.forgotten,
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
        if self.close_connection:  # e.g. a body left unread: the stream is out of step
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _host_allowed(self) -> bool:
        """Only requests addressed to this gateway on a loopback name: another name (a web
        page's host resolving to 127.0.0.1) is refused."""
        host = (self.headers.get("Host") or "").strip().lower()
        return host in self.server.allowed_hosts

    def _refuse_host(self) -> None:
        self.close_connection = True
        self._reply(421, {"error": "misdirected_request",
                          "message": "the sandbox gateway answers only requests addressed "
                                     f"to {self.server.url}"})

    def do_GET(self) -> None:
        if not self._host_allowed():
            self._refuse_host()
            return
        state = self.server.state
        if self.path == "/stats":
            self._reply(200, {**state.stats(), **state.memory_stats()})
        elif self.path == SEND_PATH:
            with state.lock:
                self._reply(200, list(state.delivered))
        else:
            self._reply(404, {"error": "not_found"})

    def _body(self) -> bytes | None:
        """The request body, or None once an error answer was sent: no Content-Length (or a
        chunked body), an invalid one, or one above MAX_BODY_BYTES, refused unread."""
        length_text = self.headers.get("Content-Length")
        if length_text is None or self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            self._reply(411, {"error": "length_required",
                              "message": "send the body with a Content-Length header"})
            return None
        if not length_text.strip().isdigit():
            self.close_connection = True
            self._reply(400, {"error": "bad_request", "message": "invalid Content-Length"})
            return None
        length = int(length_text)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._reply(413, {"error": "too_large",
                              "message": f"the body is {length} bytes; at most "
                                         f"{MAX_BODY_BYTES} are accepted"})
            return None
        return self.rfile.read(length)

    def do_POST(self) -> None:
        if not self._host_allowed():
            self._refuse_host()
            return
        raw = self._body()
        if raw is None:
            return
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
        if not self._host_allowed():
            self._refuse_host()
            return
        if self.path == SEND_PATH:  # reset, for benchmarks that reuse one gateway
            state = self.server.state
            fresh = GatewayState(state.latency_s, state.fail_rate, state.seed)
            self.server.state = fresh
            self._reply(200, {"reset": True})
        else:
            self._reply(404, {"error": "not_found"})


def _check_loopback(host: str) -> None:
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise GatewayHostError(
            f"the sandbox gateway listens on this machine only (127.0.0.1, ::1 or localhost), "
            f"not on {host!r}: it has no authentication. Point workers elsewhere at a real "
            "provider instead.")


class GatewayServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, host: str, port: int, state: GatewayState) -> None:
        _check_loopback(host)
        self.state = state
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), _Handler)
        bound = self.server_address[1]
        names = {*LOOPBACK_NAMES, f"[{host}]" if ":" in host else host}
        self.allowed_hosts = frozenset(f"{name}:{bound}" for name in names) | (
            frozenset(names) if bound == 80 else frozenset())

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        text = host if isinstance(host, str) else host.decode()
        return f"http://[{text}]:{port}" if ":" in text else f"http://{text}:{port}"


def start_gateway(host: str = "127.0.0.1", port: int = 0, *, latency_ms: float = 0,
                  fail_rate: float = 0, seed: int | None = None) -> GatewayServer:
    """Start the gateway on a background thread; ``server.shutdown()`` stops it."""
    server = GatewayServer(host, port, GatewayState(latency_ms / 1000, fail_rate, seed))
    threading.Thread(target=server.serve_forever, args=(0.1,), name="sandbox-gateway",
                     daemon=True).start()
    return server
