"""Finding a campaign's jobs in the broker, with real Celery messages in a real Redis:
published by ``publish()``, taken by kombu's own consumer, scheduled by the scheduler."""

from __future__ import annotations

import time
from typing import Any

import pytest

from engine.domain.queues import BULK_MESSAGES, HIGH_PRIORITY, MESSAGES
from engine.infra import scheduler
from engine.infra.celery_app import app, publish
from engine.infra.connections import celery_for
from engine.infra.embedded_redis import EmbeddedRedis
from engine.monitoring.queue_status import UNACKED, broker_load, priority_keys
from engine.pipeline.broker_jobs import campaigns_with_jobs, message_campaign
from engine.pipeline.sender import PROCESS_BULK, SEND_CHUNK, SEND_MESSAGE, message_job
from tests.support import wait_for


@pytest.fixture
def broker(embedded_redis: EmbeddedRedis, redis_client: Any) -> Any:
    celery_for(embedded_redis.url())
    return redis_client


def waiting(client: Any) -> int:
    return sum(q.waiting for q in broker_load(client).queues.values())


def test_jobs_waiting_in_every_queue_are_found_by_campaign(broker: Any) -> None:
    publish(PROCESS_BULK, [5], BULK_MESSAGES)
    publish(SEND_CHUNK, [6, list(range(100, 150))], BULK_MESSAGES)
    publish(SEND_MESSAGE, [7, 12, False], MESSAGES)
    publish(SEND_MESSAGE, [8, 13, True], HIGH_PRIORITY)
    wait_for(lambda: waiting(broker) == 4, message="the four jobs in their queues")
    assert campaigns_with_jobs(broker) == {5, 6, 7, 8}
    assert campaigns_with_jobs(broker, [MESSAGES]) == {7}
    # Campaign 5's job says nothing about campaigns 50 or 55.
    assert not {50, 55} & campaigns_with_jobs(broker)


def test_a_job_in_a_priority_list_is_found(broker: Any) -> None:
    # Celery's own priority option: kombu files the job under "bulk_messages\x06\x166".
    app.send_task(SEND_CHUNK, args=[9, [1, 2]], queue=BULK_MESSAGES, priority=6)
    wait_for(lambda: broker.llen(priority_keys(BULK_MESSAGES)[2]) == 1,
             message="the job in the priority 6 list")
    assert broker.llen(BULK_MESSAGES) == 0
    assert campaigns_with_jobs(broker) == {9}


def test_a_job_taken_but_not_acknowledged_is_found_until_acked(broker: Any) -> None:
    publish(SEND_CHUNK, [21, [3, 4, 5]], BULK_MESSAGES)
    wait_for(lambda: waiting(broker) == 1, message="the job in its queue")
    with app.connection_for_read() as connection:
        # kombu's consumer path: the job leaves the list for the unacked hash.
        message = connection.default_channel.basic_get(BULK_MESSAGES, no_ack=False)
        assert message is not None
        assert waiting(broker) == 0
        assert broker.hlen(UNACKED) == 1
        assert message_campaign(broker.hvals(UNACKED)[0]) == 21
        assert campaigns_with_jobs(broker) == {21}
        message.ack()
    assert broker.hlen(UNACKED) == 0
    assert campaigns_with_jobs(broker) == set()  # gone from the broker: truly lost


def test_work_scheduled_for_later_is_outstanding(broker: Any) -> None:
    tomorrow = time.time() + 86_400
    scheduler.schedule(broker, [
        (tomorrow, scheduler.Job(PROCESS_BULK, [31], BULK_MESSAGES)),  # a send for later
        (tomorrow, message_job(32, 7, MESSAGES, retry=True)),  # a retry backing off
        (time.time(), scheduler.Job(SEND_CHUNK, [33, [8, 9]], BULK_MESSAGES)),  # paced, due
    ])
    assert campaigns_with_jobs(broker) == {31, 32, 33}


def test_other_programs_messages_are_ignored(broker: Any) -> None:
    publish(SEND_CHUNK, [41, [1]], BULK_MESSAGES)
    app.send_task("someone.else", args=["text", 1], queue=BULK_MESSAGES)
    app.send_task("someone.else", args=[42, 7], queue=MESSAGES)  # looks like a campaign
    broker.lpush(MESSAGES, b"not a celery message")
    wait_for(lambda: waiting(broker) == 4, message="the four messages")
    assert campaigns_with_jobs(broker) == {41}


def test_a_long_queue_is_read_whole(broker: Any) -> None:
    """More jobs than one page of the scan: the campaign at the far end is still found."""
    publish(SEND_MESSAGE, [61, 1, False], MESSAGES)  # the oldest: last in the list
    with app.producer_or_acquire() as producer:
        for i in range(2_500):
            app.send_task(SEND_MESSAGE, args=[60, i, False], queue=MESSAGES,
                          producer=producer)
    wait_for(lambda: waiting(broker) == 2_501, message="the jobs in the queue")
    assert campaigns_with_jobs(broker) == {60, 61}
