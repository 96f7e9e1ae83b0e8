"""Error reporting to Sentry, when RELAYDESK_SENTRY_DSN is set, with phone numbers and message
bodies scrubbed before anything leaves the machine."""

from __future__ import annotations

import logging
from typing import Any

import sentry_sdk
from sentry_sdk.integrations.celery import CeleryIntegration
from sentry_sdk.integrations.logging import LoggingIntegration
from sentry_sdk.integrations.redis import RedisIntegration
from sentry_sdk.integrations.sqlalchemy import SqlalchemyIntegration
from sentry_sdk.integrations.tornado import TornadoIntegration

from engine import __version__
from engine.config.masking import mask_urls_in_text
from engine.config.settings import Settings
from engine.domain.phones import scrub_phones

FILTERED = "[Filtered]"
# Keys whose values are message content or recipients wherever they appear in an event, a
# breadcrumb or a transaction's span (the stdlib integration puts a URL's query in
# ``http.query``: it may carry a gateway's key).
SENSITIVE_KEYS = frozenset({
    "body", "text", "to", "phone", "recipient", "payload", "message_body", "args", "kwargs",
    "vars", "data", "cookies", "headers", "query_string", "http.query", "http.fragment",
})
# Ids and times the SDK sets: Sentry needs them as they are, and a hex id that starts with
# seven digits would otherwise read as a phone number.
_SDK_KEYS = frozenset({
    "event_id", "trace_id", "span_id", "parent_span_id", "timestamp", "start_timestamp",
    "received", "release", "dist",
})


def _scrub(value: Any, depth: int = 0) -> Any:
    if depth > 20:
        return FILTERED
    if isinstance(value, str):
        return scrub_phones(mask_urls_in_text(value))
    if isinstance(value, dict):
        return {k: _scrub_item(k, v, depth) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v, depth + 1) for v in value]
    return value


def _scrub_item(key: Any, value: Any, depth: int) -> Any:
    if key in _SDK_KEYS:
        return value
    return FILTERED if str(key).lower() in SENSITIVE_KEYS else _scrub(value, depth + 1)


def scrub_event(event: dict[str, Any], hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """before_send and before_send_transaction: no phone numbers, no message bodies, no
    local variables, no credentials from URLs (a transaction's name, its spans'
    descriptions and data are scrubbed like an error's message)."""
    for exception in (event.get("exception") or {}).get("values") or []:
        for frame in (exception.get("stacktrace") or {}).get("frames") or []:
            frame.pop("vars", None)
    scrubbed: dict[str, Any] = _scrub(event)
    return scrubbed


def scrub_breadcrumb(crumb: dict[str, Any], hint: dict[str, Any] | None = None
                     ) -> dict[str, Any]:
    scrubbed: dict[str, Any] = _scrub(crumb)
    return scrubbed


def init_sentry(settings: Settings, component: str) -> bool:
    """Start reporting for this process; False when no DSN is configured."""
    if not settings.sentry_dsn:
        return False
    sentry_sdk.init(
        dsn=settings.sentry_dsn,
        release=settings.sentry_release or f"relaydesk@{__version__}",
        environment=settings.sentry_environment or settings.env,
        sample_rate=settings.sentry_sample_rate,
        traces_sample_rate=settings.sentry_traces_sample_rate,
        include_local_variables=False,  # locals hold phone numbers and message text
        before_send=scrub_event,  # type: ignore[arg-type]
        before_send_transaction=scrub_event,  # type: ignore[arg-type]
        before_breadcrumb=scrub_breadcrumb,
        integrations=[
            # A retry is not a failure: only the last attempt reports (see report_dead).
            CeleryIntegration(monitor_beat_tasks=False),
            RedisIntegration(),
            SqlalchemyIntegration(),
            LoggingIntegration(level=logging.INFO, event_level=logging.ERROR),
        ],
        # The SDK turns it on by itself when tornado is installed (the receiver's server);
        # it would attach each request's URL, whose path holds the callback token, and the
        # caller's address. The receiver logs what it needs itself.
        disabled_integrations=[TornadoIntegration()],
    )
    sentry_sdk.set_tag("component", component)
    return True


def report_dead(campaign_id: int, message_id: int, error_type: str, attempts: int) -> None:
    """A message given up on: one event per kind of error, not per phone number."""
    sentry_sdk.capture_message(
        f"message undeliverable after {attempts} attempt(s): {error_type}",
        level="warning",
        fingerprint=["dead-letter", error_type],
        tags={"campaign": str(campaign_id), "error_type": error_type},
        extras={"message_id": message_id},
    )
