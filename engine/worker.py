"""``relaydesk worker``: a Celery worker started through RelayDesk's own entry point."""

from __future__ import annotations

import os
import socket
import sys
import uuid
from typing import Any

from celery import signals

from engine.celery_app import configure
from engine.dispatcher import Dispatcher
from engine.embedded_redis import redis_url
from engine.local_gateway import gateway_url
from engine.queues import ALL_QUEUES
from engine.settings import Settings
from engine.telemetry import init_sentry

_dispatchers: list[Dispatcher] = []


def default_pool() -> str:
    return "threads" if sys.platform == "win32" else "prefork"  # no prefork on Windows


def worker_name() -> str:
    return f"relaydesk-{os.getpid()}-{uuid.uuid4().hex[:4]}@{socket.gethostname()}"


def run_worker(settings: Settings, queues: list[str] | None = None,
               concurrency: int | None = None, pool: str | None = None,
               name: str | None = None) -> None:
    init_sentry(settings, "worker")
    # Pool processes report too: each starts its own Sentry client after the fork.
    signals.worker_process_init.connect(lambda **_: init_sentry(settings, "worker"),
                                        weak=False)
    url = redis_url(settings, start=True)
    gateway_url(settings, start=True)
    app = configure(url)
    import engine.tasks  # noqa: F401  (registers the tasks)

    queues = queues or list(ALL_QUEUES)
    concurrency = concurrency or settings.worker_concurrency
    name = name or worker_name()

    def start_dispatcher(**_: Any) -> None:
        dispatcher = Dispatcher(name, queues, concurrency)
        _dispatchers.append(dispatcher)
        dispatcher.start()

    def stop_dispatcher(**_: Any) -> None:
        for dispatcher in _dispatchers:
            dispatcher.stop()

    signals.worker_ready.connect(start_dispatcher, weak=False)
    signals.worker_shutdown.connect(stop_dispatcher, weak=False)
    app.worker_main([
        "worker", "--hostname", name, "--queues", ",".join(queues),
        "--concurrency", str(concurrency), "--pool", pool or default_pool(),
        "--loglevel", "INFO", "--without-mingle", "--without-gossip",
    ])
