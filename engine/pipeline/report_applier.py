"""Moving reports from the receiver's Redis list into the database, in batches.

``apply_pending`` reads the oldest reports (engine.infra.report_inbox), applies them in one
transaction (engine.store.delivery_reports), commits, and only then trims them off the
list: a crash in between applies them again, which their receipts make harmless. The
dispatcher runs it in one worker at a time (REPORT_APPLY_LOCK), and the trim only happens
while that lock is still this applier's, so two appliers can never trim each other's
entries away.

A STOP reply, when RELAYDESK_OPTOUT_REPLY is set, is confirmed once: a one-recipient
campaign whose message is an opt-out notice (the claim lets it through the opt-out list),
created in the same transaction as the reply, so applying that reply again cannot create a
second one; it is queued after the commit (if that fails, the stall sweep queues it).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import redis
from sqlalchemy import update
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from engine.config.settings import Settings
from engine.domain.audience import EVERYONE
from engine.domain.delivery import Report
from engine.domain.phones import mask_phone
from engine.domain.rendering import RenderedMessage
from engine.domain.sms_encoding import segment_info
from engine.infra import metrics, redis_keys, report_inbox
from engine.infra.metrics import Metric
from engine.pipeline.campaign_start import enqueue_campaign
from engine.pipeline.runtime import Runtime
from engine.store.campaign_rows import CreatedCampaign, fill_campaign, new_campaign
from engine.store.delivery_reports import (
    Applied,
    apply_reports,
    expire_overdue,
    prune_unmatched,
    rematch_unmatched,
)
from engine.store.models import OutgoingMessage

log = logging.getLogger(__name__)

APPLY_BATCH = 500
APPLY_LOCK = redis_keys.REPORT_APPLY_LOCK
# How long the lock lasts without news from its holder; each batch renews it.
APPLY_LOCK_MS = 60_000
REMATCH_WITHIN_S = 3600.0  # how long a report that came before its send is waited for
# A delivery report whose message never came (an id RelayDesk did not send, a report for
# a message deleted since) is kept this long, counted in `relaydesk status` as
# unmatched_reports, then deleted by the sweep, PRUNE_BATCH rows a transaction.
UNMATCHED_KEEP_S = 7 * 86400.0
PRUNE_BATCH = 5000
PRUNE_BATCHES = 20  # a sweep's share; the rest goes on the next sweep
CONFIRMATION_NAME = "Opt-out confirmation to "

# Trim the applied entries (and renew the lock) only while the lock holds our token: an
# applier whose lock expired mid-batch (a stalled database) must not trim entries that
# the next holder has read, or those would be lost; its own are applied again instead.
_ACK_IF_HELD = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('LTRIM', KEYS[2], ARGV[2], -1)
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
    return 1
end
return 0
"""


def _acknowledge(client: Any, entries: int, token: str | None) -> bool:
    if token is None:
        report_inbox.acknowledge(client, entries)
        return True
    script = client.register_script(_ACK_IF_HELD)
    return bool(script(keys=[APPLY_LOCK, report_inbox.INBOX],
                       args=[token, entries, APPLY_LOCK_MS]))


def apply_pending(rt: Runtime, limit: int = APPLY_BATCH, *, lock_token: str | None = None
                  ) -> int:
    """Apply up to ``limit`` reports waiting in the inbox; how many entries were taken (0:
    the inbox is empty). With ``lock_token`` (the dispatcher's REPORT_APPLY_LOCK), they
    are trimmed off only while that lock is still held."""
    entries, reports = report_inbox.peek(rt.redis, limit)
    if not entries:
        return 0
    applied, confirmations = _apply_batch(rt, reports)
    if not _acknowledge(rt.redis, entries, lock_token):
        log.warning("the report applier lost its lock while applying; another one applies "
                    "these %d report(s) again (harmless: each is applied once)", entries)
    for created in confirmations:
        _enqueue_confirmation(rt, created)
    record_metrics(rt, applied)
    return entries


def _apply_batch(rt: Runtime, reports: Sequence[Report]
                 ) -> tuple[Applied, list[CreatedCampaign]]:
    """Apply the batch in one transaction; if the database refuses it for something in
    one report (not for being down), apply them one by one so that report cannot hold up
    the others: the one refused alone is logged and dropped."""
    try:
        return _apply_in_one(rt, reports)
    except OperationalError:
        raise  # the database is down or locked: everything stays in the inbox
    except DBAPIError:
        log.exception("a batch of %d report(s) was refused; applying them one by one",
                      len(reports))
    total, confirmations = Applied(), []
    for report in reports:
        try:
            applied, created = _apply_in_one(rt, [report])
        except OperationalError:
            raise
        except DBAPIError as exc:
            log.error("dropping a %s report from %s (receipt %s) the database refuses: %s",
                      report.kind, report.provider, report.receipt, type(exc.orig).__name__)
            continue
        total.add(applied)
        confirmations += created
    return total, confirmations


