"""Demo data for ``gui --screenshot-dir --demo``: the sample contacts and the local pipeline
with a worker online, so the campaign the tour then sends from Compose has somewhere to go;
a few dead letters for the Failed jobs page, one of them retried and dead again; and a
short opt-out list, two of the sample contacts on it, for the Opt-outs and Contacts pages."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date, datetime, timedelta

from sqlalchemy import func, select

from desktop.context import ConsoleContext
from desktop.resources import resource
from engine.domain.personalize import Recipient
from engine.infra.worker_registry import live_workers
from engine.operations import failed_jobs
from engine.operations.campaigns import send_campaign_to
from engine.store.contacts_import import import_contacts
from engine.store.models import FailedJob, OptOut, OptSource, utcnow

WORKER_START_TIMEOUT_S = 60.0
DEAD_LETTERS_TIMEOUT_S = 60.0
# The sandbox gateway refuses numbers ending in 0001 for good (invalid_number). They are
# not contacts: the campaign Compose sends to every contact is not touched by them.
REFUSED = [("Grace Wambui", "+254711230001"), ("Peter Otieno", "+254722340001"),
           ("Mercy Njeri", "+254733450001"), ("Daniel Kamau", "+254744560001")]
REFUSED_TEMPLATE = "Dear #name, of your pledge of #pledge, #balance remains. Thank you!"
# (phone, reason, source, days ago): Brian Kiprop and Esther Mutua are sample contacts.
OPT_OUTS = [("+254700000101", "Asked at the office not to be texted", OptSource.MANUAL, 12),
            ("+254733918204", "Parish list of members who asked not to be texted",
             OptSource.IMPORT, 9),
            ("+254711402377", "Parish list of members who asked not to be texted",
             OptSource.IMPORT, 9),
            ("+254700000104", "twilio 21610: Attempt to send to unsubscribed recipient",
             OptSource.PROVIDER, 2)]


def seed_demo(ctx: ConsoleContext) -> None:
    """Import the sample contacts, start Redis, the gateway and the workers, wait until a
    worker is online, and leave a few dead letters. ``ctx.services.stop_local_services()``
    stops what it started."""
    settings = ctx.settings
    import_contacts(ctx.services.db(), resource("sample_contacts.csv"), settings.default_region)
    seed_optouts(ctx, utcnow())
    ctx.services.start_local_pipeline()
    _wait(lambda: bool(live_workers(ctx.services.redis())), WORKER_START_TIMEOUT_S,
          "the demo's worker did not come online; see the logs folder")
    seed_dead_letters(ctx)


def seed_optouts(ctx: ConsoleContext, now: datetime) -> None:
    """A few opt-outs of each source, listed days apart (as added over time)."""
    with ctx.services.db().session() as session:
        for phone, reason, source, days in OPT_OUTS:
            if session.get(OptOut, phone) is None:
                session.add(OptOut(phone=phone, reason=reason, source=source,
                                   created_at=now - timedelta(days=days, hours=days % 5)))


def seed_dead_letters(ctx: ConsoleContext) -> None:
    """Send to numbers the gateway refuses, wait until they are dead letters, then retry
    one so the page shows a retry linked to its earlier failure."""
    db, client = ctx.services.db(), ctx.services.redis()
    due = date.today() + timedelta(days=30)
    recipients = [(None, phone, Recipient(name, 50_000, 12_500 * (n + 1), due))
                  for n, (name, phone) in enumerate(REFUSED)]
    campaign = send_campaign_to(db, client, ctx.settings, REFUSED_TEMPLATE, recipients,
                                name="Demo: numbers the gateway refuses").id

    def dead_letters() -> int:
        with db.session() as session:
            return session.scalar(select(func.count(FailedJob.id))
                                  .where(FailedJob.campaign_id == campaign)) or 0

    message = "the demo's refused messages did not reach the dead-letter store; see the logs"
    _wait(lambda: dead_letters() >= len(REFUSED), DEAD_LETTERS_TIMEOUT_S, message)
    with db.session() as session:
        first = session.scalar(select(func.min(FailedJob.id))
                               .where(FailedJob.campaign_id == campaign))
    assert first is not None
    failed_jobs.retry(db, client, [first])
    _wait(lambda: dead_letters() > len(REFUSED), DEAD_LETTERS_TIMEOUT_S, message)


def _wait(condition: Callable[[], bool], timeout_s: float, message: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(message)
        time.sleep(0.2)
