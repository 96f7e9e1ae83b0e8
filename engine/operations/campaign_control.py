"""Operator control of a campaign (pause, resume, cancel; reschedule or send now a scheduled
one) and a one-number test send.

The outgoing_messages rows stay the source of truth throughout. Pausing changes no message:
queued ones stay queued, and a job that reaches a worker meanwhile does nothing (the Redis
pause flag is checked before every claim). Resuming plans jobs again from the rows, so it
continues exactly where sending stopped; a row covered by two jobs is still sent once,
because every send claims its row atomically. Cancelling marks the unsent rows cancelled,
a status no claim accepts.

A scheduled campaign has no message rows yet (engine.pipeline.campaign_start renders them
when it is due), so rescheduling or cancelling it changes only its row, conditionally on it
still being scheduled: a worker starting it at the same moment and the operator cannot both
win.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import date, datetime, timedelta
from typing import Any, cast

import kombu.exceptions
import redis
from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session

from engine.config.settings import Settings
from engine.domain.personalize import Recipient, Template
from engine.domain.phones import PhoneError, mask_phone, normalize_phone
from engine.domain.planning import Route
from engine.domain.send_window import ScheduleError
from engine.infra import redis_keys, scheduler
from engine.operations.campaigns import CampaignError, CreatedCampaign, send_campaign_to
from engine.pipeline import quiet_hold
from engine.pipeline.campaign_start import MISSED_PREFIX, start_scheduled
from engine.pipeline.sender import SEND_MESSAGE, chunk_jobs, message_job, paced_message_jobs
from engine.store import campaign_state, delivery_state
from engine.store.audience_query import count_audience
from engine.store.campaign_rows import campaign_audience, campaign_window
from engine.store.db import Database
from engine.store.models import (
    Campaign,
    CampaignStatus,
    Contact,
    MessageStatus,
    OutgoingMessage,
    utcnow,
)
from engine.store.optouts import is_opted_out

OPERATOR_PAUSE = "paused by operator"
PAUSABLE = (CampaignStatus.QUEUED, CampaignStatus.SENDING)
CANCELLABLE = (CampaignStatus.QUEUED, CampaignStatus.SENDING, CampaignStatus.PAUSED)
WAITING = (CampaignStatus.SCHEDULED,)  # missed ones included: they stay scheduled
# Rows a cancel takes back. 'sending' is included: if the worker holding one is alive, its
# result overwrites 'cancelled' (a message that went out is recorded as sent); if it died,
# the row would otherwise be taken over by the lease sweep and sent after the cancel.
UNSENT = (MessageStatus.QUEUED, MessageStatus.FAILED, MessageStatus.SENDING)
# A cancelled campaign keeps its pause flag for a day, then Redis drops it. The flag is what
# stops a message that was mid-call at cancel time, failed transiently and so came back as
# 'failed' with a retry job (a claim accepts 'failed' rows): that job is due within the
# retry backoff cap (1 h by default) or a breaker cool-down, far less than a day. Deleting
# the flag would let that retry send after the cancel; keeping it forever would leave one
# key per cancelled campaign in Redis for good.
CANCEL_FLAG_TTL_S = 24 * 3600
TEST_PREFIX = "Test send: "
_NAME_MAX = 200  # campaigns.name column


# --- pause / resume / cancel ---------------------------------------------------------------

def pause_campaign(db: Database, client: Any, campaign_id: int,
                   reason: str = OPERATOR_PAUSE) -> dict[str, Any]:
    """Stop sending a queued or sending campaign; its unsent messages wait in the database."""
    with db.session() as session:
        _require(session, campaign_id, PAUSABLE, "pause")
        campaign_state.pause_campaign(session, campaign_id, reason)
        # The campaign may have completed between the check and the update.
        _require(session, campaign_id, (CampaignStatus.PAUSED,), "pause")
        # Inside the transaction: if Redis cannot take the flag, the status rolls back too,
        # so a campaign is never shown paused while workers keep sending it.
        with _redis_errors("paused"):
            client.set(redis_keys.campaign_paused(campaign_id), reason)
    return _summary(db, campaign_id)


def resume_campaign(db: Database, client: Any, settings: Settings,
                    campaign_id: int) -> dict[str, Any]:
    """Send the rest of a paused campaign (paused by an operator or by an account error)."""
    with db.session() as session:
        _require(session, campaign_id, (CampaignStatus.PAUSED,), "resume")
    with _redis_errors("resumed"):
        # Before reading the rows: every row still queued after this gets a new job below,
        # so dropping the old pacing jobs loses nothing and keeps the pace honest.
        _drop_scheduled(client, campaign_id, keep_retries=True)
        # Its new jobs have not been moved past any quiet hours: the first to meet them
        # moves them all, so the pacing survives a resume inside the window.
        quiet_hold.forget_moves(client, campaign_id)
    with db.session() as session:
        if not _set_sending(session, campaign_id):
            _require(session, campaign_id, (CampaignStatus.PAUSED,), "resume")
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None
        queued = delivery_state.message_ids(session, campaign_id, MessageStatus.QUEUED)
        failed = delivery_state.message_ids(session, campaign_id, MessageStatus.FAILED)
        with _redis_errors("resumed"):
            client.delete(redis_keys.campaign_paused(campaign_id))
        route, queue = campaign.route, campaign.queue
    jobs = _resume_jobs(settings, campaign_id, route, queue, queued, failed)
    try:
        scheduler.schedule(client, jobs)
    except redis.RedisError as exc:
        raise CampaignError(
            f"campaign {campaign_id} is resumed, but its jobs could not be scheduled "
            f"({type(exc).__name__}); the workers queue its messages again on their own "
            "within a few minutes once Redis is back.") from None
    with db.session() as session:
        # Everything may have gone out while paused (the last messages were mid-send).
        campaign_state.finish_campaign_if_done(session, campaign_id)
    return _summary(db, campaign_id)


def cancel_campaign(db: Database, client: Any, campaign_id: int) -> dict[str, Any]:
    """Stop a campaign for good: unsent messages are cancelled, sent ones stay sent. A
    scheduled campaign is cancelled in the database alone (it has no message and no job)."""
    with db.session() as session:
        if _cancel_scheduled(session, campaign_id):
            return _summary_in(session, campaign_id)
        _require(session, campaign_id, CANCELLABLE, "cancel")
        if client is None:  # the console had no Redis for what looked like a scheduled one
            raise CampaignError(f"campaign {campaign_id} has started sending, and stopping it "
                                "needs Redis: start RelayDesk's Redis (or check "
                                "RELAYDESK_REDIS_URL), then cancel it again")
        if not _set_cancelled(session, campaign_id):
            _require(session, campaign_id, CANCELLABLE, "cancel")
        # Workers see the flag at once but the row changes only at commit: so the flag is,
        # for them, up before any message changes, and they stop taking messages first.
        with _redis_errors("cancelled"):
            client.set(redis_keys.campaign_paused(campaign_id), "cancelled",
                       ex=CANCEL_FLAG_TTL_S)
        _cancel_unsent(session, campaign_id)
    # Only tidying: every job left would find the flag, or a cancelled row, and do nothing.
    with suppress(redis.RedisError):
        _drop_scheduled(client, campaign_id, keep_retries=False)
    return _summary(db, campaign_id)


# --- scheduled campaigns ---------------------------------------------------------------

def reschedule_campaign(db: Database, campaign_id: int, at: datetime, settings: Settings,
                        *, now: datetime | None = None) -> dict[str, Any]:
    """Move a scheduled campaign (a missed one too: the mark is cleared) to ``at``, an aware
    instant; refused when ``at`` is past or inside the campaign's quiet hours."""
    if at.tzinfo is None:
        raise ValueError("reschedule_campaign needs an aware datetime (engine.domain."
                         "send_window.parse_when gives one)")
    now = now or utcnow()
    with db.session() as session:
        _require(session, campaign_id, WAITING, "reschedule")
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None
        window = campaign_window(campaign)
        try:
            window.check_send_time(at, now, owner="the campaign's")
        except ScheduleError as exc:
            raise CampaignError(f"{exc}, or send it at once with 'relaydesk campaign "
                                f"send-now {campaign_id}'; the campaign is unchanged.") from None
        # The estimate shown until it starts, as of its new day (its start counts again).
        counted = count_audience(session, campaign_audience(campaign),
                                 window.today(at))
        moved = cast(CursorResult[Any], session.execute(
            update(Campaign).where(Campaign.id == campaign_id)
            .where(Campaign.status == CampaignStatus.SCHEDULED)
            .values(scheduled_at=at, pause_reason=None, recipients=counted.recipients,
                    suppressed=counted.suppressed)))
        if not moved.rowcount:  # started (or cancelled) since the check
            _require(session, campaign_id, WAITING, "reschedule")
        session.expire_all()  # the summary reads the row as the UPDATE left it
        return _summary_in(session, campaign_id)