def _apply_in_one(rt: Runtime, reports: Sequence[Report]
                  ) -> tuple[Applied, list[CreatedCampaign]]:
    with rt.db.session() as session:
        applied = apply_reports(session, reports,
                                optout_keywords=rt.settings.optout_keywords,
                                optin_keywords=rt.settings.optin_keywords)
        text = (rt.settings.optout_reply or "").strip()
        confirmations = [confirmation_campaign(session, rt.settings, phone, text)
                         for phone in applied.opted_out_by_reply
                         if text and _textable(phone)]
    return applied, confirmations


def _textable(phone: str) -> bool:
    """An E.164 number, not a short code or a sender name (which cannot be texted)."""
    return phone.startswith("+") and phone[1:].isdigit() and 8 <= len(phone) <= 16


def confirmation_campaign(session: Session, settings: Settings, phone: str,
                          text: str) -> CreatedCampaign:
    """The one-recipient campaign confirming ``phone``'s opt-out with ``text`` (sent as
    written), in the caller's transaction; its message is an opt-out notice."""
    info = segment_info(text)
    window = settings.send_window(urgent=True)
    campaign = new_campaign(session, name=f"{CONFIRMATION_NAME}{mask_phone(phone)}",
                            template_text=text, audience=EVERYONE, window=window, urgent=True)
    message = RenderedMessage(0, None, phone, "", text, info.encoding, info.characters,
                              info.segments)
    created = fill_campaign(session, campaign, [message], suppressed=0,
                            policy=settings.plan_policy())
    session.execute(update(OutgoingMessage).where(OutgoingMessage.campaign_id == campaign.id)
                    .values(opt_out_notice=True))
    return created


def _enqueue_confirmation(rt: Runtime, created: CreatedCampaign) -> None:
    try:
        enqueue_campaign(rt.db, rt.redis, rt.settings, created)
    except Exception as exc:  # committed: the stall sweep queues it if this did not
        log.warning("could not queue opt-out confirmation campaign %s now (%s); the stall "
                    "sweep queues it", created.id, type(exc).__name__)


def record_metrics(rt: Runtime, applied: Applied) -> None:
    """Reports per provider, outcomes per provider and campaign, send-to-delivery times.
    Figures, not state: a failure is logged, the reports are applied already."""
    sample = metrics.Sample()
    for provider, tally in applied.by_provider.items():
        scopes = (metrics.ALL, metrics.provider_scope(provider))
        for name, value in ((Metric.REPORTS, tally.reports), (Metric.INBOUND, tally.inbound),
                            (Metric.DELIVERED, tally.delivered),
                            (Metric.UNDELIVERED, tally.undelivered),
                            (Metric.UNMATCHED, tally.unmatched)):
            if value:
                sample.add(scopes, name, value)
    for campaign_id, tally in applied.by_campaign.items():
        scope = (metrics.campaign_scope(campaign_id),)
        if tally.delivered:
            sample.add(scope, Metric.DELIVERED, tally.delivered)
        if tally.undelivered:
            sample.add(scope, Metric.UNDELIVERED, tally.undelivered)
    for time in applied.delivery_times:
        sample.timing((metrics.ALL, metrics.provider_scope(time.provider),
                       metrics.campaign_scope(time.campaign_id)),
                      Metric.DELIVERY_MS, Metric.DELIVERY_MAX_MS, time.ms)
    try:
        metrics.record(rt.redis, rt.settings, sample)
    except (redis.RedisError, OSError) as exc:
        log.warning("could not record report metrics: %s", exc)


def rematch(rt: Runtime, within_s: float = REMATCH_WITHIN_S) -> int:
    """Apply the delivery reports that came before their send's commit, now that their
    message exists; how many."""
    applied = Applied()
    with rt.db.session() as session:
        matched = rematch_unmatched(session, within_s, into=applied)
    if matched:
        log.info("matched %d delivery report(s) that arrived before their send", matched)
        record_metrics(rt, applied)
    return matched


def prune_unmatched_reports(rt: Runtime, keep_s: float = UNMATCHED_KEEP_S,
                            batch: int = PRUNE_BATCH) -> int:
    """Delete the unmatched delivery reports older than ``keep_s``, ``batch`` at a time
    (each its own short transaction), at most PRUNE_BATCHES batches; how many."""
    pruned = 0
    for _ in range(PRUNE_BATCHES):
        with rt.db.session() as session:
            deleted = prune_unmatched(session, keep_s, limit=batch)
        pruned += deleted
        if deleted < batch:
            break
    if pruned:
        log.info("deleted %d delivery report(s) whose message never came (kept %.0f days)",
                 pruned, keep_s / 86400)
    return pruned


def expire_reports(rt: Runtime) -> int:
    """Messages with no final report after RELAYDESK_REPORT_EXPIRY become 'expired'."""
    with rt.db.session() as session:
        expired = expire_overdue(session, rt.settings.report_expiry_s)
    if expired:
        log.info("%d message(s) had no final delivery report in time: expired", expired)
    return expired
