"""The figures the dashboard's cards and ``relaydesk status --json`` show, gathered in one
place: state of the system, throughput, delivery reports and replies, waits, workload per
queue, breakers, Redis memory, running campaigns with rate and ETA, and long-wait alerts."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.config.settings import PROVIDERS, Settings
from engine.infra import metrics, report_inbox
from engine.infra.breaker import CircuitBreaker
from engine.infra.metrics import Metric
from engine.infra.worker_registry import live_workers
from engine.monitoring import wait_alerts
from engine.monitoring.queue_status import BrokerLoad, broker_load
from engine.store.campaign_state import campaign_summary, delivery_rate
from engine.store.dead_letters import count_failed
from engine.store.delivery_reports import count_unmatched
from engine.store.models import Campaign, CampaignStatus, FailedJob, utcnow

RATE_WINDOW_S = 60  # "per minute" figures: the last 60 s, from the 10-second buckets
RUNNING = (CampaignStatus.QUEUED, CampaignStatus.SENDING, CampaignStatus.PAUSED)


@dataclass(frozen=True)
class QueueWorkload:
    queue: str
    waiting: int
    in_flight: int
    processes: int
    wait_s: float
    jobs_per_minute: int


@dataclass(frozen=True)
class CampaignRun:
    campaign: int
    name: str
    status: str
    recipients: int
    sent: int
    pending: int
    retrying: int
    dead: int
    per_minute: int  # messages sent in the last 60 s
    eta_s: float | None  # None when nothing is moving
    pause_reason: str | None
    held_until: str | None = None  # ISO time its quiet hours end, while it waits for it
    state_note: str | None = None  # "waiting for the send window (until 07:00)"


@dataclass(frozen=True)
class Overview:
    status: str  # active | paused | waiting | inactive
    jobs_per_minute: int
    sent_per_minute: int
    sent_last_hour: int
    success_rate_last_hour: float | None  # sent / (sent + given up on); None: nothing done
    provider_ms_last_hour: float | None  # average provider response time
    failed_last_7_days: int
    max_wait_s: float
    max_wait_queue: str | None
    max_runtime_ms: int  # longest job in the last hour
    max_runtime_queue: str | None
    processes: int
    workers_online: int
    dead_letters: int
    scheduled: int
    in_flight: int
    breakers: dict[str, str]  # provider -> closed | open | half-open
    redis_memory_bytes: int
    workload: list[QueueWorkload]
    campaigns: list[CampaignRun]
    alerts: list[wait_alerts.LongWait]
    # Delivery reports applied in the last hour (the window of sent_last_hour):
    # delivered / (delivered + undelivered), None before any final report.
    delivery_rate: float | None = None
    delivered: int = 0
    undelivered: int = 0
    avg_delivery_s: float | None = None  # from send to the delivered report, on average
    max_delivery_s: float | None = None
    replies: int = 0  # messages members sent us
    reports_pending: int = 0  # received, not applied yet (the receiver's Redis list)
    # Delivery reports kept without their message (an unknown id, or not matched yet);
    # deleted after report_applier.UNMATCHED_KEEP_S.
    unmatched_reports: int = 0
    read_at: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items()
                if k not in ("workload", "campaigns", "alerts")}
        data["workload"] = [w.__dict__ for w in self.workload]
        data["campaigns"] = [c.__dict__ for c in self.campaigns]
        data["alerts"] = [a.as_dict() for a in self.alerts]
        return data


def _breakers(client: Any, settings: Settings) -> dict[str, str]:
    return {p: CircuitBreaker(client, p, settings.breaker_threshold,
                              settings.breaker_cooldown_s).state().state for p in PROVIDERS}


def _status(workers: list[dict[str, Any]], breakers: dict[str, str],
            campaigns: list[CampaignRun]) -> str:
    """inactive: no worker; paused: workers, but nothing can go out (a provider's breaker is
    open, or every running campaign is paused); waiting: nothing goes out on purpose (every
    running campaign is held for its send window, or paused); active otherwise."""
    if not workers:
        return "inactive"
    if any(state == "open" for state in breakers.values()):
        return "paused"
    if campaigns and all(c.status == CampaignStatus.PAUSED for c in campaigns):
        return "paused"
    if campaigns and all(c.status == CampaignStatus.PAUSED or c.held_until for c in campaigns):
        return "waiting"
    return "active"


def _campaign_runs(session: Session, client: Any, settings: Settings,
                   now: float) -> list[CampaignRun]:
    ids = list(session.scalars(select(Campaign.id).where(Campaign.status.in_(RUNNING))
                               .order_by(Campaign.id)))
    if not ids:
        return []
    res = metrics.resolutions(settings)[0]
    fields = [metrics.field(metrics.campaign_scope(i), Metric.SENT) for i in ids]
    recent = metrics.read_series(client, res, fields, now - RATE_WINDOW_S + res.step_s, now)
    runs = []
    for campaign_id, sent_field in zip(ids, fields, strict=True):
        summary = campaign_summary(session, campaign_id)
        if summary is None:
            continue
        per_minute = recent.total(sent_field)
        remaining = summary["pending"] + summary["retrying"]
        moving = (per_minute > 0 and summary["status"] != CampaignStatus.PAUSED
                  and not summary["held_until"])
        runs.append(CampaignRun(
            campaign_id, summary["name"], summary["status"], summary["recipients"],
            summary["sent"], summary["pending"], summary["retrying"], summary["dead"],
            per_minute, remaining / per_minute * 60 if moving else None,
            summary["pause_reason"], summary["held_until"], summary["state_note"]))
    return runs


def _workload(load: BrokerLoad, workers: list[dict[str, Any]],
              jobs: metrics.Series) -> list[QueueWorkload]:
    rows = []
    for name, queue in load.queues.items():
        processes = sum(int(w.get("concurrency", 0)) for w in workers
                        if name in w.get("queues", ()))
        rows.append(QueueWorkload(name, queue.waiting, queue.in_flight, processes,
                                  round(queue.oldest_wait_s, 1),
                                  jobs.total(metrics.field(metrics.queue_scope(name),
                                                           Metric.JOBS))))
    return rows


def gather(client: Any, session: Session, settings: Settings, *,
           load: BrokerLoad | None = None,
           workers: list[dict[str, Any]] | None = None) -> Overview:
    """Everything in a handful of round trips: one pipelined broker read, a few metric
    reads, and four small SQL queries. A caller that already read the broker load or
    the live workers passes them in."""
    now = time.time()
    load = broker_load(client) if load is None else load
    workers = live_workers(client) if workers is None else workers
    ten_s, minute, _hour = metrics.resolutions(settings)
    queue_scopes = [metrics.queue_scope(q) for q in load.queues]
    jobs_fields = [metrics.field(s, Metric.JOBS) for s in (metrics.ALL, *queue_scopes)]
    last_minute = metrics.read_series(
        client, ten_s, [*jobs_fields, metrics.field(metrics.ALL, Metric.SENT)],
        now - RATE_WINDOW_S + ten_s.step_s, now)
    runtime_fields = [metrics.field(s, Metric.RUNTIME_MAX_MS) for s in queue_scopes]
    hour_totals = [metrics.field(metrics.ALL, n) for n in
                   (Metric.SENT, Metric.DEAD, Metric.CALLS, Metric.CALL_MS, Metric.DELIVERED,
                    Metric.UNDELIVERED, Metric.DELIVERY_MS, Metric.INBOUND)]
    delivery_peak = metrics.field(metrics.ALL, Metric.DELIVERY_MAX_MS)
    last_hour = metrics.read_series(client, minute,
                                    [*runtime_fields, *hour_totals, delivery_peak],
                                    now - 3600 + minute.step_s, now)
    sent, dead, calls, call_ms, delivered, undelivered, delivery_ms, replies = (
        last_hour.total(f) for f in hour_totals)
    slowest_delivery = last_hour.peak(delivery_peak)
    runtimes = {q: last_hour.peak(f) for q, f in zip(load.queues, runtime_fields, strict=True)}
    slowest = max(runtimes, key=lambda q: runtimes[q]) if any(runtimes.values()) else None
    waits = {name: q.oldest_wait_s for name, q in load.queues.items()}
    longest = max(waits, key=lambda q: waits[q]) if any(waits.values()) else None
    breakers = _breakers(client, settings)
    campaigns = _campaign_runs(session, client, settings, now)
    week_ago = utcnow() - timedelta(days=7)
    failed_week = session.scalar(select(func.count(FailedJob.id))
                                 .where(FailedJob.failed_at >= week_ago)) or 0
    return Overview(
        status=_status(workers, breakers, campaigns),
        jobs_per_minute=last_minute.total(jobs_fields[0]),
        sent_per_minute=last_minute.total(metrics.field(metrics.ALL, Metric.SENT)),
        sent_last_hour=sent,
        success_rate_last_hour=round(sent / (sent + dead), 4) if sent + dead else None,
        provider_ms_last_hour=round(call_ms / calls, 1) if calls else None,
        failed_last_7_days=failed_week,
        max_wait_s=round(waits[longest], 1) if longest else 0.0,
        max_wait_queue=longest,
        max_runtime_ms=runtimes[slowest] if slowest else 0,
        max_runtime_queue=slowest,
        processes=sum(int(w.get("concurrency", 0)) for w in workers),
        workers_online=len(workers),
        dead_letters=count_failed(session),
        scheduled=load.scheduled,
        in_flight=load.in_flight,
        breakers=breakers,
        redis_memory_bytes=int(client.info("memory").get("used_memory", 0)),
        workload=_workload(load, workers, last_minute),
        campaigns=campaigns,
        alerts=wait_alerts.active(client),
        delivery_rate=delivery_rate(delivered, undelivered),
        delivered=delivered,
        undelivered=undelivered,
        avg_delivery_s=round(delivery_ms / delivered / 1000, 1) if delivered else None,
        max_delivery_s=round(slowest_delivery / 1000, 1) if delivered else None,
        replies=replies,
        reports_pending=report_inbox.pending(client),
        unmatched_reports=count_unmatched(session),
        read_at=now,
    )
