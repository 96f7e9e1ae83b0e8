"""Demo data for ``gui --screenshot-dir --demo``: the sample contacts and the local pipeline
with a worker online, so the campaign the tour then sends from Compose has somewhere to go;
a few dead letters for the Failed jobs page, one of them retried and dead again; a short
opt-out list, two of the sample contacts on it, for the Opt-outs and Contacts pages; and
two earlier campaigns with what their delivery reports and the members' replies said
(delivered, undelivered with the network's reason, expired, awaiting; thanks, a question,
a STOP), applied by the report applier as if the receiver had just got them, for the
Campaigns and Inbox pages."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import urllib3
from sqlalchemy import func, select, update

from desktop.context import ConsoleContext
from desktop.resources import resource
from engine.domain.audience import EVERYONE, Audience
from engine.domain.delivery import DeliveryStatus, Report, ReportKind
from engine.domain.personalize import Recipient
from engine.infra.local_gateway import LocalGateway
from engine.infra.worker_registry import live_workers
from engine.operations import failed_jobs
from engine.operations.campaigns import create_campaign, send_campaign_to
from engine.store.contacts_import import import_contacts
from engine.store.delivery_reports import apply_reports, expire_overdue
from engine.store.models import (
    Campaign,
    CampaignStatus,
    FailedJob,
    InboundMessage,
    MessageStatus,
    OptOut,
    OptSource,
    OutgoingMessage,
    utcnow,
)

log = logging.getLogger(__name__)

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


# Earlier campaigns: (name, template, tag or None, days ago).
HISTORY = [
    ("Demo: March pledge reminder",
     "Dear #name, of your pledge of #pledge you have paid #paid_amount; #balance remains. "
     "Thank you!", None, 6.0),
    ("Demo: choir practice moved", "Dear #name, choir practice moves to 6 pm on Thursday.",
     "choir", 0.1),
]
# What the network said, per sample contact number (the rest: delivered). The first
# campaign's numbers that never reported are past the 48 h expiry: expired.
UNDELIVERED = {"+254700000103": "AbsentSubscriber", "+254700000113": "DeliveryFailure",
               "+254700000118": "30003: Unreachable destination handset"}
NEVER_REPORTED = ("+254700000116", "+254700000123", "+254700000121")
# (phone, text, hours ago, handled): Moses Mutua's STOP puts him on the opt-out list; the
# last number is no contact's.
REPLIES = [("+254700000117", "Thank you, I will clear the balance by Friday.", 130, True),
           ("+254700000112", "STOP", 120, False),
           ("+254700000108", "Please send me the paybill number again", 50, False),
           ("+254700000109", "Paid 2,000 today via M-Pesa. Asante!", 20, False),
           ("+254722000555", "Who is this? I don't know this church.", 3, False),
           ("+254700000122", "Noted, see you at 6", 1, False)]


@dataclass(frozen=True)
class Demo:
    history: list[int]  # the earlier campaigns' ids, oldest first


LIVE_REPLY = {"from": "+254700000110", "text": "Asante, message received. God bless!"}


def seed_demo(ctx: ConsoleContext) -> Demo:
    """Import the sample contacts, start Redis, the gateway and the workers, wait until a
    worker is online, and leave a few dead letters. ``ctx.services.stop_local_services()``
    stops what it started."""
    settings = ctx.settings
    import_contacts(ctx.services.db(), resource("sample_contacts.csv"), settings.default_region)
    seed_optouts(ctx, utcnow())
    history = seed_history(ctx, utcnow())
    ctx.services.start_local_pipeline()
    _wait(lambda: bool(live_workers(ctx.services.redis())), WORKER_START_TIMEOUT_S,
          "the demo's worker did not come online; see the logs folder")
    seed_dead_letters(ctx)
    send_live_reply(ctx)
    return Demo(history)


def seed_optouts(ctx: ConsoleContext, now: datetime) -> None:
    """A few opt-outs of each source, listed days apart (as added over time)."""
    with ctx.services.db().session() as session:
        for phone, reason, source, days in OPT_OUTS:
            if session.get(OptOut, phone) is None:
                session.add(OptOut(phone=phone, reason=reason, source=source,
                                   created_at=now - timedelta(days=days, hours=days % 5)))


def seed_history(ctx: ConsoleContext, now: datetime) -> list[int]:
    """Two earlier campaigns, sent, then their delivery reports and the replies applied as
    the report applier applies what the receiver got; what never reported in time
    expires, as the expiry pass does."""
    db, settings = ctx.services.db(), ctx.settings
    reports: list[Report] = []
    campaigns = []
    for name, template, tag, days in HISTORY:
        sent_at = now - timedelta(days=days)
        audience = Audience(tags=(tag,)) if tag else EVERYONE
        created = create_campaign(db, settings, template, audience=audience, name=name)
        campaigns.append(created.id)
        with db.session() as session:
            session.execute(update(Campaign).where(Campaign.id == created.id).values(
                status=CampaignStatus.COMPLETED, created_at=sent_at, started_at=sent_at,
                finished_at=sent_at + timedelta(minutes=3)))
            rows = session.execute(select(OutgoingMessage.id, OutgoingMessage.phone)
                                   .where(OutgoingMessage.campaign_id == created.id))
            for n, (message_id, phone) in enumerate(rows):
                at = sent_at + timedelta(seconds=2 * n)
                provider_id = f"demo-{message_id}"
                session.execute(update(OutgoingMessage)
                                .where(OutgoingMessage.id == message_id).values(
                    status=MessageStatus.SENT, attempts=1, provider="sandbox",
                    provider_message_id=provider_id, sent_at=at, updated_at=at,
                    delivery=DeliveryStatus.AWAITING_REPORT))
                if phone in NEVER_REPORTED:
                    continue
                reason = UNDELIVERED.get(phone, "")
                reports.append(Report(
                    ReportKind.STATUS, "sandbox", provider_id,
                    DeliveryStatus.UNDELIVERED if reason else DeliveryStatus.DELIVERED,
                    provider_status="failed" if reason else "delivered", error=reason,
                    received_at=(at + timedelta(seconds=3 + n % 7)).timestamp()))
    reports += [Report(ReportKind.INBOUND, "sandbox", f"demo-in-{n}", phone=phone,
                       text=text, to="RELAYDESK",
                       received_at=(now - timedelta(hours=hours)).timestamp())
                for n, (phone, text, hours, _) in enumerate(REPLIES)]
    with db.session() as session:
        apply_reports(session, reports, optout_keywords=settings.optout_keywords,
                      optin_keywords=settings.optin_keywords)
        expire_overdue(session, settings.report_expiry_s, now)
        handled = [phone for phone, _, _, done in REPLIES if done]
        session.execute(update(InboundMessage).where(InboundMessage.phone.in_(handled))
                        .values(handled_at=now - timedelta(hours=100)))
    return campaigns


def send_live_reply(ctx: ConsoleContext) -> None:
    """A member answers now, through the sandbox gateway's POST /inbound: the gateway
    forwards it to the receiver, the applier stores it, and the Inbox and the dashboard's
    replies show it as they would a real one."""
    url = LocalGateway.for_settings(ctx.settings).url()
    if url is None:
        log.warning("demo: no local gateway to send a reply through")
        return
    response = urllib3.request("POST", url + "/inbound", json=LIVE_REPLY, timeout=10.0,
                               retries=False)
    if response.status >= 300:
        log.warning("demo: the gateway did not forward the reply (HTTP %s)", response.status)


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
