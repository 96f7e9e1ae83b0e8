"""Sending a job's messages: rate limit, breaker, claim, provider call, then the decision
(``send_decision``) applied.

Concurrency inside a job (a thread pool) is what lets a worker keep up with a rate limit
when the provider takes 50-100 ms per call; each message is still claimed and recorded on
its own, so a crash at any point loses nothing and sends nothing twice.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import redis

from engine.domain.planning import chunk_bounds
from engine.domain.send_window import SendWindow
from engine.domain.sending import Outcome, SendResult, Verdict
from engine.infra import metrics, redis_keys, scheduler
from engine.infra.metrics import Metric
from engine.monitoring.inspector import record_message
from engine.monitoring.telemetry import report_dead
from engine.pipeline import quiet_hold
from engine.pipeline.runtime import Runtime
from engine.pipeline.send_decision import BreakerNote, Decision, RetryPolicy, decide
from engine.store.campaign_rows import campaign_window
from engine.store.campaign_state import finish_campaign_if_done, pause_campaign
from engine.store.delivery_state import (
    Claimed,
    claim,
    mark_dead,
    mark_retry,
    mark_sent,
    mark_suppressed,
    release_claim,
)
from engine.store.models import Campaign, MessageStatus, OptSource
from engine.store.optouts import list_number

log = logging.getLogger(__name__)

SEND_MESSAGE = "relaydesk.send_message"
SEND_CHUNK = "relaydesk.send_chunk"
PROCESS_BULK = "relaydesk.process_bulk"

# The metric each verdict counts as; a pause counts as none (the message waits, untried).
_COUNTED_AS = {Verdict.SENT: Metric.SENT, Verdict.RETRY: Metric.RETRIED,
               Verdict.DEAD: Metric.DEAD, Verdict.SUPPRESSED: Metric.SUPPRESSED}


def message_job(campaign_id: int, message_id: int, queue: str, *, retry: bool) -> scheduler.Job:
    return scheduler.Job(SEND_MESSAGE, [campaign_id, message_id, retry], queue)


def paced_message_jobs(campaign_id: int, message_ids: list[int], queue: str, start: float,
                       pacing_s: float) -> list[tuple[float, scheduler.Job]]:
    """The campaign's first attempts at these messages (the individual route), the i-th due
    at ``start + i * pacing_s``."""
    return [(start + i * pacing_s, message_job(campaign_id, mid, queue, retry=False))
            for i, mid in enumerate(message_ids)]


def chunk_jobs(campaign_id: int, message_ids: list[int], queue: str, size: int, start: float,
               pacing_s: float = 0.0) -> list[tuple[float, scheduler.Job]]:
    """The campaign's messages as send_chunk jobs of ``size`` each, the i-th due at
    ``start + i * pacing_s``."""
    return [(start + i * pacing_s,
             scheduler.Job(SEND_CHUNK, [campaign_id, message_ids[a:b]], queue))
            for i, (a, b) in enumerate(chunk_bounds(len(message_ids), size))]


def send_messages(rt: Runtime, campaign_id: int, message_ids: Sequence[int],
                  allowed: Iterable[MessageStatus], task_name: str) -> None:
    allowed = tuple(allowed)
    if rt.redis.exists(redis_keys.campaign_paused(campaign_id)):
        return  # paused: the messages stay queued, durable, for resume
    with rt.db.session() as session:
        campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        return  # the campaign was deleted
    queue, window = campaign.queue, campaign_window(campaign)
    now = datetime.now(UTC)
    if window.held_until(now) is not None:  # inside the campaign's quiet hours
        again = (message_job(campaign_id, message_ids[0], queue,
                             retry=MessageStatus.FAILED in allowed)
                 if task_name == SEND_MESSAGE else
                 scheduler.Job(SEND_CHUNK, [campaign_id, list(message_ids)], queue))
        quiet_hold.hold(rt.redis, window, campaign_id, again, now)
        return  # the whole job waits for their end
    sample = metrics.Sample()
    futures = [rt.pool.submit(_deliver_one, rt, campaign_id, mid, allowed, queue, task_name,
                              sample, window)
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
                 sample: metrics.Sample, window: SendWindow) -> None:
    if rt.redis.exists(redis_keys.campaign_paused(campaign_id)):
        return
    if _held(rt, window, campaign_id, message_id, allowed, queue):
        return  # a chunk that ran into the quiet hours: the rest wait for their end
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
        if _held(rt, window, campaign_id, message_id, allowed, queue):
            return  # the window began during the wait
    # The call's deadline counts from before the claim, so a slow claim (a busy database)
    # shortens the call instead of stretching the time the message stays claimed.
    deadline = time.monotonic() + rt.settings.provider_timeout_s
    with rt.db.session() as session:
        claimed = claim(session, message_id, allowed, queue)
    if claimed is None:
        return  # already sent, dead, cancelled, or being sent by another task
    if claimed.suppressed:  # opted out since it was queued: the claim ended it, unsent
        sample.add(_message_scopes(queue, campaign_id), Metric.SUPPRESSED)
        return
    trace = None
    started = time.monotonic()
    try:
        result = rt.provider.send(claimed.sms, deadline=deadline)
    except Exception as exc:  # a bug or an unexpected answer: treat as transient, keep it
        log.exception("provider call failed for message %s", message_id)
        result = SendResult(Outcome.TRANSIENT, error_type=type(exc).__name__, error=str(exc))
        trace = traceback.format_exc()
    call_ms = (time.monotonic() - started) * 1000
    decision = decide(result, claimed.attempts, RetryPolicy.from_settings(rt.settings))
    _apply(rt, claimed, result, decision, task_name, trace)
    _observe(sample, rt.provider.name, queue, campaign_id, result, call_ms, decision.verdict)
    # The development inspector; nothing when it is off.
    record_message(claimed, result, decision.verdict)


def _held(rt: Runtime, window: SendWindow, campaign_id: int, message_id: int,
          allowed: tuple[MessageStatus, ...], queue: str) -> bool:
    """Inside the campaign's quiet hours: the message goes back to the schedule until
    their end, before any claim, so no attempt is spent. Asked for every message, so the
    job to put back is built only when one is held."""
    now = datetime.now(UTC)
    if window.held_until(now) is None:
        return False
    job = message_job(campaign_id, message_id, queue, retry=MessageStatus.FAILED in allowed)
    return quiet_hold.hold(rt.redis, window, campaign_id, job, now) is not None


def _observe(sample: metrics.Sample, provider: str, queue: str, campaign_id: int,
             result: SendResult, call_ms: float, verdict: Verdict) -> None:
    calls = (metrics.ALL, metrics.provider_scope(provider))
    sample.add(calls, Metric.CALLS)
    sample.timing(calls, Metric.CALL_MS, Metric.CALL_MAX_MS, call_ms)
    if result.outcome is not Outcome.SENT:
        sample.add(calls, Metric.CALL_ERRORS)
    counted = _COUNTED_AS.get(verdict)
    if counted is not None:
        sample.add(_message_scopes(queue, campaign_id), counted)


def _message_scopes(queue: str, campaign_id: int) -> tuple[str, str, str]:
    return metrics.ALL, metrics.queue_scope(queue), metrics.campaign_scope(campaign_id)


def _apply(rt: Runtime, claimed: Claimed, result: SendResult, decision: Decision,
           task_name: str, trace: str | None) -> None:
    """Store the decision: the message's row, its retry, the pause, the breaker."""
    message_id = claimed.sms.message_id
    campaign_id = claimed.sms.campaign_id
    with rt.db.session() as session:
        if decision.verdict is Verdict.SENT:
            mark_sent(session, message_id, result, provider=rt.provider.name,
                      can_fetch_status=rt.provider.can_fetch_status,
                      report_poll_s=rt.settings.report_poll_s)
        elif decision.verdict is Verdict.RETRY:
            mark_retry(session, message_id, result)
            job = message_job(campaign_id, message_id, claimed.queue, retry=True)
            # Scheduled before the commit: if we die in between, the row stays
            # 'sending', the job finds nothing to claim, and the lease sweep retries it.
            scheduler.schedule(rt.redis, [(time.time() + decision.retry_in_s, job)])
        elif decision.verdict is Verdict.DEAD:
            mark_dead(session, claimed, result, task_name, trace)
        elif decision.verdict is Verdict.SUPPRESSED:
            # The recipient opted out with the provider: never texted again, by any campaign.
            mark_suppressed(session, message_id, result)
            list_number(session, claimed.sms.to, reason=f"{result.error_type}: {result.error}",
                        source=OptSource.PROVIDER)
        else:  # Verdict.PAUSE
            release_claim(session, message_id)
            pause_campaign(session, campaign_id, decision.pause_reason)
            rt.redis.set(redis_keys.campaign_paused(campaign_id), decision.pause_reason)
            log.warning("campaign %s paused: %s", campaign_id, decision.pause_reason)
    if decision.verdict is Verdict.DEAD:  # only the final failure is reported, never a retry
        report_dead(campaign_id, message_id, result.error_type or "Error", claimed.attempts)
    # After the commit, and allowed to fail: the delivery state is what must not be lost.
    try:
        if decision.breaker is BreakerNote.SUCCESS:
            rt.breaker.record_success()
        elif decision.breaker is BreakerNote.FAILURE:
            rt.breaker.record_failure()
    except redis.RedisError as exc:
        log.warning("could not update the circuit breaker: %s", exc)
