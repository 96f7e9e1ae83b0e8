"""Sending a job's messages: pause flag, breaker, quiet hours, rate limit, claim, provider
call, then the decision (``send_decision``) applied.

A job goes a batch at a time, as many messages as the send pool calls at once: one Redis
round trip for the pause flag and the breaker, one rate-limit reservation, one claim
statement, the calls in parallel (concurrency is what lets a worker keep up with a rate
limit when the provider takes 50-100 ms per call), then one transaction for the sent ones.
Per message, that was two transactions and four round trips, with four processes taking
turns at SQLite's one write lock. Each message is still claimed before its call and its
outcome recorded after it; a crash at any point loses nothing, and a message whose worker
died is taken over by the lease sweep, whose rules (engine.store.delivery_state) hold for
every message of a batch.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
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
    claim_many,
    mark_dead,
    mark_retry,
    mark_sent_many,
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


# A batch's rate-limit slots span at most this long, and at most a quarter of the call's
# time: the last message of a batch waits that long after the claim for its slot, out of
# the provider_timeout_s its call has (its deadline counts from before the claim).
MAX_SLOT_SPREAD_S = 1.0


@dataclass(frozen=True)
class _Job:
    """The task being run: whose messages, from which states, and how to put them back."""

    campaign_id: int
    queue: str
    window: SendWindow
    allowed: tuple[MessageStatus, ...]
    task_name: str

    def again(self, message_ids: Sequence[int]) -> list[scheduler.Job]:
        """The job(s) that send these messages later as this task would have: a chunk stays
        a chunk; a single message keeps whether it is a retry."""
        if self.task_name == SEND_CHUNK:
            return [scheduler.Job(SEND_CHUNK, [self.campaign_id, list(message_ids)],
                                  self.queue)]
        retry = MessageStatus.FAILED in self.allowed
        return [message_job(self.campaign_id, mid, self.queue, retry=retry)
                for mid in message_ids]


@dataclass(frozen=True)
class _Batch:
    lanes: int  # how many messages it may take: one send thread each
    breaker_to_reset: bool  # the breaker counted failures, or was open, when it began


@dataclass(frozen=True)
class _Called:
    """One claimed message's provider call, done."""

    claimed: Claimed
    result: SendResult
    trace: str | None
    call_ms: float
    finished: float  # time.monotonic() when the answer came


def send_messages(rt: Runtime, campaign_id: int, message_ids: Sequence[int],
                  allowed: Iterable[MessageStatus], task_name: str) -> None:
    """Send the job's messages a batch at a time (see ``_send_batch``)."""
    allowed = tuple(allowed)
    if rt.redis.exists(redis_keys.campaign_paused(campaign_id)):
        return  # paused: the messages stay queued, durable, for resume
    with rt.db.session() as session:
        campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        return  # the campaign was deleted
    job = _Job(campaign_id, campaign.queue, campaign_window(campaign), allowed, task_name)
    if _held(rt, job, message_ids):
        return  # inside the campaign's quiet hours: the whole job waits for their end
    sample = metrics.Sample()
    try:
        rest = list(message_ids)
        while rest:
            done = _send_batch(rt, job, rest, sample)
            if not done:
                break  # the rest was put back (breaker, quiet hours) or the campaign paused
            rest = rest[done:]
    finally:
        _record_sample(rt, sample)
    with rt.db.session() as session:
        finish_campaign_if_done(session, campaign_id)


def _record_sample(rt: Runtime, sample: metrics.Sample) -> None:
    try:
        metrics.record(rt.redis, rt.settings, sample)
    except redis.RedisError as exc:  # figures, not state: never fail a send for them
        log.warning("could not record send metrics: %s", exc)