def send_now(db: Database, client: Any, settings: Settings,
             campaign_id: int) -> dict[str, Any]:
    """Start a scheduled campaign at once, before its time or after it was missed: its
    messages are rendered with today's figures for today's audience."""
    with db.session() as session:
        _require(session, campaign_id, WAITING, "send now")
    with _redis_errors("started"):
        client.ping()  # before anything changes: its jobs go to Redis
    try:
        started = start_scheduled(db, client, settings, campaign_id, late_ok=True)
    except (redis.RedisError, kombu.exceptions.OperationalError) as exc:
        # start_scheduled committed the messages, then publishing failed (Celery reports a
        # broker that went away as kombu's OperationalError).
        raise CampaignError(
            f"campaign {campaign_id} is started, but its jobs could not be queued "
            f"({type(exc).__name__}); the workers queue its messages on their own within a "
            "few minutes once Redis is back.") from None
    if started is None:
        with db.session() as session:
            status = session.scalar(select(Campaign.status)
                                    .where(Campaign.id == campaign_id))
        # A worker found it due at the same moment and started it: what was asked is done.
        if status not in (CampaignStatus.QUEUED, CampaignStatus.SENDING,
                          CampaignStatus.COMPLETED):
            with db.session() as session:
                _require(session, campaign_id, WAITING, "send now")
    return _summary(db, campaign_id)


