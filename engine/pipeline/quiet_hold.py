"""Quiet hours in the worker: nothing is handed to a provider inside a campaign's window.

A job whose turn comes inside the window goes back to the durable schedule, due at the
window's end, before anything is claimed: no attempt is spent, and no claim lease runs
while it waits (a claimed message never waits for a window). The first time a campaign
meets a window, its other scheduled jobs move by the same amount, the time left until the
window's end, so a paced campaign goes on after the window with its spacing kept instead
of releasing everything at once at the end.

Jobs that were already published to Celery when the window began are held one by one as
the workers take them; they all become due at the window's end (how far apart they were
is not known once published). Held jobs wait in the schedule, not in a Celery queue, so
the long-wait alert, which measures Celery queues only, does not count them, and the stall
sweep sees the campaign's jobs in the schedule and leaves it alone.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from engine.domain.send_window import SendWindow
from engine.infra import redis_keys, scheduler

log = logging.getLogger(__name__)

_PAGE = 1000  # schedule entries per ZSCAN reply and per ZADD when moving a campaign's jobs
# The once-per-window marker outlives the window by this much: a worker whose clock is a
# little behind must not see the campaign as meeting the window for the first time again.
_MARKER_MARGIN_S = 3600


def hold(client: Any, window: SendWindow, campaign_id: int, job: scheduler.Job,
         now: datetime) -> datetime | None:
    """If ``now`` is inside the campaign's quiet hours: put ``job`` back in the schedule,
    due at the window's end, move the campaign's other scheduled jobs past the window (the
    first time it meets this window) and return the window's end (aware UTC). None when the
    job may run now."""
    until = window.held_until(now)
    if until is None:
        return None
    if first_meeting(client, campaign_id, until, now):
        moved = shift_schedule(client, campaign_id, until, now)
        log.info("campaign %s reached its quiet hours; %s; %d scheduled job(s) moved "
                 "by %.0f s", campaign_id, window.describe_hold(until), moved,
                 (until - now).total_seconds())
    # After the move: this job is placed at the end itself and must not be moved again.
    scheduler.schedule(client, [(until.timestamp(), job)])
    return until


def first_start(client: Any, window: SendWindow, campaign_id: int, now: datetime) -> float:
    """When a campaign about to be planned (process_bulk) may release its first job, as
    epoch seconds: ``now``, or the window's end if ``now`` is inside it. In that case the
    jobs planned from that start already skip the window, so the campaign counts as moved
    for this window and nothing moves them again."""
    until = window.held_until(now)
    if until is None:
        return now.timestamp()
    first_meeting(client, campaign_id, until, now)
    log.info("campaign %s starts in its quiet hours; %s", campaign_id,
             window.describe_hold(until))
    return until.timestamp()


# Marks the window (its end) the campaign was moved past, unless it already was: one
# step, so two callers cannot both see it unmarked.
_MARK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""


def first_meeting(client: Any, campaign_id: int, until: datetime, now: datetime) -> bool:
    """True for exactly one caller per campaign and window: hundreds of chunk jobs meeting
    the window together move the schedule once."""
    ttl = max(1, int((until - now).total_seconds())) + _MARKER_MARGIN_S
    key = redis_keys.campaign_window_shifted(campaign_id)
    return bool(client.register_script(_MARK)(keys=[key], args=[int(until.timestamp()), ttl]))


def forget_moves(client: Any, campaign_id: int) -> None:
    """For a campaign whose jobs are planned again (a resume): its new jobs have not been
    moved past any window, so the first to meet one moves them all, pacing kept."""
    client.delete(redis_keys.campaign_window_shifted(campaign_id))


def shift_schedule(client: Any, campaign_id: int, until: datetime, now: datetime) -> int:
    """Move every scheduled job of the campaign later by ``until - now`` (none earlier than
    ``until``); how many moved.

    Entries due exactly at ``until`` are jobs other workers held while this ran: already at
    the end, they stay. The move is ``ZADD XX``: a job the releaser published and removed
    meanwhile is not added back (it meets the window in a worker and is held there).
    """
    delta = (until - now).total_seconds()
    end = until.timestamp()
    found: dict[bytes | str, float] = {}  # ZSCAN may repeat an entry: moved once
    for raw, due in client.zscan_iter(redis_keys.SCHEDULED, count=_PAGE):
        if due != end and job_campaign(raw) == campaign_id:
            found[raw] = max(end, float(due) + delta)
    entries = list(found.items())
    for start in range(0, len(entries), _PAGE):
        client.zadd(redis_keys.SCHEDULED, dict(entries[start:start + _PAGE]), xx=True)
    return len(entries)


def job_campaign(raw: bytes | str) -> int | None:
    """The campaign of a scheduled job (its first argument, as engine.pipeline.broker_jobs
    reads it); None for anything else."""
    try:
        args = scheduler.Job.decode(raw).args
    except (ValueError, KeyError, TypeError):
        return None
    if isinstance(args, list) and args and type(args[0]) is int:  # bool is no campaign
        return int(args[0])
    return None
