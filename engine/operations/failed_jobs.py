"""Acting on the dead-letter store, for the CLI (``relaydesk failed``) and the console's
Failed jobs page alike: retry failed jobs with a fresh attempt budget, or forget them.

A selection is either record ids or a FailedQuery (everything it matches; ``FailedQuery()``
is everything). Pin a query to what the operator was shown with ``through_id`` (see
failed_query.matching), so a job failing while they read the question is not included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.infra import scheduler
from engine.pipeline.sender import message_job
from engine.store import dead_letters
from engine.store.db import Database
from engine.store.failed_query import FailedQuery

Selection = Sequence[int] | FailedQuery


@dataclass(frozen=True)
class Retried:
    retried: int  # messages queued again
    skipped_opted_out: int  # records left alone: their number is on the opt-out list

    def describe(self) -> str:
        text = f"{self.retried:,} failed job(s) queued again"
        if self.skipped_opted_out:
            text += (f"; {self.skipped_opted_out:,} skipped: the number is on the opt-out "
                     "list")
        return text


def retry(db: Database, client: Any, selection: Selection) -> Retried:
    """Queue the messages of these records again, due now, with a fresh attempt budget.
    Each record stays, marked retried (a record is retried once: those already retried, or
    whose message is no longer dead, are skipped). A record to a number on the opt-out
    list is never retried: it is counted in ``skipped_opted_out``."""
    with db.session() as session:
        if isinstance(selection, FailedQuery):
            skipped = dead_letters.opted_out_matching(session, selection)
            requeued = dead_letters.retry_matching(session, selection)
        else:
            skipped = dead_letters.opted_out_ids(session, selection)
            requeued = dead_letters.retry_ids(session, selection)
        # Scheduled inside the transaction: if Redis refuses, nothing is marked retried.
        scheduler.schedule(client, [
            (0.0, message_job(r.campaign_id, r.message_id, r.queue, retry=False))
            for r in requeued])
    return Retried(len(requeued), skipped)


def forget(db: Database, selection: Selection) -> int:
    """Remove these records from the store (their messages stay dead); returns how many."""
    with db.session() as session:
        if isinstance(selection, FailedQuery):
            return dead_letters.forget_matching(session, selection)
        return dead_letters.forget_failed(session, selection)
