"""Sending a job's messages: rate limit, breaker, claim, provider call, record.

Concurrency inside a job (a thread pool) is what lets a worker keep up with a rate limit
when the provider takes 50-100 ms per call; each message is still claimed and recorded on
its own, so a crash at any point loses nothing and sends nothing twice.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Iterable, Sequence

import redis
from sqlalchemy import select

from engine.domain.retry_policy import backoff_s
from engine.domain.sending import Outcome, SendResult
from engine.infra import metrics, redis_keys, scheduler
from engine.monitoring.inspector import record_message
from engine.monitoring.telemetry import report_dead
from engine.pipeline.runtime import Runtime
from engine.store.delivery_state import (
    Claimed,
    claim,
    finish_campaign_if_done,
    mark_dead,
    mark_retry,
    mark_sent,
    pause_campaign,
    release_claim,
)
from engine.store.models import Campaign, MessageStatus

log = logging.getLogger(__name__)

SEND_MESSAGE = "relaydesk.send_message"
SEND_CHUNK = "relaydesk.send_chunk"
PROCESS_BULK = "relaydesk.process_bulk"


def message_job(campaign_id: int, message_id: int, queue: str, *, retry: bool) -> scheduler.Job:
    return scheduler.Job(SEND_MESSAGE, [campaign_id, message_id, retry], queue)


def send_messages(rt: Runtime, campaign_id: int, message_ids: Sequence[int],
                  allowed: Iterable[MessageStatus], task_name: str) -> None:
    allowed = tuple(allowed)
    if rt.redis.exists(redis_keys.campaign_paused(campaign_id)):
        return  # paused: the messages stay queued, durable, for resume
    with rt.db.session() as session:
        queue = session.scalar(select(Campaign.queue).where(Campaign.id == campaign_id))
    if queue is None:
        return  # the campaign was deleted
    sample = metrics.Sample()
    futures = [rt.pool.submit(_deliver_one, rt, campaign_id, mid, allowed, queue, task_name,
                              sample)
               for mid in message_ids]
    try:
        for future in futures:
            future.result()
    finally:
        _record_sample(rt, sample)
    with rt.db.session() as session:
        finish_campaign_if_done(session, campaign_id)


def _record_sample(rt: Runtime, sample: metrics.Sample) -> None:
    try:
        metrics.record(rt.redis, rt.settings, sample)
    except redis.RedisError as exc:  # figures, not state: never fail a send for them
        log.warning("could not record send metrics: %s", exc)


def _deliver_one(rt: Runtime, campaign_id: int, message_id: int,
                 allowed: tuple[MessageStatus, ...], queue: str, task_name: str,
                 sample: metrics.Sample) -> None:
    if rt.redis.exists(redis_keys.campaign_paused(campaign_id)):
        return
    wait = rt.breaker.wait_s()
    if wait > 0:  # provider failing: come back after the cool-down, attempt not spent
        retry = MessageStatus.FAILED in allowed
        job = message_job(campaign_id, message_id, queue, retry=retry)
        scheduler.schedule(rt.redis, [(time.time() + wait, job)])
        return
    # Every wait happens before the claim: once a message is claimed, only the provider
    # call (bounded by its deadline) stands between the claim and its outcome.
    delay = rt.limiter.reserve()
    if delay > 0:
        time.sleep(delay)
    # The call's deadline counts from before the claim, so a slow claim (a busy database)
    # shortens the call instead of stretching the time the message stays claimed.
    deadline = time.monotonic() + rt.settings.provider_timeout_s
    with rt.db.session() as session:
        claimed = claim(session, message_id, allowed, queue)
    if claimed is None:
        return  # already sent, dead, cancelled, or being sent by another task
    trace = None
    started = time.monotonic()
    try:
        result = rt.provider.send(claimed.sms, deadline=deadline)
    except Exception as exc:  # a bug or an unexpected answer: treat as transient, keep it
        log.exception("provider call failed for message %s", message_id)
        result = SendResult(Outcome.TRANSIENT, error_type=type(exc).__name__, error=str(exc))
        trace = traceback.format_exc()
    call_ms = (time.monotonic() - started) * 1000
    outcome = _record(rt, claimed, result, task_name, trace)
    _observe(sample, rt.provider.name, queue, campaign_id, result, call_ms, outcome)
    record_message(claimed, result)  # the development inspector; nothing when it is off


def _observe(sample: metrics.Sample, provider: str, queue: str, campaign_id: int,
             result: SendResult, call_ms: float, outcome: str | None) -> None:
    calls = (metrics.ALL, metrics.provider_scope(provider))
    sample.add(calls, metrics.CALLS)
    sample.timing(calls, metrics.CALL_MS, metrics.CALL_MAX_MS, call_ms)
    if result.outcome is not Outcome.SENT:
        sample.add(calls, metrics.CALL_ERRORS)
    if outcome is not None:
        sample.add((metrics.ALL, metrics.queue_scope(queue), metrics.campaign_scope(campaign_id)),
                   outcome)


def _record(rt: Runtime, claimed: Claimed, result: SendResult, task_name: str,
            trace: str | None) -> str | None:
    """Store the outcome; returns the metric it counts as (sent, retried, dead) or None."""
    settings = rt.settings
    outcome: str | None = metrics.SENT
    message_id = claimed.sms.message_id
    dead = False
    with rt.db.session() as session:
        if result.outcome is Outcome.SENT:
            mark_sent(session, message_id, result)
        elif result.outcome is Outcome.TRANSIENT:
            if claimed.attempts < settings.max_attempts:
                outcome = metrics.RETRIED
                mark_retry(session, message_id, result)
                due = time.time() + backoff_s(claimed.attempts, settings.retry_backoff_s,
                                              settings.retry_backoff_max_s)
                job = message_job(claimed.sms.campaign_id, message_id, claimed.queue,
                                  retry=True)
                # Scheduled before the commit: if we die in between, the row stays
                # 'sending', the job finds nothing to claim, and the lease sweep retries it.
                scheduler.schedule(rt.redis, [(due, job)])
            else:
                mark_dead(session, claimed, result, task_name, trace)
                dead = True
        elif result.outcome is Outcome.PERMANENT:
            mark_dead(session, claimed, result, task_name, trace)
            dead = True
        else:  # account-level: no message can go out; pause instead of burning attempts
            outcome = None
            release_claim(session, message_id)
            reason = f"{result.error_type}: {result.error}"
            pause_campaign(session, claimed.sms.campaign_id, reason)
            rt.redis.set(redis_keys.campaign_paused(claimed.sms.campaign_id), reason)
            log.warning("campaign %s paused: %s", claimed.sms.campaign_id, reason)
    if dead:  # only the final failure is reported, never a retry
        outcome = metrics.DEAD
        report_dead(claimed.sms.campaign_id, message_id, result.error_type or "Error",
                    claimed.attempts)
    # After the commit, and allowed to fail: the delivery state is what must not be lost.
    try:
        if result.outcome is Outcome.SENT:
            rt.breaker.record_success()
        elif result.outcome is Outcome.TRANSIENT:
            rt.breaker.record_failure()
    except redis.RedisError as exc:
        log.warning("could not update the circuit breaker: %s", exc)
    return outcome
