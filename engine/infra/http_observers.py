"""Who is told of each provider HTTP call: the development inspector, when it is on.

The providers report into this list and the inspector (a lower layer than the providers)
adds itself to it, so neither has to import the other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HttpExchange:
    """One provider call as the development inspector sees it (engine.monitoring.inspector)."""

    method: str
    url: str
    headers: Mapping[str, str]
    request_body: str
    status: int | None  # None: no answer (timeout, connection error)
    response_body: bytes
    latency_s: float
    error: str | None = None


# Told of every provider call. Empty unless the development inspector is on, so then a call
# costs one check and nothing is built for it.
HTTP_OBSERVERS: list[Callable[[HttpExchange], None]] = []


def tell_observers(exchange: HttpExchange) -> None:
    for observer in HTTP_OBSERVERS:
        try:
            observer(exchange)
        except Exception:  # the call has happened: an observer must not make it a failure
            log.debug("an HTTP observer failed", exc_info=True)
