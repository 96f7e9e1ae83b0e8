"""Error reporting to Sentry, when RELAYDESK_SENTRY_DSN is set, with phone numbers and message
bodies scrubbed before anything leaves the machine."""

from __future__ import annotations

import logging
import re
from typing import Any

import sentry_sdk
from sentry_sdk.integrations.celery import CeleryIntegration
from sentry_sdk.integrations.logging import LoggingIntegration
from sentry_sdk.integrations.redis import RedisIntegration
from sentry_sdk.integrations.sqlalchemy import SqlalchemyIntegration

from engine import __version__
from engine.settings import Settings

FILTERED = "[Filtered]"
# Anything that looks like a phone number: 8+ digits, optionally with +, spaces, dashes.
PHONE = re.compile(r"\+?\d[\d \-]{6,}\d")
# Keys whose values are message content or recipients wherever they appear in an event.
SENSITIVE_KEYS = frozenset({
    "body", "text", "to", "phone", "recipient", "payload", "message_body", "args", "kwargs",
    "vars", "data", "cookies", "headers", "query_string",
})


def _scrub(value: Any, depth: int = 0) -> Any:
    if depth > 20:
        return FILTERED
    if isinstance(value, str):
        return PHONE.sub("[phone]", value)
    if isinstance(value, dict):
        return {k: FILTERED if str(k).lower() in SENSITIVE_KEYS else _scrub(v, depth + 1)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v, depth + 1) for v in value]
    return value


def scrub_event(event: dict[str, Any], hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """before_send: no phone numbers, no message bodies, no local variables."""
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
        before_breadcrumb=scrub_breadcrumb,
        integrations=[
            # A retry is not a failure: only the last attempt reports (see report_dead).
            CeleryIntegration(monitor_beat_tasks=False),
            RedisIntegration(),
            SqlalchemyIntegration(),
            LoggingIntegration(level=logging.INFO, event_level=logging.ERROR),
        ],
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
