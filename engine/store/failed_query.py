"""The dead-letter store as a table the operator searches, filters, sorts and pages through:
one page at a time, in SQL, so 100,000 failed jobs cost no more than 200.

The same FailedQuery drives the console's Failed page, ``relaydesk failed list``, the
actions on everything that matches (dead_letters.retry_matching / forget_matching) and the
CSV export: what the operator sees counted is what an action acts on.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.orm import Session

from engine.domain.phones import mask_phone, mask_phones_in_text
from engine.store import table_query
from engine.store.models import Campaign, DeliveryAttempt, FailedJob, MessageStatus, OutgoingMessage
from engine.store.table_query import contains_text, scanned

SORT_COLUMNS: dict[str, Any] = {
    "failed_at": FailedJob.failed_at,
    "campaign": FailedJob.campaign_id,
    "recipient": FailedJob.recipient,
    "queue": FailedJob.queue,
    "error_type": FailedJob.exception_type,
    "attempts": FailedJob.attempts,
    "id": FailedJob.id,
}
IN_PROGRESS = (MessageStatus.QUEUED, MessageStatus.SENDING, MessageStatus.FAILED)


def _masked(text: str | None) -> str | None:
    return None if text is None else mask_phones_in_text(text)


@dataclass(frozen=True)
class FailedQuery:
    """Which failed jobs, in which order. ``until`` is exclusive; ``through_id`` pins a
    confirmed action to the records the operator was shown (none that failed since)."""

    search: str = ""
    campaign_id: int | None = None
    queue: str | None = None
    error_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    include_retried: bool = False
    sort: str = "failed_at"
    descending: bool = True
    through_id: int | None = None

    @property
    def filtered(self) -> bool:
        """Whether anything narrows the default view (for "no match" vs "nothing failed")."""
        return bool(self.search.strip() or self.campaign_id is not None or self.queue
                    or self.error_type or self.since or self.until)


@dataclass(frozen=True)
class FailedRow:
    """One line of the table; phone numbers masked, also inside the error text."""

    id: int
    failed_at: datetime
    message_id: int | None
    task_name: str
    campaign_id: int | None
    campaign: str  # the campaign's name; "" when it was deleted
    recipient: str  # masked
    queue: str
    error_type: str
    attempts: int
    last_error: str
    retried_at: datetime | None
    retry_of_id: int | None
    next_id: int | None  # the record of the retry's own failure, if it failed again
    message_status: str | None  # the message's state now; None when it was deleted

    @property
    def retry_state(self) -> str:
        """What became of a retry, in a few words, for the table and the CLI."""
        if self.retried_at is None:
            return f"retry of #{self.retry_of_id}" if self.retry_of_id else ""
        if self.next_id is not None:
            return f"retried, failed again (#{self.next_id})"
        if self.message_status is None:
            return "retried, message deleted"
        if self.message_status in IN_PROGRESS:
            return "retried, sending"
        return f"retried, {self.message_status}"


@dataclass(frozen=True)
class Attempt:
    number: int
    at: datetime
    error: str


@dataclass(frozen=True)
class FailedDetail:
    row: FailedRow
    body: str  # the rendered message
    payload: str  # the job's payload as stored, the phone number masked
    first_error: str
    first_failed_at: datetime
    traceback: str | None
    provider_response: str | None
    attempts: tuple[Attempt, ...]


def where(query: FailedQuery) -> list[ColumnElement[bool]]:
    """The SQL conditions of ``query`` on failed_jobs alone (no join: counts and deletes
    stay single-table statements)."""
    conditions: list[ColumnElement[bool]] = []
    pattern = table_query.like_pattern(query.search)
    if pattern:
        named = select(Campaign.id).where(contains_text(Campaign.name, pattern))
        # The error text starts with the error type ("invalid_number: ..."), so it needs
        # no column of its own; the phone only when the text could be part of one.
        matches: list[ColumnElement[bool]] = [contains_text(FailedJob.last_error, pattern),
                                              FailedJob.campaign_id.in_(named)]
        text = query.search.strip()
        if any(c.isdigit() for c in text):
            matches.append(FailedJob.recipient.like(pattern,
                                                    escape=table_query.LIKE_ESCAPE))
        number = text.lstrip("#")
        if number.isdigit() and len(number) < 10:
            matches.append(FailedJob.id == int(number))
        conditions.append(or_(*matches))
    if query.campaign_id is not None:
        conditions.append(FailedJob.campaign_id == query.campaign_id)
    if query.queue:
        conditions.append(FailedJob.queue == query.queue)
    if query.error_type:
        conditions.append(FailedJob.exception_type == query.error_type)
    if query.since is not None:
        conditions.append(FailedJob.failed_at >= query.since)
    if query.until is not None:
        conditions.append(FailedJob.failed_at < query.until)
    if not query.include_retried:
        # A search reads every row anyway: in table order, not through the retried_at
        # index (nearly every row is NULL there; measured: 80 ms scan, 260 ms via index).
        retried = scanned(FailedJob.retried_at) if pattern else FailedJob.retried_at
        conditions.append(retried.is_(None))
    if query.through_id is not None:
        conditions.append(FailedJob.id <= query.through_id)
    return conditions


def count_matching(session: Session, query: FailedQuery) -> int:
    return session.scalar(select(func.count(FailedJob.id)).where(*where(query))) or 0


@dataclass(frozen=True)
class Matching:
    """How many records match, and the newest of them (to pin a confirmed action)."""

    count: int
    last_id: int | None


def matching(session: Session, query: FailedQuery) -> Matching:
    count, last_id = session.execute(
        select(func.count(FailedJob.id), func.max(FailedJob.id)).where(*where(query))).one()
    return Matching(count or 0, last_id)


def sort_order(query: FailedQuery) -> list[Any]:
    column: Any = SORT_COLUMNS.get(query.sort, FailedJob.failed_at)
    tie: Any = FailedJob.id
    if table_query.like_pattern(query.search):
        # The matches are sorted after the scan: walking an index in order and looking up
        # every row costs more than sorting what matched (280 ms against 90 ms at 100,000).
        column, tie = scanned(column), scanned(tie)
    return table_query.stable_order(column, query.descending, tie)


def ordered_ids(query: FailedQuery) -> Select[Any]:
    return select(FailedJob.id).where(*where(query)).order_by(*sort_order(query))


def ids_in_rows(session: Session, query: FailedQuery,
                rows: Sequence[tuple[int, int]]) -> list[int]:
    """The ids at row ranges ``(first, last)`` of the table as ``query`` shows it."""
    return table_query.ids_in_rows(session, ordered_ids(query), rows)


_ROW_COLUMNS = (FailedJob.id, FailedJob.failed_at, FailedJob.message_id, FailedJob.task_name,
                FailedJob.campaign_id, FailedJob.recipient, FailedJob.queue,
                FailedJob.exception_type, FailedJob.attempts, FailedJob.last_error,
                FailedJob.retried_at, FailedJob.retry_of_id)


def failed_page(session: Session, query: FailedQuery, offset: int,
                limit: int) -> list[FailedRow]:
    # Only the row's own columns in the ordered scan; campaign names and what became of
    # retries are looked up for the page's rows alone.
    rows = session.execute(select(*_ROW_COLUMNS).where(*where(query)).order_by(*sort_order(query))
                           .offset(offset).limit(limit)).all()
    return _rows(session, rows)


def count_and_first_page(session: Session, query: FailedQuery,
                         limit: int) -> tuple[int, list[FailedRow]]:
    """The count and the first page. A search reads every row whatever it does, so it
    reads them once for both (a window count; measured: half the time of two scans) --
    unless it names a campaign: then it matches many rows, which the window count would
    hold in memory while the ordinary top-200 sort holds 200."""
    pattern = table_query.like_pattern(query.search)
    if not pattern or session.scalar(select(Campaign.id).where(
            contains_text(Campaign.name, pattern)).limit(1)) is not None:
        count = count_matching(session, query)
        return count, failed_page(session, query, 0, limit) if count else []
    total = func.count().over().label("total")
    rows = session.execute(select(*_ROW_COLUMNS, total).where(*where(query))
                           .order_by(*sort_order(query)).limit(limit)).all()
    return (rows[0].total if rows else 0), _rows(session, rows)


def _rows(session: Session, rows: Sequence[Any]) -> list[FailedRow]:
    if not rows:
        return []
    names = dict(session.execute(select(Campaign.id, Campaign.name).where(
        Campaign.id.in_({r.campaign_id for r in rows if r.campaign_id is not None}))).all())
    retried = [r.id for r in rows if r.retried_at is not None]
    next_ids: dict[int, int] = {}
    statuses: dict[int, str] = {}
    if retried:
        for id_, retry_of in session.execute(select(FailedJob.id, FailedJob.retry_of_id)
                                             .where(FailedJob.retry_of_id.in_(retried))):
            if retry_of is not None:
                next_ids[retry_of] = max(id_, next_ids.get(retry_of, 0))
        statuses = dict(session.execute(select(OutgoingMessage.id, OutgoingMessage.status).where(
            OutgoingMessage.id.in_({r.message_id for r in rows if r.retried_at is not None
                                    and r.message_id is not None}))).all())
    return [FailedRow(
        r.id, r.failed_at, r.message_id, r.task_name, r.campaign_id,
        names.get(r.campaign_id, ""), mask_phone(r.recipient),
        r.queue, r.exception_type, r.attempts, mask_phones_in_text(r.last_error), r.retried_at,
        r.retry_of_id,
        next_ids.get(r.id), statuses.get(r.message_id)) for r in rows]


def failed_detail(session: Session, failed_id: int) -> FailedDetail | None:
    """Everything recorded about one failed job, phone numbers masked."""
    row = session.execute(select(*_ROW_COLUMNS).where(FailedJob.id == failed_id)).one_or_none()
    job = session.get(FailedJob, failed_id)
    if row is None or job is None:
        return None
    return FailedDetail(
        _rows(session, [row])[0], *_payload(job.payload),
        mask_phones_in_text(job.first_error), job.first_failed_at, _masked(job.traceback),
        _masked(job.provider_response), _attempts(session, job))


def _payload(raw: str) -> tuple[str, str]:
    try:
        data = json.loads(raw)
    except ValueError:
        return "", raw
    if not isinstance(data, dict):
        return "", raw
    if isinstance(data.get("to"), str):
        data["to"] = mask_phone(data["to"])
    return str(data.get("body", "")), json.dumps(data, indent=2, ensure_ascii=False)


def _attempts(session: Session, job: FailedJob) -> tuple[Attempt, ...]:
    """The failed attempts that led to this record: those of its message since the record
    it retried (if any). Records from before attempts were kept show first and last."""
    stmt = select(DeliveryAttempt.attempt, DeliveryAttempt.at, DeliveryAttempt.error).where(
        DeliveryAttempt.message_id == job.message_id, DeliveryAttempt.at <= job.failed_at)
    if job.retry_of_id is not None:
        before = session.scalar(select(FailedJob.failed_at)
                                .where(FailedJob.id == job.retry_of_id))
        if before is not None:
            stmt = stmt.where(DeliveryAttempt.at > before)
    found = tuple(Attempt(n, at, mask_phones_in_text(error)) for n, at, error in session.execute(
        stmt.order_by(DeliveryAttempt.at, DeliveryAttempt.id)))
    if found or job.message_id is None:
        return found
    first, last = mask_phones_in_text(job.first_error), mask_phones_in_text(job.last_error)
    if job.attempts <= 1:
        return (Attempt(1, job.failed_at, last),)
    return (Attempt(1, job.first_failed_at, first), Attempt(job.attempts, job.failed_at, last))


def campaign_choices(session: Session) -> list[tuple[int, str]]:
    """(id, name) of the campaigns that have failed jobs, newest first."""
    ids = list(session.scalars(select(FailedJob.campaign_id).distinct()
                               .where(FailedJob.campaign_id.is_not(None))))
    return [(id_, name) for id_, name in session.execute(
        select(Campaign.id, Campaign.name).where(Campaign.id.in_(ids))
        .order_by(Campaign.id.desc()))]


def distinct_values(session: Session, column: str) -> list[str]:
    """The queues (``"queue"``) or error types (``"error_type"``) in the store."""
    field = {"queue": FailedJob.queue, "error_type": FailedJob.exception_type}[column]
    return list(session.scalars(select(field).distinct().order_by(field)))
