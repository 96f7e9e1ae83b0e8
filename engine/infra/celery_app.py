"""The Celery application and its reliability settings.

Each setting below answers a failure seen in real Celery-on-Redis deployments; the
comments say which.
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery
from kombu.entity import Exchange, Queue

from engine.domain.queues import ALL_QUEUES, MESSAGES

# A message a worker took but did not ack is handed to another worker after this long.
# Short, so the work of a worker killed mid-task is redone within about a minute instead
# of Celery's default hour. Tasks may run longer than this without harm: every send
# claims its message row first, so a second copy of a task skips what the first sent.
VISIBILITY_TIMEOUT_S = 60
RESTORE_INTERVAL_S = 5

# Celery reads these from the environment ahead of its own configuration. A shell set up for
# another project (its CELERY_BROKER_URL, its loader) would point RelayDesk's workers and
# publishes at that project's broker: RelayDesk's broker is RELAYDESK_REDIS_URL only. The
# worker processes RelayDesk starts inherit the cleaned environment.
FOREIGN_CELERY_VARIABLES = (
    "CELERY_BROKER_URL", "CELERY_BROKER_READ_URL", "CELERY_BROKER_WRITE_URL",
    "CELERY_RESULT_BACKEND", "CELERY_LOADER", "CELERY_CONFIG_MODULE",
    "CELERY_CUSTOM_WORKER_POOL",
)
for _name in FOREIGN_CELERY_VARIABLES:
    os.environ.pop(_name, None)

app = Celery("relaydesk", include=["engine.pipeline.tasks"])
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    # Ack after the task ran, and give the message back if the worker process died: with
    # idempotent tasks this turns a crash into a retry instead of a lost message.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    # Each process reserves only the message it runs; nothing waits in a dead worker.
    worker_prefetch_multiplier=1,
    # Delivery state lives in the database; Celery results would only fill Redis.
    task_ignore_result=True,
    task_store_errors_even_if_ignored=False,
    # One exchange and routing key per queue: with a shared key, a direct exchange would
    # copy every message into all three queues.
    task_queues=[Queue(name, Exchange(name, type="direct"), routing_key=name)
                 for name in ALL_QUEUES],
    task_default_queue=MESSAGES,
    broker_transport_options={
        "visibility_timeout": VISIBILITY_TIMEOUT_S,
        "unacked_restore_interval": RESTORE_INTERVAL_S,
        "unacked_restore_throttle": 1,
        # Take from high_priority first, then messages, then bulk_messages (kombu would
        # otherwise rotate between them).
        "queue_order_strategy": "priority",
        # connections.celery_for adds the timeouts and keepalive with the broker's URL.
    },
    broker_connection_retry_on_startup=True,
    broker_connection_max_retries=None,  # keep retrying through a Redis restart
    worker_send_task_events=True,
    task_send_sent_event=False,
    worker_hijack_root_logger=False,
    worker_cancel_long_running_tasks_on_connection_loss=False,
    enable_utc=True,
)


# A header with the publish time: the worker derives the job's wait in the queue from it,
# and the monitor the age of the oldest job still waiting.
PUBLISHED_HEADER = "relaydesk_published"


class BrokerNotConfigured(RuntimeError):
    """publish() before connections.celery_for(url): a bug, not an operator's mistake."""


def publish(task: str, args: list[Any], queue: str) -> None:
    """Queue ``task`` on the broker the app was pointed at with connections.celery_for."""
    if app.conf.broker_url is None:
        # Celery would fall back to amqp://localhost and fail, or worse find a broker
        # there, far from the call that forgot to say which broker.
        raise BrokerNotConfigured(
            f"publish({task!r}) before connections.celery_for(url): no broker to publish to")
    app.send_task(task, args=args, queue=queue, headers={PUBLISHED_HEADER: time.time()})
