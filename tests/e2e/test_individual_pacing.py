"""The individual route paces its first attempts in Redis: a send schedules one send_message
job per message, each ``pacing_individual_s`` after the one before, in message order; a
resume schedules what is still queued the same way. No worker runs: the schedule is read."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from engine.config.settings import load_settings
from engine.infra import redis_keys, scheduler
from engine.infra.connections import celery_for
from engine.infra.embedded_redis import EmbeddedRedis
from engine.operations.campaign_control import pause_campaign, resume_campaign
from engine.operations.campaigns import send_campaign
from engine.pipeline.sender import SEND_MESSAGE
from engine.store.db import open_database
from engine.store.models import OutgoingMessage
from tests.e2e.test_campaign_control import add_contacts, phone

PACING_S = 7.0


def scheduled(client: Any) -> list[tuple[float, scheduler.Job]]:
    """Every scheduled job with its due time, earliest first."""
    return [(due, scheduler.Job.decode(raw)) for raw, due in
            client.zrange(redis_keys.SCHEDULED, 0, -1, withscores=True)]


def assert_paced(jobs: list[tuple[float, scheduler.Job]], campaign: int,
                 message_ids: list[int]) -> None:
    assert [job.task for _, job in jobs] == [SEND_MESSAGE] * len(message_ids)
    assert [job.args for _, job in jobs] == [[campaign, m, False] for m in message_ids]
    gaps = [later - earlier for (earlier, _), (later, _) in pairwise(jobs)]
    assert gaps == [pytest.approx(PACING_S)] * (len(message_ids) - 1)


def test_first_attempts_are_paced_on_send_and_on_resume(
        embedded_redis: EmbeddedRedis, redis_client: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYDESK_PACING_INDIVIDUAL_S", str(PACING_S))
    settings = load_settings()
    db = open_database(settings)
    add_contacts(db, tmp_path, [phone(i) for i in range(4)])
    celery_for(embedded_redis.url())

    created = send_campaign(db, redis_client, settings, "Hi #name")
    assert str(created.plan.route) == "individual"
    with db.session() as session:
        ids = list(session.scalars(select(OutgoingMessage.id).where(
            OutgoingMessage.campaign_id == created.id).order_by(OutgoingMessage.id)))
    assert len(ids) == 4
    assert_paced(scheduled(redis_client), created.id, ids)

    pause_campaign(db, redis_client, created.id)
    resume_campaign(db, redis_client, settings, created.id)
    assert_paced(scheduled(redis_client), created.id, ids)