def is_missed(summary: dict[str, Any]) -> bool:
    """Whether a campaign summary is a scheduled campaign that missed its time."""
    return bool(summary["status"] == CampaignStatus.SCHEDULED and
                (summary.get("pause_reason") or "").startswith(MISSED_PREFIX))


def _cancel_scheduled(session: Session, campaign_id: int) -> bool:
    result = cast(CursorResult[Any], session.execute(
        update(Campaign).where(Campaign.id == campaign_id)
        .where(Campaign.status == CampaignStatus.SCHEDULED)
        .values(status=CampaignStatus.CANCELLED, finished_at=utcnow(), pause_reason=None)))
    if result.rowcount:
        session.expire_all()
    return bool(result.rowcount)


def _summary(db: Database, campaign_id: int) -> dict[str, Any]:
    with db.session() as session:
        return _summary_in(session, campaign_id)


def _summary_in(session: Session, campaign_id: int) -> dict[str, Any]:
    summary = campaign_state.campaign_summary(session, campaign_id)
    if summary is None:
        raise _unknown(campaign_id)
    return summary


def _unknown(campaign_id: int) -> CampaignError:
    return CampaignError(f"there is no campaign {campaign_id}: check the number "
                         "(it is printed when the campaign is sent)")


def _require(session: Session, campaign_id: int, allowed: Sequence[CampaignStatus],
             action: str) -> None:
    # A fresh query, not session.get: the status may just have changed in this transaction.
    status = session.scalar(select(Campaign.status).where(Campaign.id == campaign_id))
    if status is None:
        raise _unknown(campaign_id)
    if status not in allowed:
        raise _refusal(campaign_id, status, action)


