"""The sandbox SMS gateway: a real HTTP server that behaves like a provider, for trying
RelayDesk without an SMS account and for tests.

``POST /messages`` with JSON ``{"to", "body", "campaign", "idempotency_key"}`` answers
``200 {"id", "status": "delivered"}`` (accepted), ``200 {"id", "status": "duplicate"}``
with the first send's id for an idempotency key already accepted, ``422`` for an invalid
number (permanent) or ``503`` (transient). Numbers ending in 0001 fail permanently, 0002
fail twice then succeed, 0003 always fail transiently, 0004 answer ``402`` (insufficient
balance, account-level), 0008 answer ``422 {"error": "opted_out"}`` as for a recipient who
unsubscribed (as Twilio's 21610 or Africa's Talking's UserInBlacklist: the number goes on
the opt-out list). ``--fail-rate`` adds seeded random transient failures. ``GET /stats``
and ``GET /messages`` report. Provider ids (``sbx-<run>-<n>``, the run random per gateway)
never repeat across restarts: delivery reports are matched by them.

With a receiver (``reports_url`` and the callback token) it also plays the network's part:
each accepted message gets a delivery report POSTed to
``{reports_url}/callbacks/sandbox/{token}/delivery`` after ``report_delay_ms`` —
``{"id", "status": "delivered"}``, or for numbers ending 0006 ``{"id", "status":
"undelivered", "reason": "absent subscriber"}``; numbers ending 0007 never get one, as on
networks that do not report. ``POST /inbound`` with ``{"from", "text"}`` forwards a
member's reply to ``.../inbound``. Reports wait in a bounded queue (a full one drops and
counts them) and are posted by a few threads over one reused connection pool, retried with
backoff while the receiver is starting; ``GET /stats`` counts them.

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
import logging
import queue
import random
import secrets
import socket
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

import urllib3

from engine.infra.local_gateway import GatewayUnavailable

log = logging.getLogger(__name__)

SEND_PATH = "/messages"
INBOUND_PATH = "/inbound"
OPTED_OUT_ERROR = "opted_out"  # the answer for a recipient who unsubscribed (0008)
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
    "0008": (422, {"error": OPTED_OUT_ERROR,
                   "message": "the recipient unsubscribed from this sender"}),
}
# Accepted numbers whose delivery report says otherwise, by their last four digits.
UNDELIVERED_ENDING = "0006"  # reported undelivered
UNDELIVERED_REASON = "absent subscriber"
NEVER_REPORTED_ENDING = "0007"  # never reported, as on networks that send no reports
# Delivery reports: the delay a network takes, how many may wait (about 300 bytes each: a
# receiver that is down for long makes the gateway drop reports, never grow), how many
# threads post them, and how hard each is tried while the receiver is starting or busy.
REPORT_DELAY_MS = 1000
MAX_PENDING_REPORTS = 50_000
REPORT_THREADS = 4
REPORT_ATTEMPTS = 5
REPORT_BACKOFF_S = 0.2  # then 0.4, 0.8, 1.6 s: about 3 s in all

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


class _BoundedIds:
    """The provider id given per idempotency key, for the latest MAX_TRACKED keys: a send
    repeated with the same key is answered with the first one's id (its report has it)."""

    def __init__(self) -> None:
        self.ids: OrderedDict[str, str] = OrderedDict()
        self.forgotten = 0

    def get(self, key: str) -> str | None:
        return self.ids.get(key)

    def add(self, key: str, message_id: str) -> None:
        self.ids[key] = message_id
        if len(self.ids) > MAX_TRACKED:
            self.ids.popitem(last=False)
            self.forgotten += 1


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
    seen_keys: _BoundedIds = field(default_factory=_BoundedIds)
    per_recipient: _BoundedCounter[tuple[str, str]] = field(default_factory=_BoundedCounter)
    attempts: _BoundedCounter[str] = field(default_factory=_BoundedCounter)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        # Part of every provider id: another run of the gateway (or a reset) never gives
        # an id an earlier run gave, so a late report cannot land on the wrong message.
        self.run = secrets.token_hex(4)
        self.inbound_count = 0

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
            first_id = self.seen_keys.get(key) if key else None
            if first_id is not None:
                self.deduplicated += 1
                return 200, {"id": first_id, "status": "duplicate"}
            failure = self._failure(to, attempt)
            if failure:
                self.failed += 1
                return failure
            if self.per_recipient.add((campaign, to)) > 1:
                self.duplicates += 1
            self.delivered_count += 1
            message_id = f"sbx-{self.run}-{self.delivered_count}"
            if key:
                self.seen_keys.add(key, message_id)
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

    def inbound_id(self) -> str:
        """A provider id for a forwarded reply, unique like the message ids."""
        with self.lock:
            self.inbound_count += 1
            return f"sbx-in-{self.run}-{self.inbound_count}"

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


