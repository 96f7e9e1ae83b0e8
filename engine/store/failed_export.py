"""Failed jobs that match a FailedQuery, as CSV: streamed from the database a batch at a
time, so exporting 100,000 records holds a batch in memory, not the store."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.domain.csv_safe import SafeCsvWriter
from engine.domain.phones import mask_phone, mask_phones_in_text
from engine.store.failed_query import FailedQuery, sort_order, where
from engine.store.models import Campaign, FailedJob
from engine.store.private_export import written_whole

COLUMNS = ("id", "failed_at", "first_failed_at", "campaign_id", "campaign", "recipient",
           "queue", "error_type", "attempts", "first_error", "last_error", "retried_at",
           "retry_of")
STREAM_BATCH = 1000


def export_csv(session: Session, query: FailedQuery, out: TextIO, *,
               full_phones: bool = False) -> int:
    """Write the matching records in the table's order; phone numbers (also inside error
    texts) masked unless ``full_phones`` (the file may travel: whole numbers are the
    operator's choice)."""
    stmt = (select(FailedJob.id, FailedJob.failed_at, FailedJob.first_failed_at,
                   FailedJob.campaign_id, Campaign.name, FailedJob.recipient, FailedJob.queue,
                   FailedJob.exception_type, FailedJob.attempts, FailedJob.first_error,
                   FailedJob.last_error, FailedJob.retried_at, FailedJob.retry_of_id)
            .outerjoin(Campaign, Campaign.id == FailedJob.campaign_id)
            .where(*where(query))
            .order_by(*sort_order(query))
            .execution_options(yield_per=STREAM_BATCH))
    writer = SafeCsvWriter(out)  # no cell opens as a formula in a spreadsheet
    writer.writerow(COLUMNS)
    count = 0
    for row in session.execute(stmt):
        (id_, failed_at, first_failed_at, campaign_id, campaign, recipient, queue, error_type,
         attempts, first_error, last_error, retried_at, retry_of) = row
        if not full_phones:
            recipient = mask_phone(recipient)
            first_error = mask_phones_in_text(first_error)
            last_error = mask_phones_in_text(last_error)
        writer.writerow([
            id_, failed_at.isoformat(), first_failed_at.isoformat(), campaign_id,
            campaign or "", recipient, queue, error_type, attempts, first_error, last_error,
            retried_at.isoformat() if retried_at else "", retry_of or ""])
        count += 1
    return count


def export_file(session: Session, query: FailedQuery, path: Path, *,
                full_phones: bool = False) -> int:
    """export_csv into ``path`` (UTF-8, written whole or not at all), readable by the
    operator only (0600): it holds names, numbers and error texts."""
    with written_whole(path) as out:
        return export_csv(session, query, out, full_phones=full_phones)