_ALLOWED = {  # action: (which campaigns, the action's past participle)
    "pause": ("a queued or sending", "paused"),
    "resume": ("a paused", "resumed"),
    "cancel": ("a scheduled, queued, sending or paused", "cancelled"),
    "reschedule": ("a scheduled", "rescheduled"),
    "send now": ("a scheduled", "sent now"),
}


def _refusal(campaign_id: int, status: str, action: str) -> CampaignError:
    allowed, done = _ALLOWED[action]
    return CampaignError(f"cannot {action} campaign {campaign_id}: it is {status}, and only "
                         f"{allowed} campaign can be {done}{_hint(campaign_id, status)}")


def _hint(campaign_id: int, status: str) -> str:
    """What the operator can do instead, given the campaign's state."""
    if status == CampaignStatus.PAUSED:
        return f"; resume it with 'relaydesk campaign resume {campaign_id}'"
    if status in (CampaignStatus.QUEUED, CampaignStatus.SENDING):
        return (f"; it is running: follow it with 'relaydesk campaign status {campaign_id}', "
                f"or stop it with 'relaydesk campaign pause {campaign_id}'")
    if status == CampaignStatus.COMPLETED:
        return (f"; every message was sent or given up (see 'relaydesk campaign status "
                f"{campaign_id}', and 'relaydesk failed list --campaign {campaign_id}')")
    if status == CampaignStatus.CANCELLED:
        return "; nothing more will be sent for it: send a new campaign instead"
    if status == CampaignStatus.SCHEDULED:
        return (f"; it has not started: 'relaydesk campaign send-now {campaign_id}' starts it "
                f"at once, 'relaydesk campaign reschedule {campaign_id} --at WHEN' moves it, "
                f"'relaydesk campaign cancel {campaign_id}' drops it")
    return "; it is still being created: try again in a moment"


@contextmanager
def _redis_errors(done: str) -> Iterator[None]:
    """Redis failures as one operator error; raised inside a session, they roll it back."""
    try:
        yield
    except redis.RedisError as exc:
        raise CampaignError(f"Redis is unreachable ({type(exc).__name__}), so the campaign "
                            f"was not {done}. Start RelayDesk's Redis or check "
                            "RELAYDESK_REDIS_URL.") from None


def _set_sending(session: Session, campaign_id: int) -> bool:
    result = cast(CursorResult[Any], session.execute(
        update(Campaign).where(Campaign.id == campaign_id)
        .where(Campaign.status == CampaignStatus.PAUSED)
        .values(status=CampaignStatus.SENDING, pause_reason=None,
                # paused before its bulk job ran: it starts now
                started_at=func.coalesce(Campaign.started_at, utcnow()))))
    return bool(result.rowcount)


def _set_cancelled(session: Session, campaign_id: int) -> bool:
    result = cast(CursorResult[Any], session.execute(
        update(Campaign).where(Campaign.id == campaign_id)
        .where(Campaign.status.in_([str(s) for s in CANCELLABLE]))
        # A pause reason would read as the campaign's state; it no longer is.
        .values(status=CampaignStatus.CANCELLED, finished_at=utcnow(), pause_reason=None)))
    return bool(result.rowcount)


def _cancel_unsent(session: Session, campaign_id: int) -> None:
    session.execute(
        update(OutgoingMessage).where(OutgoingMessage.campaign_id == campaign_id)
        .where(OutgoingMessage.status.in_([str(s) for s in UNSENT]))
        .values(status=MessageStatus.CANCELLED, claimed_at=None, updated_at=utcnow()))