def _send_batch(rt: Runtime, job: _Job, rest: list[int], sample: metrics.Sample) -> int:
    """Send the first few of ``rest`` together: one Redis round trip for the pause flag and
    the breaker's state, one claim statement, their calls at once on the send pool, one
    transaction for the sent ones. How many of ``rest`` it dealt with; 0 when the campaign
    is paused or the rest was put back in the schedule, untried (breaker open, quiet
    hours)."""
    pipe = rt.redis.pipeline(transaction=False)
    pipe.exists(redis_keys.campaign_paused(job.campaign_id))
    pipe.get(rt.breaker.open_until_key)
    pipe.exists(rt.breaker.failures_key)
    paused, open_until, failing = pipe.execute()
    if paused:
        return 0  # the rest stay queued, durable, for resume
    if _held(rt, job, rest):
        return 0  # a chunk that ran into the quiet hours: the rest wait for their end
    admission = rt.breaker.admit(open_until)
    if admission.wait_s > 0:  # provider failing: come back after the cool-down
        due = time.time() + admission.wait_s
        scheduler.schedule(rt.redis, [(due, again) for again in job.again(rest)])
        return 0
    batch = _Batch(
        # A half-open breaker lets one probe through: one message, not a batch.
        lanes=rt.lanes.take(1 if admission.probe else _batch_size(rt, len(rest))),
        # A success resets the breaker's count of failures in a row; a breaker closed with
        # no failure counted when the batch began has nothing to reset (saves a round trip
        # per batch).
        breaker_to_reset=bool(failing) or open_until is not None)
    try:
        return _claim_and_send(rt, job, rest, batch, sample)
    finally:
        rt.lanes.give(batch.lanes)


def _batch_size(rt: Runtime, remaining: int) -> int:
    """As many as the send pool calls at once, and no more rate-limit slots than fit in the
    spread allowed (MAX_SLOT_SPREAD_S)."""
    size = min(remaining, rt.settings.send_concurrency)
    if rt.limiter.interval_s > 0:
        spread = min(MAX_SLOT_SPREAD_S, rt.settings.provider_timeout_s / 4)
        size = min(size, 1 + int(spread / rt.limiter.interval_s))
    return max(size, 1)


def _claim_and_send(rt: Runtime, job: _Job, rest: list[int], batch: _Batch,
                    sample: metrics.Sample) -> int:
    size = batch.lanes
    message_ids = rest[:size]
    # Every wait happens before the claim (the lease's rules, engine.store.delivery_state):
    # the batch's slots are reserved together and the first one is waited for here; the
    # others follow within MAX_SLOT_SPREAD_S and are waited for inside each call's deadline.
    waits = rt.limiter.reserve_many(size)
    reserved_at = time.monotonic()
    if waits[0] > 0:
        time.sleep(waits[0])
        if _held(rt, job, rest):
            return 0  # the window began during the wait
    # The calls' deadline counts from before the claim, so a slow claim (a busy database)
    # or a message's wait for its slot shortens its call instead of stretching the time
    # it stays claimed.
    deadline = time.monotonic() + rt.settings.provider_timeout_s
    with rt.db.session() as session:
        claimed = claim_many(session, message_ids, job.allowed, job.queue)
    # Any message missing was already sent, dead, cancelled, or is being sent by another
    # task; a suppressed one opted out since it was queued: the claim ended it, unsent.
    for message in claimed:
        if message.suppressed:
            sample.add(_message_scopes(job.queue, job.campaign_id), Metric.SUPPRESSED)
    to_send = [message for message in claimed if not message.suppressed]
    slots = [reserved_at + wait for wait in waits]
    futures = [rt.pool.submit(_call, rt, message, slot, deadline)
               for message, slot in zip(to_send, slots, strict=False)]
    _record(rt, job, batch, [future.result() for future in futures], sample)
    return size


