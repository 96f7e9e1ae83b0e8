"""A prune and the giving back of space rest between their steps on SQLite, so the workers
get the one write lock (engine.store.lock_sharing); on PostgreSQL they do not wait.

The rests are read from the sleep they call, not timed: the question is whether each step
leaves room, not how long the machine took."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from engine.config.settings import Settings
from engine.store import lock_sharing
from engine.store.db import Database, open_database
from engine.store.models import OutgoingMessage
from engine.store.retention import prune
from engine.store.vacuum import give_back_space
from tests.engine.test_retention import CREATED, KEEP, NOW, OLD, S, add_campaign, phone


@pytest.fixture
def rests(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Each rest taken, in seconds (the sleep is recorded, not slept)."""
    taken: list[float] = []
    monkeypatch.setattr(lock_sharing, "sleep", taken.append)
    return taken


def cancelled(db: Database, count: int, body: str = "Hi") -> None:
    """``count`` messages cancelled long ago: settled, prunable."""
    with db.session() as session:
        campaign_id = add_campaign(session)
        session.execute(OutgoingMessage.__table__.insert(), [
            {"campaign_id": campaign_id, "phone": phone(i), "body": body, "encoding": "GSM-7",
             "segments": 1, "status": S.CANCELLED, "attempts": 0, "created_at": CREATED,
             "updated_at": OLD} for i in range(count)])


def test_a_prune_rests_after_each_batch_on_sqlite_only(db: Database,
                                                       rests: list[float]) -> None:
    cancelled(db, 250)
    result = prune(db, KEEP, now=NOW, batch=50)
    assert result.messages == 250
    assert result.batches == 5
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(OutgoingMessage)) == 0
    if db.engine.dialect.name == "sqlite":
        # One rest per batch, each at least as long as SQLite's busy handler sleeps; the
        # space given back afterwards may rest more.
        assert len(rests) >= 5
        assert all(rest >= lock_sharing.MIN_REST_S for rest in rests)
    else:
        assert rests == []


def test_giving_space_back_rests_between_its_steps(settings: Settings,
                                                   rests: list[float]) -> None:
    db = open_database(settings)
    cancelled(db, 3000, body="x" * 600)
    with db.engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM outgoing_messages")
    freed = give_back_space(db, pages_per_step=50)
    assert freed > 200  # several steps' worth
    assert len(rests) >= freed // 50 - 1
    assert all(rest >= lock_sharing.MIN_REST_S for rest in rests)
