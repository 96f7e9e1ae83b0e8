"""The receiver: the HTTP endpoint providers post delivery reports, replies and opt-outs to.

A tornado server (one thread, one asyncio loop, many connections). Each callback route
checks what it can before reading the body (method, path, token or signature header,
Content-Type, Content-Length), reads at most MAX_BODY bytes, parses and verifies the body
(engine.providers.callbacks), pushes the Report to the Redis report inbox
(engine.infra.report_inbox) and only then answers 2xx: an acknowledged report is durable
even if the receiver dies right after. When Redis does not answer, the provider gets 503
and retries later; nothing is half stored (one report per request, one RPUSH).
Applying the reports to the database happens behind it, in batches
(engine.pipeline.report_applier).

Logs name the route, the status and the time, with the path's token masked; never a body,
a phone number or a signature.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, ClassVar

import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from tornado.http1connection import HTTP1Connection
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application, HTTPError, RequestHandler, stream_request_body

from engine.config.callback_token import callback_token
from engine.config.masking import MASK
from engine.config.settings import Settings
from engine.domain.delivery import Report
from engine.infra import report_inbox
from engine.infra.connections import Purpose, connection_options
from engine.infra.embedded_redis import redis_url
from engine.providers import callbacks
from engine.providers.callbacks import DEFAULT_PORT, CallbackError, Form

__all__ = ["DEFAULT_PORT", "RunningReceiver", "make_app", "run_receiver", "start_receiver"]

log = logging.getLogger(__name__)

# Twilio posts about 2 KB, Africa's Talking less; a reply's text is at most 1600
# characters. Anything near this is not a callback.
MAX_BODY = 64 * 1024
# A body a little too large is read and dropped so the client reads our 413; beyond this
# the connection is closed at once, unread.
MAX_DISCARDED = 1024 * 1024
TOO_LARGE = f"the body is larger than {MAX_BODY} bytes"
# A connection with no request this long is closed (also the limit for sending the
# headers); a body must arrive within BODY_TIMEOUT_S once its headers have.
IDLE_TIMEOUT_S = 30.0
BODY_TIMEOUT_S = 15.0
# In-flight requests get this long to finish when the receiver is stopped.
SHUTDOWN_GRACE_S = 10.0
# Providers wait about 15 s for an answer (Twilio's webhook timeout): a Redis that is
# down must be a quick 503, so the provider retries later, not a hang.
REDIS = Purpose(connect_timeout_s=2.0, read_timeout_s=5.0)

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
TWIML_EMPTY = b'<?xml version="1.0" encoding="UTF-8"?><Response/>'
OK_JSON = b'{"ok":true}'
_GENERIC = {403: "forbidden", 404: "not found"}


def redis_client(url: str) -> redis.asyncio.Redis:
    """The receiver's asyncio client, with RelayDesk's timeouts and keepalive. One retry
    on a fresh connection (a pooled one may be stale after a Redis restart), no more."""
    return redis.asyncio.Redis.from_url(url, **connection_options(REDIS),
                                        retry=Retry(NoBackoff(), 1))


@dataclass
class ReceiverState:
    """What every handler shares: built once per app."""

    settings: Settings
    redis: Any  # redis.asyncio.Redis
    token: str
    in_flight: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.idle.set()

    def begin(self) -> None:
        self.in_flight += 1
        self.idle.clear()

    def end(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self.idle.set()


class _Base(RequestHandler):
    """Small JSON answers, and no request details in the logs."""

    state: ReceiverState

    def initialize(self, state: ReceiverState) -> None:
        self.state = state

    def set_default_headers(self) -> None:
        self.clear_header("Server")  # which server and version is nobody's business

    def answer(self, status: int, body: bytes, content_type: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", content_type)
        self.before_answer()
        self.finish(body)  # headers and body in one write (tornado's HTTP1Connection)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "application/json")
        self.before_answer()
        self.finish(f'{{"error":"{self._reason}"}}'.encode())

    def before_answer(self) -> None:
        """Last headers, for an answer of any status."""

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        # Tornado's would print the request (its path holds the token) and, for an
        # unexpected error, its headers. The route and the error type are enough.
        if not isinstance(value, CallbackError | HTTPError):
            log.error("receiver: %s failed on %s", typ.__name__ if typ else "error",
                      masked_path(self.request.path), exc_info=(typ, value, tb))


class HealthHandler(_Base):
    SUPPORTED_METHODS = ("GET",)

    def get(self) -> None:
        self.answer(200, OK_JSON, "application/json")


class NotFoundHandler(_Base):
    def prepare(self) -> None:
        self.answer(404, b'{"error":"not found"}', "application/json")


@stream_request_body
class _Callback(_Base):
    """A callback route: cheap checks in prepare(), a bounded body, one Report pushed."""

    SUPPORTED_METHODS = ("POST",)
    media_type: ClassVar[str] = FORM

    def initialize(self, state: ReceiverState) -> None:
        super().initialize(state)
        self.chunks: list[bytes] = []
        self.size = 0
        self.counted = False
        self.discarding = False
        self.body_read = False

    async def prepare(self) -> None:
        self.state.begin()
        self.counted = True
        try:
            self.check_route()
            self.check_headers()
        except CallbackError as exc:
            self.refuse(exc)

    def check_route(self) -> None:
        """Path and credentials, before anything of the body is read."""

    def check_headers(self) -> None:
        media = self.request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if media != self.media_type:
            raise CallbackError(415, f"send {self.media_type}")
        length = self.request.headers.get("Content-Length")
        if length is None:
            # Chunked: counted as it arrives (data_received), which answers 413; tornado's
            # own limit (a bare 400) only as a backstop.
            self._connection().set_max_body_size(MAX_DISCARDED)
            return
        if not length.isdigit():
            raise CallbackError(400, "Content-Length is not a number")
        if int(length) > MAX_DISCARDED:
            raise CallbackError(413, TOO_LARGE)
        if int(length) > MAX_BODY:
            # Read (and drop) it, then answer: closing with unread data resets the
            # connection, and the client would see the reset instead of our 413.
            self.discarding = True
            self._connection().set_max_body_size(MAX_DISCARDED)

    def before_answer(self) -> None:
        if not self.body_read:
            # Answered before the body was read (a refusal): tornado closes the
            # connection rather than read it, so the client must not send another
            # request on it.
            self.set_header("Connection", "close")

    def _connection(self) -> HTTP1Connection:
        connection = self.request.connection
        assert isinstance(connection, HTTP1Connection)
        return connection

    def data_received(self, chunk: bytes) -> None:
        if self._finished or self.discarding:
            return
        self.size += len(chunk)
        if self.size > MAX_BODY:  # a chunked body has no Content-Length to check first
            self.refuse(CallbackError(413, TOO_LARGE))
            return
        self.chunks.append(chunk)

    def refuse(self, exc: CallbackError) -> None:
        if exc.status == 413:
            # Answer 413 ourselves and close without reading the rest: past the server's
            # max_body_size tornado would add its own bare 400 after ours.
            self._connection().set_max_body_size(2**62)
        log.info("receiver: %d on %s: %s", exc.status, masked_path(self.request.path),
                 exc.reason)
        # Who fails a token or a signature learns nothing more; a provider whose
        # callback is malformed learns which field.
        reason = _GENERIC.get(exc.status, exc.reason)
        self.answer(exc.status, json.dumps({"error": reason}).encode(), "application/json")

    async def post(self, *args: str, **kwargs: str) -> None:
        self.body_read = True  # tornado calls post() once the whole body is in
        if self.discarding:
            self.refuse(CallbackError(413, TOO_LARGE))
            return
        body = b"".join(self.chunks)
        self.chunks = []
        try:
            report = self.parse(body, time.time())
        except CallbackError as exc:
            self.refuse(exc)
            return
        try:
            await report_inbox.push_async(self.state.redis, report)
        except (redis.exceptions.RedisError, OSError) as exc:
            log.warning("receiver: Redis did not take a report (%s); answered 503 so the "
                        "provider retries. Check that Redis runs ('relaydesk status').",
                        type(exc).__name__)
            self.set_header("Retry-After", "30")
            self.answer(503, b'{"error":"try again later"}', "application/json")
            return
        self.acknowledge()

    def parse(self, body: bytes, received_at: float) -> Report:
        raise NotImplementedError

    def acknowledge(self) -> None:
        self.answer(200, OK_JSON, "application/json")

    def on_finish(self) -> None:
        self._done()

    def on_connection_close(self) -> None:
        super().on_connection_close()
        self._done()

    def _done(self) -> None:
        if self.counted:
            self.counted = False
            self.state.end()


class TwilioHandler(_Callback):
    """/callbacks/twilio/(status|inbound): signed with X-Twilio-Signature."""

    def check_route(self) -> None:
        if not self.state.settings.twilio_auth_token:
            raise CallbackError(403, "RELAYDESK_TWILIO_AUTH_TOKEN is not set, so Twilio's "
                                     "signature cannot be checked")
        if not self.request.headers.get("X-Twilio-Signature"):
            raise CallbackError(403, "no X-Twilio-Signature")

    def signed_url(self) -> str:
        """The URL Twilio posted to, as it signed it: the public URL when there is one (a
        tunnel or proxy in front of us changes scheme and host), else what reached us."""
        public = self.state.settings.public_url
        if public:
            return public.rstrip("/") + self.request.uri
        return f"{self.request.protocol}://{self.request.host}{self.request.uri}"

    def parse(self, body: bytes, received_at: float) -> Report:
        form = callbacks.parse_form(body)
        callbacks.verify_twilio(str(self.state.settings.twilio_auth_token), self.signed_url(),
                                form, self.request.headers.get("X-Twilio-Signature", ""))
        region = self.state.settings.default_region
        if self.path_kwargs["kind"] == "status":
            return callbacks.twilio_status(form, received_at, region)
        return callbacks.twilio_inbound(form, received_at, region)

    def acknowledge(self) -> None:
        # Twilio reads the answer to an incoming message as TwiML: empty means no reply.
        self.answer(200, TWIML_EMPTY, "text/xml")


class _TokenHandler(_Callback):
    """Routes guarded by the secret token in their path."""

    def check_route(self) -> None:
        callbacks.check_token(self.path_kwargs["token"], self.state.token)


class AfricasTalkingHandler(_TokenHandler):
    """/callbacks/africastalking/{token}/(delivery|inbound|optout), form-encoded."""

    PARSERS: ClassVar[dict[str, Callable[[Form, float, str], Report]]] = {
        "delivery": callbacks.at_delivery, "inbound": callbacks.at_inbound,
        "optout": callbacks.at_optout}

    def parse(self, body: bytes, received_at: float) -> Report:
        form = callbacks.parse_form(body)
        parser = self.PARSERS[self.path_kwargs["kind"]]
        return parser(form, received_at, self.state.settings.default_region)


class JsonHandler(_TokenHandler):
    """/callbacks/(http|sandbox)/{token}/(delivery|inbound), JSON."""

    media_type = JSON

    def parse(self, body: bytes, received_at: float) -> Report:
        data = callbacks.parse_json(body)
        provider = self.path_kwargs["provider"]
        if self.path_kwargs["kind"] == "delivery":
            return callbacks.json_delivery(provider, data, received_at)
        return callbacks.json_inbound(provider, data, received_at,
                                      self.state.settings.default_region)


_TOKEN_IN_PATH = re.compile(r"^(/callbacks/[^/]+/)[^/]+(/.*)?$")


def masked_path(path: str) -> str:
    """The path for a log line: the token segment masked (``/callbacks/http/****/inbound``),
    and bounded. (Twilio's paths hold no token; unknown paths are masked the same way.)"""
    path = path[:200]
    if path.startswith(("/callbacks/twilio/status", "/callbacks/twilio/inbound")):
        return path
    return _TOKEN_IN_PATH.sub(lambda m: f"{m.group(1)}{MASK}{m.group(2) or ''}", path)


def _log_request(handler: RequestHandler) -> None:
    status = handler.get_status()
    # A refusal is logged with its reason where it is decided (refuse), a 503 with its
    # cause: the access line itself is for debugging.
    level = logging.DEBUG if status < 500 else logging.WARNING
    if log.isEnabledFor(level):
        log.log(level, "%d %s %s %.1fms", status, handler.request.method,
                masked_path(handler.request.path), 1000.0 * handler.request.request_time())


def make_app(settings: Settings, redis_client: Any) -> Application:
    """The receiver's routes, pushing reports with ``redis_client`` (redis.asyncio)."""
    state = ReceiverState(settings, redis_client, callback_token(settings))
    token = r"(?P<token>[^/]+)"
    routes: list[Any] = [
        (r"/health", HealthHandler, {"state": state}),
        (r"/callbacks/twilio/(?P<kind>status|inbound)", TwilioHandler, {"state": state}),
        (rf"/callbacks/africastalking/{token}/(?P<kind>delivery|inbound|optout)",
         AfricasTalkingHandler, {"state": state}),
        (rf"/callbacks/(?P<provider>http|sandbox)/{token}/(?P<kind>delivery|inbound)",
         JsonHandler, {"state": state}),
    ]
    app = Application(routes, default_handler_class=NotFoundHandler,
                      default_handler_args={"state": state}, log_function=_log_request,
                      compress_response=False, serve_traceback=False)
    app.settings["receiver_state"] = state
    return app


def make_server(app: Application) -> HTTPServer:
    return HTTPServer(app, max_body_size=MAX_BODY, max_buffer_size=4 * MAX_BODY,
                      max_header_size=16 * 1024, idle_connection_timeout=IDLE_TIMEOUT_S,
                      body_timeout=BODY_TIMEOUT_S, decompress_request=False)


async def serve(settings: Settings, host: str, port: int, stop: asyncio.Event,
                ready: Callable[[int], None], *, url: str | None = None,
                grace_s: float = SHUTDOWN_GRACE_S,
                on_state: Callable[[ReceiverState], None] | None = None) -> None:
    """Serve until ``stop`` is set, then stop accepting, let in-flight requests finish
    (``grace_s`` at most), close the connections and Redis. ``ready(port)`` is called once
    listening (``port`` 0 picks a free one)."""
    client = redis_client(url or redis_url(settings, start=False))
    try:
        app = make_app(settings, client)
        server = make_server(app)
        state: ReceiverState = app.settings["receiver_state"]
        if on_state is not None:
            on_state(state)
        sockets = bind_sockets(port, host)
        server.add_sockets(sockets)
        ready(int(sockets[0].getsockname()[1]))
        await stop.wait()
        server.stop()
        try:
            await asyncio.wait_for(state.idle.wait(), grace_s)
        except TimeoutError:
            log.warning("receiver: %d request(s) still running after %.0f s; closing them "
                        "(their providers retry)", state.in_flight, grace_s)
        await server.close_all_connections()
    finally:
        await client.aclose()


def raise_open_file_limit() -> None:
    """Every connection is a file descriptor; the usual soft limit (1024) would refuse
    a burst of concurrent callbacks long before the CPU is busy. Raise it to the hard
    limit this process may use (POSIX; Windows has no such limit on sockets)."""
    if sys.platform == "win32":
        return
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError):
            log.info("receiver: could not raise the open-file limit from %d", soft)


