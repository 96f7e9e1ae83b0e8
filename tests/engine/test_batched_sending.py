"""The sender's batches: as many messages as the send pool calls at once (fewer under a slow
rate limit, one for a breaker's probe), claimed together and recorded together, and the
breaker, pause and retry paths kept per message. Real Redis, the sandbox gateway over HTTP,
SQLite and, when a server is given, PostgreSQL. A batch's sent messages share one sent_at
(one record for the batch), which is how these tests see the batches."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
import redis as redis_lib
from sqlalchemy import select

from engine.config.settings import Settings, load_settings
from engine.domain.personalize import Recipient
from engine.infra import redis_keys, scheduler
from engine.infra.embedded_redis import EmbeddedRedis
from engine.infra.rate_limit import RateLimiter
from engine.infra.sandbox_gateway import GatewayServer
from engine.operations.campaigns import create_campaign_to
from engine.pipeline.runtime import CallLanes, Runtime, build_runtime
from engine.pipeline.sender import SEND_CHUNK, SEND_MESSAGE, send_messages
from engine.store.models import Campaign, MessageStatus, OutgoingMessage
from tests.support import http_json, wait_for

CONCURRENCY = 3


@pytest.fixture
def sender_settings(db_settings: Settings, redis_client: object, gateway: GatewayServer,
                    monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("RELAYDESK_SEND_CONCURRENCY", str(CONCURRENCY))
    monkeypatch.setenv("RELAYDESK_BREAKER_THRESHOLD", "3")
    monkeypatch.setenv("RELAYDESK_BREAKER_COOLDOWN_S", "60")
    return load_settings()


def runtime_for(settings: Settings) -> Iterator[Runtime]:
    rt = build_runtime(settings)
    yield rt
    rt.pool.shutdown()


@pytest.fixture
def rt(sender_settings: Settings) -> Iterator[Runtime]:
    yield from runtime_for(sender_settings)


def campaign(rt: Runtime, endings: list[str]) -> tuple[int, list[int]]:
    """A campaign to numbers with these last four digits (the sandbox's test numbers fail
    on purpose; 0055 and the like are delivered), its message ids in order."""
    recipients = [(None, f"+254712{i:02d}{end}", Recipient(f"M{i}", 100_00, 0, date(2030, 1, 1)))
                  for i, end in enumerate(endings)]
    created = create_campaign_to(rt.db, rt.settings, "Hello", recipients)
    with rt.db.session() as session:
        ids = list(session.scalars(select(OutgoingMessage.id).where(
            OutgoingMessage.campaign_id == created.id).order_by(OutgoingMessage.id)))
    return created.id, ids


def rows(rt: Runtime, ids: list[int]) -> list[tuple[str, int]]:
    with rt.db.session() as session:
        found = {m.id: (str(m.status), m.attempts) for m in session.scalars(
            select(OutgoingMessage).where(OutgoingMessage.id.in_(ids)))}
    return [found[i] for i in ids]


def batches(rt: Runtime, ids: list[int]) -> list[int]:
    """The sizes of the batches the sent ones were recorded in, in the order they went."""
    with rt.db.session() as session:
        sent_at = list(session.scalars(
            select(OutgoingMessage.sent_at).where(OutgoingMessage.id.in_(ids))
            .where(OutgoingMessage.status == MessageStatus.SENT)
            .order_by(OutgoingMessage.id)))
    return list(Counter(sent_at).values())


def scheduled(client: Any) -> list[tuple[float, scheduler.Job]]:
    return [(due, scheduler.Job.decode(raw)) for raw, due in
            client.zrange(redis_keys.SCHEDULED, 0, -1, withscores=True)]


def test_a_chunk_goes_out_in_batches_the_size_of_the_send_pool(
        rt: Runtime, gateway: GatewayServer) -> None:
    campaign_id, ids = campaign(rt, ["0055"] * 8)
    send_messages(rt, campaign_id, ids, [MessageStatus.QUEUED], SEND_CHUNK)
    assert rows(rt, ids) == [("sent", 1)] * 8
    assert batches(rt, ids) == [3, 3, 2]
    assert gateway.state.stats()["received"] == 8
    with rt.db.session() as session:
        finished = session.get(Campaign, campaign_id)
        assert finished is not None
        assert finished.status == "completed"


@pytest.mark.parametrize(("timeout_s", "expected"), [
    ("15", [5, 2]),  # slots 0.25 s apart: 5 within a second
    ("2", [3, 3, 1]),  # and within a quarter of a 2 s call: 3
])
def test_a_slow_rate_limit_makes_batches_narrower(
        db_settings: Settings, redis_client: object, gateway: GatewayServer,
        monkeypatch: pytest.MonkeyPatch, timeout_s: str, expected: list[int]) -> None:
    monkeypatch.setenv("RELAYDESK_SEND_CONCURRENCY", "8")
    monkeypatch.setenv("RELAYDESK_RATE_LIMIT", "4/s")
    monkeypatch.setenv("RELAYDESK_PROVIDER_TIMEOUT_S", timeout_s)
    for rt in runtime_for(load_settings()):
        campaign_id, ids = campaign(rt, ["0055"] * 7)
        started = time.time()
        send_messages(rt, campaign_id, ids, [MessageStatus.QUEUED], SEND_CHUNK)
        assert batches(rt, ids) == expected
        # Every message waited for its own slot, the batch's later ones after the claim.
        sent = sorted(m["at"] for m in http_json(gateway.url + "/messages"))
        assert len(sent) == 7
        assert sent[-1] - started >= 6 * 0.25 - 0.01


def test_an_open_breaker_puts_the_rest_of_the_chunk_back_untried(
        rt: Runtime, gateway: GatewayServer, redis_client: Any) -> None:
    campaign_id, ids = campaign(rt, ["0055"] * 4)
    redis_client.set(rt.breaker.open_until_key, str(time.time() + 60))
    before = time.time()
    send_messages(rt, campaign_id, ids, [MessageStatus.QUEUED], SEND_CHUNK)
    assert gateway.state.stats()["received"] == 0
    assert rows(rt, ids) == [("queued", 0)] * 4  # no attempt spent
    [(due, again)] = scheduled(redis_client)
    assert (again.task, again.args) == (SEND_CHUNK, [campaign_id, ids])
    assert due >= before + 59  # at the end of the cool-down


def test_a_half_open_breaker_sends_one_probe_then_batches(
        rt: Runtime, gateway: GatewayServer, redis_client: Any) -> None:
    campaign_id, ids = campaign(rt, ["0055"] * 7)
    redis_client.set(rt.breaker.open_until_key, str(time.time() - 1))  # cool-down over
    send_messages(rt, campaign_id, ids, [MessageStatus.QUEUED], SEND_CHUNK)
    assert rows(rt, ids) == [("sent", 1)] * 7
    assert batches(rt, ids) == [1, 3, 3]  # the probe alone; its success closed the breaker
    assert rt.breaker.state().state == "closed"


def test_a_success_resets_the_failures_counted_before_the_batch(
        rt: Runtime, gateway: GatewayServer, redis_client: Any) -> None:
    rt.breaker.record_failure()
    rt.breaker.record_failure()  # one short of the threshold
    campaign_id, ids = campaign(rt, ["0055", "0055"])
    send_messages(rt, campaign_id, ids, [MessageStatus.QUEUED], SEND_CHUNK)
    assert rt.breaker.state().failures == 0
    # The count starts again: three more failures in a row are needed to open it.
    rt.breaker.record_failure()
    rt.breaker.record_failure()
    assert rt.breaker.state().state == "closed"


def test_a_batch_of_failures_opens_the_breaker_for_the_rest(
        rt: Runtime, gateway: GatewayServer, redis_client: Any) -> None:
    # Three transient failures in a row (the threshold) in one batch: counted one by one.
    campaign_id, ids = campaign(rt, ["0003"] * 3 + ["0055"] * 3)
    send_messages(rt, campaign_id, ids, [MessageStatus.QUEUED], SEND_CHUNK)
    assert gateway.state.stats()["received"] == 3
    assert rows(rt, ids) == [("failed", 1)] * 3 + [("queued", 0)] * 3
    assert rt.breaker.state().state == "open"
    jobs = sorted(((j.task, j.args) for _, j in scheduled(redis_client)), key=str)
    assert jobs == sorted([(SEND_MESSAGE, [campaign_id, i, True]) for i in ids[:3]]
                          + [(SEND_CHUNK, [campaign_id, ids[3:]])], key=str)


def test_an_account_error_in_a_batch_pauses_the_campaign_and_gives_the_attempt_back(
        rt: Runtime, gateway: GatewayServer, redis_client: Any) -> None:
    campaign_id, ids = campaign(rt, ["0004", "0055", "0055", "0055", "0055"])
    send_messages(rt, campaign_id, ids, [MessageStatus.QUEUED], SEND_CHUNK)
    # The first batch was in flight: its other messages went; nothing after the pause did.
    assert gateway.state.stats()["received"] == CONCURRENCY
    assert rows(rt, ids) == [("queued", 0), ("sent", 1), ("sent", 1), ("queued", 0),
                             ("queued", 0)]
    assert redis_client.exists(redis_keys.campaign_paused(campaign_id))
    with rt.db.session() as session:
        paused = session.get(Campaign, campaign_id)
        assert paused is not None
        assert paused.status == "paused"
        assert "insufficient_balance" in (paused.pause_reason or "")
    assert scheduled(redis_client) == []  # resume plans the rest again


def test_a_retry_job_claims_only_its_failed_message(
        rt: Runtime, gateway: GatewayServer) -> None:
    campaign_id, [message] = campaign(rt, ["0002"])  # fails twice, then goes
    send_messages(rt, campaign_id, [message], [MessageStatus.QUEUED], SEND_MESSAGE)
    assert rows(rt, [message]) == [("failed", 1)]
    send_messages(rt, campaign_id, [message], [MessageStatus.QUEUED], SEND_MESSAGE)
    assert rows(rt, [message]) == [("failed", 1)]  # not queued any more: nothing claimed
    send_messages(rt, campaign_id, [message], [MessageStatus.FAILED], SEND_MESSAGE)
    send_messages(rt, campaign_id, [message], [MessageStatus.FAILED], SEND_MESSAGE)
    assert rows(rt, [message]) == [("sent", 3)]
    assert gateway.state.stats()["received"] == 3


def test_reserve_many_takes_consecutive_slots_in_the_shared_budget(
        embedded_redis: EmbeddedRedis) -> None:
    a = RateLimiter(redis_lib.Redis.from_url(embedded_redis.url()), "sandbox", 50)
    b = RateLimiter(redis_lib.Redis.from_url(embedded_redis.url()), "sandbox", 50)
    started = time.monotonic()
    batch = a.reserve_many(5)
    after = b.reserve()  # another process's single send comes after the whole batch
    between = time.monotonic() - started  # at most this long passed between the two
    assert batch[0] == 0
    assert [round(later - first, 6) for first, later in itertools.pairwise(batch)] == [0.02] * 4
    assert 5 * 0.02 - between - 0.001 <= after <= 5 * 0.02 + 0.001
    unlimited = RateLimiter(redis_lib.Redis.from_url(embedded_redis.url()), "sandbox", None)
    assert unlimited.reserve_many(3) == [0.0, 0.0, 0.0]
    assert unlimited.interval_s == 0


def test_lanes_hand_out_what_is_free_and_wait_when_none_is() -> None:
    lanes = CallLanes(4)
    assert lanes.take(3) == 3
    assert lanes.take(3) == 1  # only one left: a smaller batch, not a wait
    got: list[int] = []
    waiter = threading.Thread(target=lambda: got.append(lanes.take(2)))
    waiter.start()
    assert waiter.is_alive()  # none free: it waits before claiming anything
    lanes.give(1)
    waiter.join(10)
    assert got == [1]
    lanes.give(3)
    assert lanes.take(8) == 3
    wait_for(lambda: not waiter.is_alive(), message="the waiter to finish")
