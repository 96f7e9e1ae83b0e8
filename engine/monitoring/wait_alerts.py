"""Long-wait alerts: a queue whose oldest job has waited past its threshold.

An episode starts when a queue's wait first passes its threshold and ends when it falls
back below. The current episodes live in one Redis hash (so every console and every
machine sees them) and each start and end is added to a short log. The notification
(webhook and/or e-mail) goes out once per episode, from whichever worker saw it first.

Only Celery queues are measured, from each job's publish time. Work that waits on purpose
(pacing, retry backoff, a campaign's quiet hours) waits in RelayDesk's durable schedule and
is published when due, so it never counts; a job that was already queued when its
campaign's quiet hours began goes back to the schedule when a worker takes it, and is
published afresh at their end (engine.pipeline.quiet_hold).
"""

from __future__ import annotations

import json
import logging
import smtplib
import socket
import ssl
import time
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import unquote, urlsplit

import urllib3

from engine.config.settings import Settings
from engine.infra.redis_keys import PREFIX
from engine.monitoring.queue_status import BrokerLoad

ACTIVE = PREFIX + "alerts:long_wait"  # hash: queue -> alert JSON
LOG = PREFIX + "alerts:log"  # list, newest first
LOG_LENGTH = 200
NOTIFY_TIMEOUT_S = 10.0
# The workers' monitor refreshes the alerts every few seconds; with no worker left to
# watch, they lapse instead of showing a stale alert for ever.
ACTIVE_TTL_S = 30

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LongWait:
    queue: str
    wait_s: float
    threshold_s: float
    since: float

    def text(self) -> str:
        return (f"Jobs on {self.queue} have waited {self.wait_s:.0f} s "
                f"(alert after {self.threshold_s:g} s).")

    def as_dict(self) -> dict[str, Any]:
        return {"queue": self.queue, "wait_s": round(self.wait_s, 1),
                "threshold_s": self.threshold_s, "since": self.since}


def over_threshold(settings: Settings, load: BrokerLoad) -> list[LongWait]:
    return [LongWait(q.name, q.oldest_wait_s, settings.long_wait.for_queue(q.name), load.read_at)
            for q in load.queues.values()
            if q.oldest_wait_s > settings.long_wait.for_queue(q.name)]


def update(client: Any, settings: Settings, load: BrokerLoad) -> list[LongWait]:
    """Record which queues wait too long now; returns the episodes that just started."""
    current = {alert.queue: alert for alert in over_threshold(settings, load)}
    started: list[LongWait] = []
    for queue, alert in current.items():
        if client.hsetnx(ACTIVE, queue, json.dumps(alert.as_dict())):
            started.append(alert)
            _log(client, "long_wait", alert)
        else:  # still waiting: keep the start time, refresh the figure
            previous = json.loads(client.hget(ACTIVE, queue) or "{}")
            since = float(previous.get("since", alert.since))
            client.hset(ACTIVE, queue, json.dumps({**alert.as_dict(), "since": since}))
    if current:
        client.expire(ACTIVE, ACTIVE_TTL_S)
    for queue in load.queues:
        if queue not in current and client.hdel(ACTIVE, queue):
            _log(client, "long_wait_over",
                 LongWait(queue, load.queues[queue].oldest_wait_s,
                          settings.long_wait.for_queue(queue), load.read_at))
    return started


def _log(client: Any, kind: str, alert: LongWait) -> None:
    entry = json.dumps({"kind": kind, "at": time.time(), **alert.as_dict()})
    pipe = client.pipeline(transaction=False)
    pipe.lpush(LOG, entry)
    pipe.ltrim(LOG, 0, LOG_LENGTH - 1)
    pipe.execute()


def active(client: Any) -> list[LongWait]:
    alerts = [json.loads(raw) for raw in client.hvals(ACTIVE)]
    return sorted((LongWait(a["queue"], a["wait_s"], a["threshold_s"], a["since"])
                   for a in alerts), key=lambda a: a.queue)


def recent(client: Any, limit: int = 50) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in client.lrange(LOG, 0, limit - 1)]


def notify(settings: Settings, alert: LongWait) -> list[str]:
    """Send the alert to the configured webhook and e-mail; returns what failed, in words
    without secrets (webhook URLs and SMTP passwords never appear)."""
    problems: list[str] = []
    if settings.alert_webhook:
        try:
            _post_webhook(settings.alert_webhook, alert)
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            problems.append(f"alert webhook failed: {type(exc).__name__}")
    if settings.alert_email and settings.smtp_url:
        try:
            _send_email(settings.smtp_url, settings.alert_email, alert)
        except (smtplib.SMTPException, OSError, ValueError) as exc:
            problems.append(f"alert e-mail failed: {type(exc).__name__}")
    for problem in problems:
        log.warning("%s", problem)
    return problems


def _post_webhook(url: str, alert: LongWait) -> None:
    body = {"source": "relaydesk", "host": socket.gethostname(), "alert": "long_wait",
            "text": alert.text(), **alert.as_dict()}
    response = urllib3.request("POST", url, json=body, timeout=NOTIFY_TIMEOUT_S, retries=False)
    if response.status >= 300:
        raise ValueError(f"webhook answered {response.status}")


def _send_email(smtp_url: str, to: str, alert: LongWait) -> None:
    parts = urlsplit(smtp_url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError("the SMTP URL must look like smtp://user:password@host:587")
    message = EmailMessage()
    message["Subject"] = f"RelayDesk: long wait on {alert.queue}"
    message["From"] = f"relaydesk@{socket.gethostname()}"
    message["To"] = to
    message.set_content(alert.text())
    port = parts.port or (465 if parts.scheme == "smtps" else 25)
    context = ssl.create_default_context()  # certificates are checked, as by any client
    smtp = (smtplib.SMTP_SSL(parts.hostname, port, timeout=NOTIFY_TIMEOUT_S, context=context)
            if parts.scheme == "smtps" else
            smtplib.SMTP(parts.hostname, port, timeout=NOTIFY_TIMEOUT_S))
    with smtp:
        encrypted = parts.scheme == "smtps"
        if not encrypted:
            smtp.ehlo()
            if smtp.has_extn("starttls"):
                smtp.starttls(context=context)
                encrypted = True
        if parts.username:
            if not encrypted:  # never send the password in clear text
                raise ValueError("the mail server offers no TLS; use smtps:// or a server "
                                 "with STARTTLS")
            smtp.login(unquote(parts.username), unquote(parts.password or ""))
        smtp.send_message(message)
