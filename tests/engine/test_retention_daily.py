"""The workers' daily prune (engine.pipeline.dispatcher.DailyPrune): once a day across
workers, only when RELAYDESK_KEEP_MESSAGES is set, archiving into RELAYDESK_ARCHIVE_DIR;
real Redis, SQLite and, when a server is given, PostgreSQL."""

from __future__ import annotations

import dataclasses
import gzip
import json
import time
from pathlib import Path
from typing import Any, cast

from sqlalchemy import func, select

from engine.config.settings import Settings, load_settings
from engine.infra.redis_keys import PRUNE_LAST_RUN, PRUNE_LOCK
from engine.pipeline import dispatcher
from engine.pipeline.dispatcher import PRUNE_DAY_S, PRUNE_EVERY_S, DailyPrune
from engine.pipeline.runtime import Runtime
from engine.store.campaign_state import campaign_summary
from engine.store.db import Database
from engine.store.models import OutgoingMessage
from tests.engine.test_retention_cli import SETTLED, campaign_to_prune

KEEP_S = 30 * 86400


def runtime_for(db: Database, client: Any, settings: Settings) -> Runtime:
    """What the dispatcher's steps read of a worker's runtime: settings, database, Redis."""
    return cast(Runtime, dataclasses.make_dataclass("R", ["settings", "db", "redis"])(
        settings, db, client))


def look(pruners: list[DailyPrune], rt: Runtime, now: float) -> None:
    """Each worker's dispatcher looks, as its loop does; wait for any run it started."""
    for pruner in pruners:
        pruner.run_if_due(rt, now)
    for pruner in pruners:
        if pruner.thread is not None:
            pruner.thread.join(120)


def messages(db: Database) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(OutgoingMessage)) or 0


def test_without_keep_messages_nothing_is_ever_pruned(db: Database, redis_client: Any,
                                                      db_settings: Settings) -> None:
    assert load_settings().keep_messages_s is None  # the default: keep everything
    campaign_to_prune(db)
    workers = [DailyPrune("worker-a"), DailyPrune("worker-b")]
    look(workers, runtime_for(db, redis_client, db_settings), now=100.0)
    assert all(w.thread is None for w in workers)
    assert messages(db) == 7
    assert redis_client.get(PRUNE_LAST_RUN) is None


def test_the_daily_prune_runs_once_a_day_across_workers(
        db: Database, redis_client: Any, db_settings: Settings, tmp_path: Path) -> None:
    campaign = campaign_to_prune(db)
    with db.session() as session:
        before = campaign_summary(session, campaign)
    archive_dir = tmp_path / "archive"
    settings = dataclasses.replace(db_settings, keep_messages_s=KEEP_S,
                                   archive_dir=archive_dir)
    rt = runtime_for(db, redis_client, settings)
    workers = [DailyPrune("worker-a"), DailyPrune("worker-b")]

    look(workers, rt, now=100.0)

    assert sum(w.thread is not None for w in workers) == 1  # the other found it taken
    [archive] = archive_dir.iterdir()
    assert archive.name.startswith("relaydesk-prune-")
    assert archive.name.endswith("Z.jsonl.gz")
    with gzip.open(archive, "rt") as lines:
        assert sum(json.loads(line)["type"] == "message" for line in lines) == SETTLED
    assert messages(db) == 7 - SETTLED
    with db.session() as session:
        assert campaign_summary(session, campaign) == before
    assert redis_client.get(PRUNE_LOCK) is None  # given back

    # More settles; the rest of the day, every look by either worker leaves it alone.
    campaign_to_prune(db)
    for turn in range(1, 4):
        look(workers, rt, now=100.0 + turn * PRUNE_EVERY_S)
    assert len(list(archive_dir.iterdir())) == 1
    assert messages(db) == 7 - SETTLED + 7

    # A day after the last run, the next look prunes again (whichever worker makes it).
    redis_client.set(PRUNE_LAST_RUN, repr(time.time() - PRUNE_DAY_S - 1))
    look(workers, rt, now=100.0 + 4 * PRUNE_EVERY_S)
    assert len(list(archive_dir.iterdir())) == 2
    assert messages(db) == 2 * (7 - SETTLED)


def test_a_failed_run_deletes_nothing_and_is_tried_again_within_the_day(
        db: Database, redis_client: Any, db_settings: Settings, tmp_path: Path) -> None:
    campaign_to_prune(db)
    not_a_folder = tmp_path / "archive"
    not_a_folder.write_text("a file where the archive folder should be")
    settings = dataclasses.replace(db_settings, keep_messages_s=KEEP_S,
                                   archive_dir=not_a_folder)
    rt = runtime_for(db, redis_client, settings)
    worker = DailyPrune("worker-a")
    started = time.time()

    look([worker], rt, now=100.0)

    assert messages(db) == 7  # not archived, so not deleted
    last = float(redis_client.get(PRUNE_LAST_RUN))
    # Due again an hour from now, not a day.
    retry_at = last + PRUNE_DAY_S
    assert started + dispatcher.PRUNE_RETRY_S - 5 <= retry_at <= time.time() + \
        dispatcher.PRUNE_RETRY_S
    assert redis_client.get(PRUNE_LOCK) is None
