"""Every Redis key RelayDesk writes, in one place (Celery's own queues aside)."""

from __future__ import annotations

PREFIX = "relaydesk:"
SCHEDULED = PREFIX + "scheduled"  # sorted set: job JSON by due time
SCHEDULER_LOCK = PREFIX + "scheduler:lock"
SWEEP_LOCK = PREFIX + "sweep:lock"
SCHEDULE_LOCK = PREFIX + "schedule:lock"  # one worker at a time starts due campaigns
# Reports the receiver took, durable until applied (engine.infra.report_inbox).
REPORT_INBOX = PREFIX + "reports:inbox"
REPORT_APPLY_LOCK = PREFIX + "reports:apply:lock"  # one applier at a time
REPORT_POLL_LOCK = PREFIX + "reports:poll:lock"  # one Twilio poller at a time
PRUNE_LOCK = PREFIX + "retention:lock"  # one worker at a time prunes (RELAYDESK_KEEP_MESSAGES)
PRUNE_LAST_RUN = PREFIX + "retention:last_run"  # epoch seconds of the last prune's start
WORKER_HEARTBEAT = PREFIX + "worker:"  # + worker name, with a TTL


def rate_limit(provider: str) -> str:
    return f"{PREFIX}rate:{provider}"


def breaker(provider: str, part: str) -> str:
    return f"{PREFIX}breaker:{provider}:{part}"


def campaign_paused(campaign_id: int) -> str:
    return f"{PREFIX}campaign:{campaign_id}:paused"


def campaign_window_shifted(campaign_id: int) -> str:
    """The end (epoch seconds) of the last quiet hours the campaign's schedule was moved
    past, so it is moved once per window."""
    return f"{PREFIX}campaign:{campaign_id}:window_shifted"
