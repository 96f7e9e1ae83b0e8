"""The provider interface and the outcome classification every adapter shares."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from http.client import HTTPException
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit, urlunsplit

import urllib3

from engine.domain.sending import Outcome, SendResult, Sms
from engine.infra.http_observers import HTTP_OBSERVERS, HttpExchange, tell_observers
from engine.providers.http_client import ProviderHttp

MAX_RESPONSE_KEPT = 2000  # characters of a provider's answer kept for the failed-job panel


class Provider(Protocol):
    name: str
    # Whether the provider can be asked for a message's delivery status (Twilio): then a
    # message with no final report is looked up (engine.pipeline.report_poller).
    can_fetch_status: bool

    def send(self, sms: Sms, deadline: float | None = None) -> SendResult:
        """Send one message; the call is over by ``deadline`` (``time.monotonic()``)."""
        ...


def classify_status(status: int) -> Outcome:
    """The HTTP-level reading most SMS APIs follow."""
    if 200 <= status < 300:
        return Outcome.SENT
    if status in (401, 402, 403):
        return Outcome.ACCOUNT
    if status in (408, 425, 429) or status >= 500:
        return Outcome.TRANSIENT
    return Outcome.PERMANENT


def parse_json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


def _report_exchange(method: str, url: str, kwargs: dict[str, Any], status: int | None,
                    data: bytes, latency_s: float, error: str | None = None) -> None:
    body = kwargs.get("body")
    if body is None and kwargs.get("fields"):
        body = urlencode(kwargs["fields"])
    body = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
    tell_observers(HttpExchange(method, url, dict(kwargs.get("headers") or {}), body, status,
                                data, latency_s, error))


def timed_request(
    http: ProviderHttp,
    method: str,
    url: str,
    interpret: Callable[[int, bytes], SendResult],
    *,
    deadline: float | None = None,
    **kwargs: Any,
) -> SendResult:
    """Make one call, done by ``deadline`` (``time.monotonic()``; default: the client's
    timeout from now); network failures are transient, the rest is for ``interpret``."""
    start = time.perf_counter()
    try:
        response = http.request(method, url, deadline=deadline, **kwargs)
    # What a request can fail with; anything else is a bug here and goes to the sender's
    # handler, which logs it with its traceback.
    except (urllib3.exceptions.HTTPError, HTTPException, OSError,
            ValueError) as exc:
        error_type, error = describe_request_error(exc, url)
        latency = time.perf_counter() - start
        if HTTP_OBSERVERS:
            _report_exchange(method, url, kwargs, None, b"", latency, f"{error_type}: {error}")
        return SendResult(Outcome.TRANSIENT, error_type=error_type, error=error,
                          latency_s=latency)
    latency = time.perf_counter() - start
    if HTTP_OBSERVERS:
        _report_exchange(method, url, kwargs, response.status, response.data, latency)
    result = interpret(response.status, response.data)
    return SendResult(
        result.outcome, result.provider_message_id, result.error_type, result.error,
        response.data[:MAX_RESPONSE_KEPT].decode("utf-8", "replace"), latency,
    )


def describe_request_error(exc: BaseException, url: str) -> tuple[str, str]:
    """(error type, error text) for a call that got no answer, built only from what is
    safe to keep: the exception's kind, the OS's reason and the URL without its query.

    The exceptions' own texts are never used: http.client's ValueError quotes the header
    value it refused (an auth token), and urllib3's errors repeat the URL with its query
    string. These texts go to logs, Sentry, the dead-letter store and CSV exports.
    """
    where = _bare_url(url)
    # Before TimeoutError: urllib3 makes a refused connection a kind of connect timeout.
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        reason = _os_reason(exc)
        return "ConnectionError", f"could not connect to {where}" + (
            f": {reason}" if reason else "")
    if isinstance(exc, urllib3.exceptions.TimeoutError):
        return "Timeout", f"no complete answer from {where} in time"
    if isinstance(exc, urllib3.exceptions.LocationValueError):
        return "InvalidUrl", "the provider URL is not valid; check the provider settings"
    if isinstance(exc, ValueError):
        return "InvalidRequest", (f"the request to {where} could not be built (e.g. a "
                                  "header HTTP does not allow); check the provider settings")
    reason = _os_reason(exc)
    kind = type(exc).__name__
    return kind, f"{kind} calling {where}" + (f": {reason}" if reason else "")


def _bare_url(url: str) -> str:
    """scheme://host:port/path: no credentials, query or fragment."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "the provider"
    return urlunsplit((parts.scheme, host + port, parts.path, "", "")) or "the provider"


def _os_reason(exc: BaseException) -> str:
    """The OS's words for the first socket error behind ``exc`` ("Connection refused")."""
    seen: BaseException | None = exc
    for _ in range(5):  # urllib3 wraps a few levels deep at most
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        seen = getattr(seen, "reason", None) or seen.__cause__ or seen.__context__
    return ""
