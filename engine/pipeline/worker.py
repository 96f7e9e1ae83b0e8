"""``relaydesk worker``: a Celery worker started through RelayDesk's own entry point."""

from __future__ import annotations

import os
import socket
import sys
import uuid
from typing import Any

from celery import signals

from engine.config.settings import Settings
from engine.domain.queues import ALL_QUEUES
from engine.infra.connections import celery_for
from engine.infra.embedded_redis import redis_url
from engine.infra.local_gateway import gateway_url
from engine.monitoring.inspector import watch_jobs
from engine.monitoring.telemetry import init_sentry
from engine.pipeline import job_metrics
from engine.pipeline.dispatcher import Dispatcher

_dispatchers: list[Dispatcher] = []


def default_pool() -> str:
    return "threads" if sys.platform == "win32" else "prefork"  # no prefork on Windows


def worker_name(label: str | None = None) -> str:
    """A Celery node name unique to one worker run, e.g. relaydesk-local-1-3fa2@host."""
    return f"relaydesk-{label or os.getpid()}-{uuid.uuid4().hex[:4]}@{socket.gethostname()}"


def run_worker(settings: Settings, queues: list[str] | None = None,
               concurrency: int | None = None, pool: str | None = None,
               name: str | None = None, autoscale: tuple[int, int] | None = None) -> None:
    """Run a worker in this process until it is shut down.

    ``autoscale`` is (max, min) pool processes: the pool starts with min and grows with
    the work, and ``concurrency`` is ignored.
    """
    init_sentry(settings, "worker")
    # Pool processes report too: each starts its own Sentry client after the fork.
    signals.worker_process_init.connect(lambda **_: init_sentry(settings, "worker"),
                                        weak=False)
    url = redis_url(settings, start=True)
    gateway_url(settings, start=True)
    app = celery_for(url)
    import engine.pipeline.tasks  # noqa: F401  (registers the tasks)

    watch_jobs(settings)  # the development inspector; does nothing when it is off

    job_metrics.connect()

    queues = queues or list(ALL_QUEUES)
    concurrency = concurrency or settings.worker_concurrency
    name = name or worker_name()
    pool = pool or default_pool()
    if autoscale:
        concurrency = autoscale[0]  # the heartbeat shows the most it may run at once
        sizing = ["--autoscale", f"{autoscale[0]},{autoscale[1]}"]
    else:
        sizing = ["--concurrency", str(concurrency)]

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
        *sizing, "--pool", pool,
        "--loglevel", "INFO", "--without-mingle", "--without-gossip",
    ])
