"""Delivery state transitions of an outgoing message, each one atomic in the database.

queued -> sending (claim) -> sent | failed (a retry is due) | dead (see failed_jobs)
queued | failed -> suppressed (claim, its number opted out) | sending -> suppressed (the
provider said the recipient opted out)
Once sent, its delivery status starts at awaiting_report and moves only forward as reports
arrive (engine.store.delivery_reports).
A claim succeeds for exactly one task: the UPDATE only matches a row in an expected state,
or one left 'sending' by a worker that died (its claim older than the lease). The sender
claims a few messages at a time (``claim_many``, one statement) and records the sent ones
together (``mark_sent_many``, one transaction); each row still changes on its own terms.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import (
    ARRAY,
    Integer,
    String,
    Table,
    and_,
    bindparam,
    case,
    false,
    func,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from engine.config.settings import MAX_PROVIDER_TIMEOUT_S
from engine.domain.delivery import DeliveryStatus
from engine.domain.sending import SendResult, Sms
from engine.store.models import (
    Campaign,
    DeliveryAttempt,
    FailedJob,
    MessageStatus,
    OptOut,
    OutgoingMessage,
    UTCDateTime,
    utcnow,
)

# A message still 'sending' after the lease belongs to a worker that died, and is taken
# over (sent again). So the lease must outlast everything a live worker does between the
# claim and recording the outcome, or one slow call becomes a duplicate SMS:
# - waits (breaker, quiet hours, a free send thread, the rate-limit slot of a batch's first
#   message) all happen before the claim (engine.pipeline.sender);
# - every provider call of a claimed batch has a total deadline of
#   RELAYDESK_PROVIDER_TIMEOUT_S counted from before the claim, and settings refuse more
#   than MAX_PROVIDER_TIMEOUT_S (30 s): whatever a message waits for after the claim (its
#   own rate-limit slot, a slow claim) shortens its call and never stretches its claim;
# - the margin covers recording the outcomes (a database write, normally milliseconds,
#   after the batch's slowest call) and the clock difference between the machine that
#   claimed and the one that sweeps.
LEASE_MARGIN_S = 30.0
CLAIM_LEASE_S = MAX_PROVIDER_TIMEOUT_S + LEASE_MARGIN_S

_MESSAGES = cast(Table, OutgoingMessage.__table__)
_OPT_OUTS = cast(Table, OptOut.__table__)


@dataclass(frozen=True)
class Claimed:
    sms: Sms
    attempts: int
    queue: str
    # Its number was on the opt-out list when its turn came: the claim ended it
    # 'suppressed' instead of 'sending'; it must not be sent.
    suppressed: bool = False


def claim(session: Session, message_id: int, allowed: Iterable[MessageStatus], queue: str,
          now: datetime | None = None) -> Claimed | None:
    """``claim_many`` for one message: its Claimed, or None if it was not claimable."""
    claimed = claim_many(session, [message_id], allowed, queue, now)
    return claimed[0] if claimed else None


# The batch claim, built once: it runs hundreds of times a second, and building the
# statement (and its cache key) cost more CPU than SQLite took to run it. A number on the
# opt-out list ends the message 'suppressed' instead, except an opt-out notice.
_OPTED_OUT = and_(_MESSAGES.c.opt_out_notice == false(),
                  select(_OPT_OUTS.c.phone).where(_OPT_OUTS.c.phone == _MESSAGES.c.phone)
                  .exists())
_CLAIM_NOW = bindparam("now", type_=UTCDateTime())
# The status as an expression, which no index serves: SQLite (no statistics here) would
# otherwise answer the OR below from the status index, walking every queued message of
# the campaign, instead of looking up the batch's few ids by primary key (measured: the
# claim's cost grew with the campaign's size). PostgreSQL plans from its statistics and
# looks the ids up either way.
_STATUS_UNINDEXED = _MESSAGES.c.status.concat("")
_CLAIM = (
    update(_MESSAGES)
    .where(_MESSAGES.c.id.in_(bindparam("ids", expanding=True)))
    .where(or_(_STATUS_UNINDEXED.in_(bindparam("allowed", expanding=True)),
               (_STATUS_UNINDEXED == str(MessageStatus.SENDING))  # noqa: SIM300 (SQL)
               & (_MESSAGES.c.claimed_at < bindparam("stale", type_=UTCDateTime()))))
    .values(status=case((_OPTED_OUT, str(MessageStatus.SUPPRESSED)),
                        else_=str(MessageStatus.SENDING)),
            attempts=case((_OPTED_OUT, _MESSAGES.c.attempts),
                          else_=_MESSAGES.c.attempts + 1),
            claimed_at=case((_OPTED_OUT, null()), else_=_CLAIM_NOW),
            updated_at=_CLAIM_NOW)
    .returning(_MESSAGES.c.id, _MESSAGES.c.campaign_id, _MESSAGES.c.phone, _MESSAGES.c.body,
               _MESSAGES.c.attempts, _MESSAGES.c.status))


def claim_many(session: Session, message_ids: Sequence[int], allowed: Iterable[MessageStatus],
               queue: str, now: datetime | None = None) -> list[Claimed]:
    """Take the messages for sending, or end 'suppressed' (no attempt counted) those whose
    number is on the opt-out list: one statement, so an opt-out committed before the claim
    is always seen and none can slip in between the check and the claim. The one exception
    is an opt-out notice: the confirmation sent to a number that just opted out, which the
    list would otherwise stop.

    Each row is claimed on its own terms: only one in an ``allowed`` state, or one left
    'sending' by a worker that died (claimed before the lease); any other (already sent,
    cancelled, being sent by another task) is left alone and missing from the answer. The
    answer follows the order of ``message_ids``. All the claimed rows share one claim time,
    so the caller must finish every one of them within the lease (CLAIM_LEASE_S)."""
    if not message_ids:
        return []
    now = now or utcnow()
    rows = session.execute(_CLAIM, {
        "ids": list(message_ids), "allowed": [str(s) for s in allowed], "now": now,
        "stale": now - timedelta(seconds=CLAIM_LEASE_S)}).all()
    by_id = {row[0]: row for row in rows}  # RETURNING gives no order
    return [Claimed(Sms(id_, campaign_id, phone, body), attempts, queue,
                    suppressed=status == MessageStatus.SUPPRESSED)
            for id_, campaign_id, phone, body, attempts, status
            in (by_id[m] for m in message_ids if m in by_id)]


def mark_sent(session: Session, message_id: int, result: SendResult, *, provider: str,
              can_fetch_status: bool = False, report_poll_s: float = 0.0,
              now: datetime | None = None) -> None:
    """``mark_sent_many`` for one message."""
    mark_sent_many(session, [(message_id, result)], provider=provider,
                   can_fetch_status=can_fetch_status, report_poll_s=report_poll_s, now=now)


# Built once, like the claim; run once per message (executemany) with its provider id.
_SENT_NOW = bindparam("now", type_=UTCDateTime())
_MARK_SENT = (
    update(_MESSAGES).where(_MESSAGES.c.id == bindparam("message_id"))
    .values(status=str(MessageStatus.SENT), sent_at=_SENT_NOW, updated_at=_SENT_NOW,
            claimed_at=None, provider_message_id=bindparam("provider_id"),
            provider=bindparam("provider"), delivery=str(DeliveryStatus.AWAITING_REPORT),
            report_poll_at=bindparam("poll_at", type_=UTCDateTime())))


# PostgreSQL: the same as one statement for the batch, its ids and provider ids as two
# arrays. The count trigger (migration 0007) runs once per statement there, so executemany
# would run it once per message (measured: 10% of the send rate at 0 ms latency).
_SENT_ROWS = func.unnest(bindparam("message_ids", type_=ARRAY(Integer)),
                         bindparam("provider_ids", type_=ARRAY(String))
                         ).table_valued("id", "provider_id").render_derived()
_MARK_SENT_ARRAYS = (
    update(_MESSAGES).where(_MESSAGES.c.id == _SENT_ROWS.c.id)
    .values(status=str(MessageStatus.SENT), sent_at=_SENT_NOW, updated_at=_SENT_NOW,
            claimed_at=None, provider_message_id=_SENT_ROWS.c.provider_id,
            provider=bindparam("provider"), delivery=str(DeliveryStatus.AWAITING_REPORT),
            report_poll_at=bindparam("poll_at", type_=UTCDateTime())))


def mark_sent_many(session: Session, sent: Sequence[tuple[int, SendResult]], *,
                   provider: str, can_fetch_status: bool = False, report_poll_s: float = 0.0,
                   now: datetime | None = None) -> None:
    """The provider accepted these messages: they now await their delivery reports, each
    matched by (``provider``, its provider id). A provider that can be asked for the status
    (``can_fetch_status``) is asked ``report_poll_s`` after the send if no final report
    came by then (engine.pipeline.report_poller). In the caller's transaction: on SQLite
    one statement run once per message (executemany), on PostgreSQL one for all."""
    if not sent:
        return
    now = now or utcnow()
    poll_at = now + timedelta(seconds=report_poll_s) if can_fetch_status else None
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.execute(_MARK_SENT_ARRAYS, {
            "message_ids": [message_id for message_id, _ in sent],
            "provider_ids": [result.provider_message_id or None for _, result in sent],
            "provider": provider, "now": now, "poll_at": poll_at})
        return
    # On the connection: a list of parameters given to the session with a mapped class
    # would be the ORM's bulk update by primary key.
    connection.execute(_MARK_SENT, [
        {"message_id": message_id, "provider_id": result.provider_message_id or None,
         "provider": provider, "now": now, "poll_at": poll_at}
        for message_id, result in sent])


def _error_text(result: SendResult) -> str:
    return f"{result.error_type or 'Error'}: {result.error or ''}".strip()


def mark_retry(session: Session, message_id: int, result: SendResult) -> None:
    error = _error_text(result)
    now = utcnow()
    attempt = session.execute(
        update(OutgoingMessage).where(OutgoingMessage.id == message_id)
        .values(status=MessageStatus.FAILED, last_error=error, claimed_at=None,
                first_error=func.coalesce(OutgoingMessage.first_error, error),
                updated_at=now)
        .returning(OutgoingMessage.attempts)
    ).scalar_one_or_none()
    if attempt is not None:
        session.add(DeliveryAttempt(message_id=message_id, attempt=attempt, at=now, error=error))


def mark_suppressed(session: Session, message_id: int, result: SendResult) -> None:
    """The provider refused the claimed message because the recipient opted out or blocked
    the sender: it ends 'suppressed' with the provider's words, never retried (the sender
    lists the number in the same transaction)."""
    error = _error_text(result)
    session.execute(
        update(OutgoingMessage).where(OutgoingMessage.id == message_id)
        .values(status=MessageStatus.SUPPRESSED, claimed_at=None, last_error=error,
                first_error=func.coalesce(OutgoingMessage.first_error, error),
                updated_at=utcnow()))


def release_claim(session: Session, message_id: int) -> None:
    """Give a claimed message back untouched (its attempt not counted): account errors."""
    session.execute(
        update(OutgoingMessage).where(OutgoingMessage.id == message_id)
        .values(status=MessageStatus.QUEUED, attempts=OutgoingMessage.attempts - 1,
                claimed_at=None, updated_at=utcnow())
    )


def mark_dead(session: Session, claimed: Claimed, result: SendResult, task_name: str,
              traceback: str | None = None) -> FailedJob:
    """Park the message in the dead-letter store, in the same transaction as its state."""
    now = utcnow()
    error = _error_text(result)
    message = session.get(OutgoingMessage, claimed.sms.message_id)
    assert message is not None
    first_error = message.first_error or error
    message.status = MessageStatus.DEAD
    message.last_error = error
    message.first_error = first_error
    message.claimed_at = None
    message.updated_at = now
    previous = session.scalar(
        select(FailedJob.id).where(FailedJob.message_id == message.id)
        .order_by(FailedJob.id.desc()).limit(1))
    first_failed = session.scalar(
        select(func.min(FailedJob.first_failed_at)).where(FailedJob.message_id == message.id))
    session.add(DeliveryAttempt(message_id=message.id, attempt=claimed.attempts, at=now,
                                error=error))
    job = FailedJob(
        message_id=message.id, campaign_id=message.campaign_id, recipient=message.phone,
        queue=claimed.queue, task_name=task_name,
        payload=json.dumps({"message_id": message.id, "campaign_id": message.campaign_id,
                            "to": message.phone, "body": message.body,
                            "segments": message.segments, "encoding": message.encoding}),
        attempts=claimed.attempts, exception_type=result.error_type or "Error",
        first_error=first_error, last_error=error, traceback=traceback,
        provider_response=result.response, first_failed_at=first_failed or now,
        failed_at=now, retry_of_id=previous,
    )
    session.add(job)
    return job


def stale_sending(session: Session, limit: int = 500) -> list[tuple[int, int, str]]:
    """(campaign id, message id, queue) of messages whose worker died while sending them."""
    stale = utcnow() - timedelta(seconds=CLAIM_LEASE_S)
    rows = session.execute(
        select(OutgoingMessage.campaign_id, OutgoingMessage.id, Campaign.queue)
        .join(Campaign, Campaign.id == OutgoingMessage.campaign_id)
        .where(OutgoingMessage.status == MessageStatus.SENDING)
        .where(OutgoingMessage.claimed_at < stale)
        .limit(limit))
    return [(campaign_id, id_, queue) for campaign_id, id_, queue in rows]


def message_ids(session: Session, campaign_id: int, status: MessageStatus) -> list[int]:
    """The ids of the campaign's messages in ``status``, in id order (the order they send in)."""
    return list(session.scalars(
        select(OutgoingMessage.id).where(OutgoingMessage.campaign_id == campaign_id)
        .where(OutgoingMessage.status == status).order_by(OutgoingMessage.id)))
