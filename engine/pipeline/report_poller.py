"""Twilio status look-ups for sent messages with no final report yet.

Behind NAT Twilio's status callbacks never reach us, and even with a public URL one can
be lost; so a message still awaiting its report when its look-up is due
(engine.store.report_polls) is fetched from Twilio. A final status goes into the report
inbox (engine.infra.report_inbox), and the applier stores it exactly as it stores a
callback: one path, idempotent, never backwards.

The dispatcher calls ``poll_due_reports`` about once a second, one worker at a time. Its
look-ups have their own rate (RELAYDESK_REPORT_POLL_RATE, a Redis limiter of their own)
and their own HTTP connections: they never take from the send rate or delay a send.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from engine.domain.delivery import Report
from engine.infra import report_inbox
from engine.infra.rate_limit import RateLimiter
from engine.pipeline.runtime import Runtime
from engine.store.models import utcnow
from engine.store.report_polls import due_polls, poll_again

log = logging.getLogger(__name__)

# One call looks up messages for about this long, so the dispatcher's thread comes back
# regularly; due messages left over are taken by the next call.
LOOKUP_BUDGET_S = 2.0
# One look-up waits at most this long for Twilio (or RELAYDESK_PROVIDER_TIMEOUT_S, if
# shorter); a message with no answer is looked up again at its next turn.
LOOKUP_TIMEOUT_S = 5.0
# Messages read per call at most, whatever the rate.
MAX_BATCH = 50


@runtime_checkable
class StatusLookup(Protocol):
    """A provider that can be asked for a message's status (TwilioProvider)."""

    name: str

    def fetch_status(self, provider_message_id: str, deadline: float | None = None
                     ) -> Report | None: ...


def limiter_name(provider: str) -> str:
    """The look-ups' own rate-limit key name, beside the provider's send limit."""
    return f"{provider}-poll"


class LookupSlots:
    """The look-up rate as slots taken one at a time from the shared limiter.

    A reservation cannot be handed back: one whose slot opens after a call's budget is
    kept for the next call. Dropping it instead would reserve again every call and push
    the limiter's next free slot further out each time, so at a low rate no look-up
    would ever happen."""

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter
        self.opens_at: float | None = None  # time.monotonic() of the slot we hold
        self.reserved = 0  # reservations taken, for the record (and the tests)

    def opens_before(self, until: float) -> bool:
        """Whether the next slot (reserved now if none is held) opens by ``until``."""
        if self.opens_at is None:
            self.opens_at = time.monotonic() + self.limiter.reserve()
            self.reserved += 1
        return self.opens_at <= until

    def take(self, until: float) -> bool:
        """Wait for the next slot and use it, if it opens by ``until``; else keep it."""
        if not self.opens_before(until):
            return False
        assert self.opens_at is not None
        wait = self.opens_at - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self.opens_at = None
        return True


@dataclass
class _Poller:
    pid: int
    rt: Runtime
    slots: LookupSlots


_lock = threading.Lock()
_pollers: dict[int, _Poller] = {}  # by process id: a forked child builds its own


def _poller(rt: Runtime) -> _Poller:
    """The look-up state of this process's runtime, built once."""
    pid = os.getpid()
    with _lock:
        current = _pollers.get(pid)
        if current is None or current.rt is not rt:
            limiter = RateLimiter(rt.redis, limiter_name(rt.provider.name),
                                  rt.settings.report_poll_rate)
            current = _pollers[pid] = _Poller(pid, rt, LookupSlots(limiter))
        return current


def batch_size(rate: float, budget_s: float) -> int:
    """As many messages as the rate allows in one call's budget (at least one)."""
    return max(1, min(MAX_BATCH, int(rate * budget_s)))


def poll_due_reports(rt: Runtime, now: datetime | None = None,
                     budget_s: float = LOOKUP_BUDGET_S) -> int:
    """Look up the messages whose look-up is due, for about ``budget_s`` at most; how many
    were looked up. ``now`` (the database's view of the time) is for tests.

    Each message's next look-up is written (and committed) before it is fetched, so a
    crash or a hanging Twilio can never make it fetch the same messages over and over;
    messages not reached in this call stay due for the next one."""
    provider = rt.provider
    if not provider.can_fetch_status or not isinstance(provider, StatusLookup):
        return 0
    slots = _poller(rt).slots
    stop_at = time.monotonic() + budget_s
    if not slots.opens_before(stop_at):
        return 0  # no look-up allowed in this call: read nothing
    settings = rt.settings
    now = now or utcnow()
    with rt.db.session() as session:
        due = due_polls(session, now, batch_size(settings.report_poll_rate, budget_s),
                        provider.name)
    looked_up = 0
    finals: list[Report] = []
    try:
        for message_id, provider_message_id in due:
            if not slots.take(stop_at):
                break
            with rt.db.session() as session:
                if not poll_again(session, [message_id], now, settings.report_poll_s,
                                  settings.report_expiry_s):
                    continue  # its final report came meanwhile
            deadline = time.monotonic() + min(LOOKUP_TIMEOUT_S, settings.provider_timeout_s)
            report = provider.fetch_status(provider_message_id, deadline)
            looked_up += 1
            if report is not None and report.status is not None:
                finals.append(report)
    finally:
        # Intermediate statuses (queued, sent...) change nothing and are not kept.
        report_inbox.push(rt.redis, finals)
    if looked_up:
        log.info("looked up %d %s message(s) with no final report; %d final", looked_up,
                 provider.name, len(finals))
    return looked_up
