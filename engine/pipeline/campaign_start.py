"""Starting a campaign: handing a queued one to the workers, and turning a scheduled one
into a queued one when its time comes.

A scheduled campaign lives in the database, not in Redis: a Redis restart cannot lose it,
and whichever worker looks first after its time starts it (the dispatcher asks every
``SCHEDULE_EVERY_S``). Starting is one transaction that moves it from ``scheduled`` and
writes its messages, so two workers, or a worker and an operator's "Send now", cannot both
start it. If the process dies after that commit and before the jobs are published, the
campaign is queued with no job anywhere, which is what the stall sweep recovers: its
messages' ``updated_at`` is the start, so the sweep waits its ``STALL_S`` from then, not
from the campaign's (long past) ``created_at``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import redis
from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from engine.config.settings import Settings
from engine.domain.personalize import Template
from engine.domain.planning import PlanError, Route
from engine.infra import scheduler
from engine.infra.celery_app import publish
from engine.monitoring import inspector
from engine.pipeline.sender import PROCESS_BULK, paced_message_jobs
from engine.store import delivery_state
from engine.store.audience_query import count_audience, render_audience
from engine.store.campaign_rows import (
    CreatedCampaign,
    campaign_audience,
    campaign_window,
    fill_campaign,
)
from engine.store.db import Database
from engine.store.models import Campaign, CampaignStatus, MessageStatus, utcnow

log = logging.getLogger(__name__)

MISSED_PREFIX = "missed its time"
# A scheduled campaign whose start failed (the database refused, say) is tried again after
# this long; one that keeps failing is marked missed once RELAYDESK_SCHEDULE_MAX_LATE passes.
RETRY_START_S = 60.0


def enqueue_campaign(db: Database, client: Any, settings: Settings,
                     created: CreatedCampaign) -> None:
    """Hand a queued campaign to the workers: one bulk job, or individual jobs paced in
    Redis."""
    plan = created.plan
    if plan.route is Route.BULK:
        publish(PROCESS_BULK, [created.id], plan.queue)
        return
    with db.session() as session:
        ids = delivery_state.message_ids(session, created.id, MessageStatus.QUEUED)
        # Only from queued: an operator may have cancelled or paused it since it was
        # committed (a worker starting a scheduled campaign), and that must stand.
        started: CursorResult[Any] = session.execute(  # type: ignore[assignment]
            update(Campaign).where(Campaign.id == created.id)
            .where(Campaign.status == CampaignStatus.QUEUED)
            .values(status=CampaignStatus.SENDING, started_at=utcnow()))
        if not started.rowcount:
            return
    scheduler.schedule(client, paced_message_jobs(created.id, ids, plan.queue, time.time(),
                                                  settings.pacing_individual_s))


def fill_now(session: Session, settings: Settings, campaign: Campaign,
             now: datetime) -> CreatedCampaign:
    """Render the campaign's messages for its audience as of ``now`` (its "today", in the
    zone it recorded) and mark it queued; PlanError when nobody is left to send to."""
    window = campaign_window(campaign)
    today = window.today(now)
    audience = campaign_audience(campaign)
    template = Template.parse(campaign.template)
    counted = count_audience(session, audience, today)
    # Read whole (batch=None): the rows are then written through the same connection while
    # the next are rendered.
    messages = render_audience(session, template, audience, today, settings.currency_format,
                               batch=None)
    return fill_campaign(session, campaign, messages, suppressed=counted.suppressed,
                         policy=settings.plan_policy())


@dataclass(frozen=True)
class Started:
    campaign_id: int
    created: CreatedCampaign | None  # None: nobody was left to send to; it completed empty
    late_s: float


def start_scheduled(db: Database, client: Any, settings: Settings, campaign_id: int,
                    now: datetime | None = None, *, late_ok: bool = False) -> Started | None:
    """Start a scheduled campaign that is due (or, ``late_ok``, at once: the operator's
    "Send now"). None when it is not this caller's to start: not scheduled any more, not
    due yet, or found later than RELAYDESK_SCHEDULE_MAX_LATE (then it is marked missed and
    waits for the operator)."""
    now = now or utcnow()
    with db.session() as session:
        campaign = session.get(Campaign, campaign_id)
        if campaign is None or campaign.status != CampaignStatus.SCHEDULED:
            return None
        due = campaign.scheduled_at or now
        late_s = max(0.0, (now - due).total_seconds())
        if not late_ok:
            if due > now or (campaign.pause_reason or "").startswith(MISSED_PREFIX):
                return None
            if late_s > settings.schedule_max_late_s:
                _mark_missed(session, campaign, now)
                return None
        # The one step that decides who starts it: only one UPDATE finds it scheduled. A
        # worker also needs it still scheduled for the time it judged due: an operator may
        # have moved it later since it was read.
        take = update(Campaign).where(Campaign.id == campaign_id) \
            .where(Campaign.status == CampaignStatus.SCHEDULED)
        if not late_ok:
            take = take.where(Campaign.scheduled_at == campaign.scheduled_at)
        taken: CursorResult[Any] = session.execute(  # type: ignore[assignment]
            take.values(status=CampaignStatus.DRAFT, pause_reason=None))
        if not taken.rowcount:
            return None
        session.refresh(campaign)
        try:
            created: CreatedCampaign | None = fill_now(session, settings, campaign, now)
        except PlanError as exc:
            # Everyone it matched paid, left the filter or opted out since it was scheduled.
            created = None
            counted = count_audience(session, campaign_audience(campaign),
                                     campaign_window(campaign).today(now))
            campaign.status = CampaignStatus.COMPLETED
            campaign.recipients = 0
            campaign.suppressed = counted.suppressed
            campaign.finished_at = now
            campaign.pause_reason = f"nobody to send to at its time: {exc}"
    if created is None:
        log.info("scheduled campaign %s had nobody to send to at its time; completed",
                 campaign_id)
    else:
        enqueue_campaign(db, client, settings, created)
        log.info("scheduled campaign %s started %.0f s after its time", campaign_id, late_s)
    return Started(campaign_id, created, late_s)


def _mark_missed(session: Session, campaign: Campaign, now: datetime) -> None:
    window = campaign_window(campaign)
    due = campaign.scheduled_at or now
    # Only while it is still scheduled for that time: an operator's "Send now" or
    # "Reschedule" may have changed it since it was read, and it must not read as missed.
    session.execute(
        update(Campaign).where(Campaign.id == campaign.id)
        .where(Campaign.status == CampaignStatus.SCHEDULED)
        .where(Campaign.scheduled_at == campaign.scheduled_at)
        .values(pause_reason=(
            f"{MISSED_PREFIX} ({due.astimezone(window.zone):%Y-%m-%d %H:%M} "
            f"{window.timezone}; no worker was running then): send it now or reschedule it")))
    log.warning("scheduled campaign %s missed its time by %s; waiting for the operator",
                campaign.id, timedelta(seconds=round((now - due).total_seconds())))


def due_campaigns(session: Session, now: datetime, limit: int = 20,
                  skip: Sequence[int] = ()) -> list[int]:
    """Scheduled campaigns whose time has come and that are not marked missed (nor in
    ``skip``: those whose start failed a moment ago)."""
    stmt = (select(Campaign.id).where(Campaign.status == CampaignStatus.SCHEDULED)
            .where(Campaign.scheduled_at <= now)
            .where((Campaign.pause_reason.is_(None))
                   | ~Campaign.pause_reason.startswith(MISSED_PREFIX)))
    if skip:
        stmt = stmt.where(Campaign.id.not_in(list(skip)))
    return list(session.scalars(stmt.order_by(Campaign.scheduled_at).limit(limit)))


def start_due_campaigns(db: Database, client: Any, settings: Settings,
                        now: datetime | None = None, *,
                        backoff: dict[int, float] | None = None) -> list[Started]:
    """Start every scheduled campaign that is due; what was started. One campaign that
    cannot start does not hold up the others: it stays scheduled, and ``backoff`` (campaign
    id -> monotonic time, kept by the caller between calls) leaves it alone for
    RETRY_START_S, so a lasting failure is logged once a minute, not every second."""
    now = now or utcnow()
    backoff = {} if backoff is None else backoff
    clock = time.monotonic()
    # The look itself is not recorded by the inspector: asked every second, it would fill
    # its SQL tab; the starts are (they are events).
    with db.session() as session, inspector.unrecorded():
        due = due_campaigns(session, now, skip=waiting_out(backoff, clock))
    started = []
    for campaign_id in due:
        try:
            result = start_scheduled(db, client, settings, campaign_id, now)
        except (redis.ConnectionError, redis.TimeoutError):
            raise  # Redis is down for every campaign: the caller waits and tries again
        except Exception as exc:
            if campaign_id in backoff:
                log.warning("scheduled campaign %s still cannot start (%s); trying again in "
                            "%.0f s", campaign_id, type(exc).__name__, RETRY_START_S)
            else:
                log.exception("scheduled campaign %s could not be started; trying again in "
                              "%.0f s", campaign_id, RETRY_START_S)
            backoff[campaign_id] = clock + RETRY_START_S
            continue
        backoff.pop(campaign_id, None)
        if result is not None:
            started.append(result)
    return started


def waiting_out(backoff: dict[int, float], clock: float) -> list[int]:
    """The campaigns whose last start failed less than RETRY_START_S ago."""
    for campaign_id in [c for c, until in backoff.items() if until <= clock]:
        del backoff[campaign_id]
    return list(backoff)