def _resume_jobs(settings: Settings, campaign_id: int, route: str, queue: str,
                 queued: list[int], failed: list[int]) -> list[tuple[float, scheduler.Job]]:
    """The campaign's plan for what is left: the queued rows paced as when it was sent, and
    a retry due now for each failed row (its retry job may have come due while paused)."""
    now = time.time()
    jobs = [(now, message_job(campaign_id, mid, queue, retry=True)) for mid in failed]
    if route == Route.BULK:
        jobs += chunk_jobs(campaign_id, queued, queue, settings.chunk_size, now,
                           settings.pacing_chunk_s)
    else:
        jobs += paced_message_jobs(campaign_id, queued, queue, now,
                                   settings.pacing_individual_s)
    return jobs


def _drop_scheduled(client: Any, campaign_id: int, *, keep_retries: bool) -> int:
    """Remove a campaign's jobs from the durable schedule; returns how many.

    Retry jobs are kept on resume: a message mid-send while we read the rows may turn
    'failed' only afterwards, and then its own retry job is all that covers it.
    """
    # MATCH only narrows the scan (Redis glob: '[' escaped); it also matches campaign 51's
    # jobs for 5, so each job is decoded to check. No ',' after the id: a job whose only
    # argument is the campaign (process_bulk) has "args":[5].
    pattern = f'*"args":\\[{campaign_id}*'
    doomed = []
    for raw, _due in client.zscan_iter(redis_keys.SCHEDULED, match=pattern, count=1000):
        job = scheduler.Job.decode(raw)
        if not job.args or job.args[0] != campaign_id:
            continue
        if keep_retries and job.task == SEND_MESSAGE and len(job.args) > 2 and job.args[2]:
            continue
        doomed.append(raw)
    for start in range(0, len(doomed), 1000):
        client.zrem(redis_keys.SCHEDULED, *doomed[start:start + 1000])
    return len(doomed)


# --- test send -----------------------------------------------------------------------------

def send_test_message(db: Database, client: Any, settings: Settings, template_text: str,
                      phone: str, contact_id: int | None = None) -> CreatedCampaign:
    """Send the template, rendered for one contact, to one number, as a normal 1-recipient
    urgent campaign: it goes through the same pipeline and shows up like any campaign."""
    Template.parse(template_text)  # a bad template is reported before anything else
    to = _test_number(phone, settings.default_region)
    with db.session() as session:
        if is_opted_out(session, to):
            # It would only end 'suppressed' at send time, which looks like a silent failure.
            raise CampaignError(f"{mask_phone(to)} is on the opt-out list, so nothing is sent "
                                "to it: test with another number, or take it off the list "
                                "first ('relaydesk optouts remove NUMBER', or the Opt-outs "
                                "page)")
        label, values = _test_values(session, contact_id)
    name = f"{TEST_PREFIX}{mask_phone(to)} as {label}"[:_NAME_MAX]
    # No contact id on the row: the message goes to this number, not to the contact, and
    # the contact's delivery history must not show it.
    return send_campaign_to(db, client, settings, template_text, [(None, to, values)],
                            urgent=True, name=name)


def _test_number(phone: str, region: str) -> str:
    try:
        return normalize_phone(phone, region)
    except PhoneError as exc:
        raise CampaignError(f"the test number {exc}: give it in international form "
                            f"(+254712345678) or as a local number in {region}") from None


def _test_values(session: Session, contact_id: int | None) -> tuple[str, Recipient]:
    """(label, values) to render with: the given contact, else the first, else samples."""
    if contact_id is not None:
        contact = session.get(Contact, contact_id)
        if contact is None:
            raise CampaignError(f"there is no contact {contact_id}: see 'relaydesk contacts "
                                "list' for the ids")
    else:
        contact = session.scalar(select(Contact).order_by(Contact.id).limit(1))
    if contact is None:  # no contacts yet: made-up values, so every tag still shows
        return "sample values", Recipient("Sample Name", pledge_cents=1_000_000,
                                          paid_cents=250_000,
                                          due_date=date.today() + timedelta(days=30))
    return contact.name, Recipient(contact.name, contact.pledge_cents, contact.paid_cents,
                                   contact.due_date)
