"""Per-job figures from Celery's task signals, in the worker processes: jobs run, runtime,
and wait (publish to start, from the header ``celery_app.publish`` adds)."""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from celery import signals

from engine.infra import metrics
from engine.infra.celery_app import PUBLISHED_HEADER
from engine.infra.metrics import Metric
from engine.pipeline.runtime import runtime

log = logging.getLogger(__name__)

# task id -> (queue, start time): one entry per task running in this process.
_started: dict[str, tuple[str, float]] = {}


def _queue_of(task: Any) -> str:
    info = getattr(task.request, "delivery_info", None) or {}
    return str(info.get("routing_key") or "unknown")


def _on_prerun(task_id: str, task: Any, **_: Any) -> None:
    _started[task_id] = (_queue_of(task), time.time())


def _on_postrun(task_id: str, task: Any, **_: Any) -> None:
    entry = _started.pop(task_id, None)
    if entry is None:
        return
    queue, start = entry
    scopes = (metrics.ALL, metrics.queue_scope(queue))
    sample = metrics.Sample()
    sample.add(scopes, Metric.JOBS)
    sample.timing(scopes, Metric.RUNTIME_MS, Metric.RUNTIME_MAX_MS,
                  (time.time() - start) * 1000)
    published = task.request.get(PUBLISHED_HEADER)
    if isinstance(published, int | float):
        sample.timing(scopes, Metric.WAIT_MS, Metric.WAIT_MAX_MS,
                      max(0.0, start - published) * 1000)
    try:
        rt = runtime()
        metrics.record(rt.redis, rt.settings, sample)
    except redis.RedisError as exc:  # a figure lost is not worth failing a job for
        log.warning("could not record job metrics: %s", exc)


def connect() -> None:
    """Install the handlers in this process (the worker's main process, before forking)."""
    signals.task_prerun.connect(_on_prerun, weak=False)
    signals.task_postrun.connect(_on_postrun, weak=False)
