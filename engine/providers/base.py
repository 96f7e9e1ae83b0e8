"""The provider interface and the outcome classification every adapter shares."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import urllib3

MAX_RESPONSE_KEPT = 2000  # characters of a provider's answer kept for the failed-job panel


class Outcome(StrEnum):
    SENT = "sent"
    TRANSIENT = "transient"  # retry later: timeouts, connection errors, 429, 5xx
    PERMANENT = "permanent"  # this message can never be sent: invalid number, opted out
    ACCOUNT = "account"  # nothing can be sent: auth failure, empty balance -> pause


@dataclass(frozen=True)
class Sms:
    message_id: int
    campaign_id: int
    to: str
    body: str

    @property
    def idempotency_key(self) -> str:
        return f"relaydesk-{self.campaign_id}-{self.message_id}"


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    provider_message_id: str | None = None
    error_type: str | None = None  # e.g. "HTTP 503", "Timeout", "invalid_number"
    error: str | None = None
    response: str | None = None  # the provider's answer, truncated
    latency_s: float = 0.0


class Provider(Protocol):
    name: str

    def send(self, sms: Sms) -> SendResult: ...


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


def timed_request(
    http: urllib3.PoolManager,
    method: str,
    url: str,
    interpret: Callable[[int, bytes], SendResult],
    **kwargs: Any,
) -> SendResult:
    """Make one call; network failures are transient, the rest is for ``interpret``."""
    start = time.perf_counter()
    try:
        response = http.request(method, url, **kwargs)
    except urllib3.exceptions.TimeoutError as exc:
        return SendResult(Outcome.TRANSIENT, error_type="Timeout", error=str(exc),
                          latency_s=time.perf_counter() - start)
    except urllib3.exceptions.HTTPError as exc:
        return SendResult(Outcome.TRANSIENT, error_type=type(exc).__name__, error=str(exc),
                          latency_s=time.perf_counter() - start)
    result = interpret(response.status, response.data)
    return SendResult(
        result.outcome, result.provider_message_id, result.error_type, result.error,
        response.data[:MAX_RESPONSE_KEPT].decode("utf-8", "replace"),
        time.perf_counter() - start,
    )
