"""When a sent message's status is next looked up at its provider (Twilio), and how often.

A message the provider can be asked about gets ``report_poll_at`` when it is sent (the
sender: ``RELAYDESK_REPORT_POLL_S`` later). Each look-up moves it on with doubling waits,
capped, and never past the message's expiry: there it becomes NULL, and the expiry sweep
ends the wait. A final report clears it (the applier), so a message is looked up only
while it is still awaiting one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from engine.domain.delivery import DeliveryStatus
from engine.store.models import OutgoingMessage, UTCDateTime

# The longest wait between two look-ups of one message: a message that never gets a final
# status (some networks never report) is looked up about once an hour until it expires.
MAX_POLL_WAIT_S = 3600
# 2**12 times any sensible RELAYDESK_REPORT_POLL_S is past the cap already; the exponent
# stays small however often a message was looked up.
_MAX_DOUBLINGS = 12


def due_polls(session: Session, now: datetime, limit: int, provider: str = "twilio"
              ) -> list[tuple[int, str]]:
    """(message id, provider message id) of the messages whose look-up is due, longest
    due first (the index on report_poll_at finds them)."""
    rows = session.execute(
        select(OutgoingMessage.id, OutgoingMessage.provider_message_id)
        .where(OutgoingMessage.report_poll_at <= now,
               OutgoingMessage.provider == provider,
               OutgoingMessage.delivery == DeliveryStatus.AWAITING_REPORT,
               OutgoingMessage.provider_message_id.is_not(None))
        .order_by(OutgoingMessage.report_poll_at, OutgoingMessage.id)
        .limit(limit))
    return [(message_id, str(sid)) for message_id, sid in rows]


def next_poll_at(now: datetime, polls: int, sent_at: datetime | None, poll_s: float,
                 expiry_s: float) -> datetime | None:
    """After the look-up number ``polls + 1``: ``poll_s * 2**polls`` from now, at most
    MAX_POLL_WAIT_S; None once that is past the message's expiry."""
    wait = min(poll_s * 2 ** min(polls, _MAX_DOUBLINGS), MAX_POLL_WAIT_S)
    when = now + timedelta(seconds=max(wait, 0.0))
    expires = (sent_at or now) + timedelta(seconds=expiry_s)
    return None if when > expires else when


def poll_again(session: Session, message_ids: Sequence[int], now: datetime, poll_s: float,
               expiry_s: float) -> list[int]:
    """Count a look-up of each message and move its next one on (``next_poll_at``); which
    of them were moved. A message that got its final report meanwhile (report_poll_at
    cleared, delivery no longer awaiting) is left alone and not in the answer: it needs no
    look-up."""
    if not message_ids:
        return []
    rows = session.execute(
        select(OutgoingMessage.id, OutgoingMessage.report_polls, OutgoingMessage.sent_at)
        .where(OutgoingMessage.id.in_(message_ids),
               OutgoingMessage.report_poll_at.is_not(None),
               OutgoingMessage.delivery == DeliveryStatus.AWAITING_REPORT)).all()
    if not rows:
        return []
    # The same conditions again in the UPDATE: a final report applied between the read and
    # the write must not be given a look-up back.
    statement = (
        update(OutgoingMessage)
        .where(OutgoingMessage.id == bindparam("mid"),
               OutgoingMessage.report_poll_at.is_not(None),
               OutgoingMessage.delivery == DeliveryStatus.AWAITING_REPORT)
        .values(report_poll_at=bindparam("next_at", type_=UTCDateTime()),
                report_polls=bindparam("polls"))
        .execution_options(synchronize_session=False))
    moved = []
    for message_id, polls, sent_at in rows:
        result = session.execute(statement, {
            "mid": message_id, "polls": (polls or 0) + 1,
            "next_at": next_poll_at(now, polls or 0, sent_at, poll_s, expiry_s)})
        if getattr(result, "rowcount", 0):
            moved.append(message_id)
    return moved