def delivery_report(message_id: str, to: str) -> dict[str, str] | None:
    """The report the network sends for an accepted message; None: it never reports."""
    if to.endswith(NEVER_REPORTED_ENDING):
        return None
    if to.endswith(UNDELIVERED_ENDING):
        return {"id": message_id, "status": "undelivered", "reason": UNDELIVERED_REASON}
    return {"id": message_id, "status": "delivered"}


class ReportsUrlError(GatewayUnavailable):
    """--reports-url is not the base URL of a receiver."""


@dataclass(frozen=True)
class ReportTarget:
    """Where reports go: the receiver's base URL and the callback token of its data dir
    (a secret: it is in the URLs below, so they are never logged)."""

    base_url: str
    token: str = field(repr=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or \
                parts.path.strip("/") or parts.query:
            raise ReportsUrlError(
                f"--reports-url must be the receiver's base URL, such as "
                f"http://127.0.0.1:8026, not {self.base_url!r}")
        if not self.token:
            raise ReportsUrlError("reports need the callback token of the receiver's data dir")
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))

    def url(self, kind: str) -> str:
        """``kind``: delivery or inbound."""
        return f"{self.base_url}/callbacks/sandbox/{self.token}/{kind}"


class ReportPoster:
    """Posts delivery reports to the receiver, each once its delay has passed, from
    REPORT_THREADS daemon threads over one reused connection pool, and forwards replies.

    At most MAX_PENDING_REPORTS (read when the poster is made) wait, counting those a
    thread holds until due or is posting: when the receiver falls behind or is down,
    reports beyond that are dropped and counted, never held in growing memory. Sends only
    wait for ``schedule``, never for a post."""

    def __init__(self, target: ReportTarget, delay_s: float) -> None:
        self.target = target
        self.delay_s = delay_s
        self._limit = MAX_PENDING_REPORTS
        # Unbounded as a queue: ``_waiting`` bounds it (and what the threads hold).
        self._pending: queue.Queue[tuple[float, dict[str, str]] | None] = queue.Queue()
        self._waiting = 0
        # retries=False: a failed post is retried below, with a backoff of our own.
        self._http = urllib3.PoolManager(
            maxsize=REPORT_THREADS, retries=False,
            timeout=urllib3.Timeout(connect=2.0, read=10.0))
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self.posted = self.failed = self.dropped = 0
        self._failing = False  # a run of failures is logged once, at its start
        self._threads = [threading.Thread(target=self._run, name=f"sandbox-reports-{i}",
                                          daemon=True) for i in range(REPORT_THREADS)]
        for thread in self._threads:
            thread.start()

    def schedule(self, report: dict[str, str]) -> None:
        with self._lock:
            if self._waiting >= self._limit:
                self.dropped += 1
                return
            self._waiting += 1
        self._pending.put((time.monotonic() + self.delay_s, report))

    def forward_inbound(self, reply: dict[str, str]) -> int | None:
        """POST one reply to the receiver, once: its status, or None when unreachable (the
        caller answers its own client, who may try again)."""
        return self._post(self.target.url("inbound"), reply)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"reports_pending": self._waiting, "reports_posted": self.posted,
                    "reports_failed": self.failed, "reports_dropped": self.dropped}

    def reset_counts(self) -> None:
        with self._lock:
            self.posted = self.failed = self.dropped = 0

    def stop(self) -> None:
        """Stop posting; reports still waiting are dropped with the process."""
        self._stopping.set()
        for _ in self._threads:  # wake threads waiting for work; busy ones see the flag
            self._pending.put(None)
        for thread in self._threads:
            thread.join(5.0)
        self._http.clear()

    def _run(self) -> None:
        while not self._stopping.is_set():
            item = self._pending.get()
            if item is None:
                continue
            due, report = item
            if self._stopping.wait(max(due - time.monotonic(), 0.0)):
                return
            self._count(self._deliver(report))

    def _deliver(self, report: dict[str, str]) -> int | None:
        """Post one report, retrying while the receiver is unreachable or busy; the last
        answer's status (None: no answer)."""
        url = self.target.url("delivery")
        for attempt in range(REPORT_ATTEMPTS):
            status = self._post(url, report)
            if status is not None and (status < 500 and status != 429):
                return status  # taken, or refused (a wrong token): trying again changes nothing
            if attempt + 1 < REPORT_ATTEMPTS and \
                    self._stopping.wait(REPORT_BACKOFF_S * 2 ** attempt):
                break
        return status

    def _post(self, url: str, payload: dict[str, str]) -> int | None:
        try:
            response = self._http.request("POST", url, body=json.dumps(payload).encode(),
                                          headers={"Content-Type": "application/json"})
        except urllib3.exceptions.HTTPError:
            return None  # its text names the URL, which holds the token: not logged
        return response.status

    def _count(self, status: int | None) -> None:
        """One report done: counted as posted or failed, and no longer waiting (in one step,
        so GET /stats never shows it in both or neither)."""
        ok = status is not None and 200 <= status < 300
        with self._lock:
            self._waiting -= 1
            if ok:
                self.posted += 1
                self._failing = False
                return
            self.failed += 1
            first, self._failing = not self._failing, True
        if first:
            reason = f"answered HTTP {status}" if status is not None else "did not answer"
            log.warning("the receiver at %s %s to a delivery report; reports that fail are "
                        "counted in GET /stats (reports_failed). Check that 'relaydesk "
                        "receiver' runs there with this data dir's callback token.",
                        self.target.base_url, reason)


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
            self._reply(200, {**state.stats(), **state.memory_stats(),
                              **self.server.report_stats()})
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
        if self.path not in (SEND_PATH, INBOUND_PATH):
            self._reply(404, {"error": "not_found"})
            return
        try:
            payload = json.loads(raw)
            if not isinstance(payload, dict):
                raise ValueError("not an object")
        except ValueError:
            self._reply(400, {"error": "bad_request", "message": "body must be a JSON object"})
            return
        if self.path == INBOUND_PATH:
            self._reply(*self.server.forward_inbound(payload))
            return
        state = self.server.state
        if state.latency_s:
            time.sleep(state.latency_s)
        status, data = state.handle_send(payload)
        if status == 200 and data["status"] == "delivered":  # accepted now, not a repeat
            self.server.report_later(data["id"], str(payload["to"]))
        self._reply(status, data)

    def do_DELETE(self) -> None:
        if not self._host_allowed():
            self._refuse_host()
            return
        if self.path == SEND_PATH:  # reset, for benchmarks that reuse one gateway
            state = self.server.state
            fresh = GatewayState(state.latency_s, state.fail_rate, state.seed)
            self.server.state = fresh
            if self.server.reporter is not None:
                self.server.reporter.reset_counts()
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

    def __init__(self, host: str, port: int, state: GatewayState,
                 reporter: ReportPoster | None = None) -> None:
        _check_loopback(host)
        self.state = state
        self.reporter = reporter
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

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = super().get_request()
        # http.server writes the headers and the body of an answer separately: without
        # this, Nagle's algorithm holds the body until the client's delayed ACK, about
        # 40 ms per request (measured: 360 requests/s from 16 connections, 4,200 with it).
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection, address

    def report_later(self, message_id: str, to: str) -> None:
        """Queue the delivery report of a message just accepted (when reporting)."""
        report = delivery_report(message_id, to)
        if self.reporter is not None and report is not None:
            self.reporter.schedule(report)

    def report_stats(self) -> dict[str, int]:
        if self.reporter is None:
            return {"reports_pending": 0, "reports_posted": 0, "reports_failed": 0,
                    "reports_dropped": 0}
        return self.reporter.stats()

    def forward_inbound(self, payload: dict[str, Any]) -> tuple[int, dict[str, str]]:
        """A member's reply, passed on to the receiver as the sandbox's inbound callback."""
        if self.reporter is None:
            return 409, {"error": "no_receiver",
                         "message": "this gateway posts no reports: start it with "
                                    "--reports-url (supervise and the console do)"}
        sender, text = payload.get("from"), payload.get("text")
        if not isinstance(sender, str) or not sender.strip() or not isinstance(text, str):
            return 400, {"error": "bad_request",
                         "message": "'from' (a phone number) and 'text' are required"}
        reply = {"from": sender, "text": text, "id": self.state.inbound_id()}
        if isinstance(payload.get("to"), str):
            reply["to"] = payload["to"]
        status = self.reporter.forward_inbound(reply)
        if status is None or not 200 <= status < 300:
            said = "did not answer" if status is None else f"answered HTTP {status}"
            return 502, {"error": "receiver_failed",
                         "message": f"the receiver at {self.reporter.target.base_url} "
                                    f"{said}; check that it runs, then send the reply again"}
        return 202, {"id": reply["id"], "status": "forwarded"}

    def shutdown(self) -> None:
        super().shutdown()
        if self.reporter is not None:
            self.reporter.stop()


def start_gateway(host: str = "127.0.0.1", port: int = 0, *, latency_ms: float = 0,
                  fail_rate: float = 0, seed: int | None = None,
                  reports_url: str | None = None, callback_token: str = "",
                  report_delay_ms: float = REPORT_DELAY_MS) -> GatewayServer:
    """Start the gateway on a background thread; ``server.shutdown()`` stops it. With
    ``reports_url`` (the receiver's base URL) and that receiver's ``callback_token`` it
    posts delivery reports and forwards replies."""
    target = ReportTarget(reports_url, callback_token) if reports_url is not None else None
    reporter = ReportPoster(target, report_delay_ms / 1000) if target is not None else None
    try:
        server = GatewayServer(host, port, GatewayState(latency_ms / 1000, fail_rate, seed),
                               reporter)
    except BaseException:
        if reporter is not None:
            reporter.stop()
        raise
    threading.Thread(target=server.serve_forever, args=(0.1,), name="sandbox-gateway",
                     daemon=True).start()
    return server