def _call(rt: Runtime, claimed: Claimed, slot: float, deadline: float) -> _Called:
    """One provider call, on a send thread, at its rate-limit slot (a ``time.monotonic()``
    value) and done by ``deadline``. Never raises: an unexpected error is a transient
    failure, so the message is retried, not lost."""
    wait = slot - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    trace = None
    started = time.monotonic()
    try:
        result = rt.provider.send(claimed.sms, deadline=deadline)
    except Exception as exc:  # a bug or an unexpected answer: treat as transient, keep it
        log.exception("provider call failed for message %s", claimed.sms.message_id)
        result = SendResult(Outcome.TRANSIENT, error_type=type(exc).__name__, error=str(exc))
        trace = traceback.format_exc()
    finished = time.monotonic()
    return _Called(claimed, result, trace, (finished - started) * 1000, finished)


def _record(rt: Runtime, job: _Job, batch: _Batch, calls: list[_Called],
            sample: metrics.Sample) -> None:
    """Store the batch's outcomes: the sent ones in one transaction (nearly all of them),
    each other outcome in its own (``_apply``), then tell the breaker."""
    policy = RetryPolicy.from_settings(rt.settings)
    decided = [(call, decide(call.result, call.claimed.attempts, policy)) for call in calls]
    sent = [(call.claimed.sms.message_id, call.result)
            for call, decision in decided if decision.verdict is Verdict.SENT]
    if sent:
        with rt.db.session() as session:
            mark_sent_many(session, sent, provider=rt.provider.name,
                           can_fetch_status=rt.provider.can_fetch_status,
                           report_poll_s=rt.settings.report_poll_s)
    for call, decision in decided:
        if decision.verdict is not Verdict.SENT:
            _apply(rt, call.claimed, call.result, decision, job.task_name, call.trace)
    _tell_breaker(rt, batch, [(call.finished, decision.breaker) for call, decision in decided])
    for call, decision in decided:
        _observe(sample, rt.provider.name, job.queue, job.campaign_id, call.result,
                 call.call_ms, decision.verdict)
        # The development inspector; nothing when it is off.
        record_message(call.claimed, call.result, decision.verdict)


def _tell_breaker(rt: Runtime, batch: _Batch, notes: list[tuple[float, BreakerNote]]) -> None:
    """What the batch's answers (when each came, what it says) tell the breaker, as if told
    one by one in the order they came: a success resets the count of failures in a row, so
    one reset stands for all the successes, followed by the failures that came after the
    last of them. After the commit, and allowed to fail: the delivery state is what must
    not be lost."""
    ordered = [note for _, note in sorted(notes, key=lambda n: n[0])]
    successes = [i for i, note in enumerate(ordered) if note is BreakerNote.SUCCESS]
    after = ordered[successes[-1] + 1:] if successes else ordered
    try:
        if successes and batch.breaker_to_reset:
            rt.breaker.record_success()
        for note in after:
            if note is BreakerNote.FAILURE:
                rt.breaker.record_failure()
    except redis.RedisError as exc:
        log.warning("could not update the circuit breaker: %s", exc)


def _held(rt: Runtime, job: _Job, message_ids: Sequence[int]) -> bool:
    """Inside the campaign's quiet hours: the messages go back to the schedule until their
    end, before any claim, so no attempt is spent. Asked before every batch, so the jobs to
    put back are built only when they are held."""
    now = datetime.now(UTC)
    if job.window.held_until(now) is None:
        return False
    held = [quiet_hold.hold(rt.redis, job.window, job.campaign_id, again, now)
            for again in job.again(message_ids)]
    return all(until is not None for until in held)


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
    """Store a decision other than sent: the message's row, its retry, or the pause."""
    message_id = claimed.sms.message_id
    campaign_id = claimed.sms.campaign_id
    with rt.db.session() as session:
        if decision.verdict is Verdict.RETRY:
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
        elif decision.verdict is Verdict.PAUSE:
            release_claim(session, message_id)
            pause_campaign(session, campaign_id, decision.pause_reason)
            rt.redis.set(redis_keys.campaign_paused(campaign_id), decision.pause_reason)
            log.warning("campaign %s paused: %s", campaign_id, decision.pause_reason)
    if decision.verdict is Verdict.DEAD:  # only the final failure is reported, never a retry
        report_dead(campaign_id, message_id, result.error_type or "Error", claimed.attempts)