def run_receiver(settings: Settings, host: str, port: int,
                 ready: Callable[[int], None] | None = None) -> None:
    """Serve until SIGINT or SIGTERM (blocking), then shut down cleanly."""
    raise_open_file_limit()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def handler(signum: int, frame: FrameType | None) -> None:
            loop.call_soon_threadsafe(stop.set)

        # signal.signal, not loop.add_signal_handler: the latter does not exist on Windows.
        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            await serve(settings, host, port, stop, ready or (lambda _port: None))
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    asyncio.run(main())


class RunningReceiver:
    """A receiver serving on its own thread (tests, and whoever embeds one)."""

    def __init__(self, settings: Settings, host: str = "127.0.0.1", port: int = 0,
                 url: str | None = None) -> None:
        self.host = host
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._state: ReceiverState | None = None
        self._thread = threading.Thread(target=self._run, args=(settings, port, url),
                                        name="relaydesk-receiver", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self, settings: Settings, port: int, url: str | None) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()

            def ready(bound: int) -> None:
                self.port = bound
                self._ready.set()

            await serve(settings, self.host, port, self._stop, ready, url=url,
                        on_state=self._keep_state)

        try:
            asyncio.run(main())
        except BaseException as exc:  # handed to the starting thread
            self._error = exc
        finally:
            self._ready.set()

    def _keep_state(self, state: ReceiverState) -> None:
        self._state = state

    @property
    def in_flight(self) -> int:
        """Requests whose headers are in and whose answer is not yet sent."""
        return self._state.in_flight if self._state is not None else 0

    def stop(self, timeout: float = 30.0) -> None:
        """Stop accepting, finish in-flight requests, close; returns when done."""
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self._error is not None:
            raise self._error


def start_receiver(settings: Settings, host: str = "127.0.0.1", port: int = 0,
                   url: str | None = None) -> RunningReceiver:
    """A receiver on a thread, listening once this returns; ``url``: the Redis URL
    (default: the settings', without starting the embedded server)."""
    return RunningReceiver(settings, host, port, url)

