"""What the Workers page shows, gathered off the UI thread in one call: the console's own
workers, every worker on this Redis (other machines too), events, and the Redis status."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from desktop.services import Services
from engine.domain.formatting import format_bytes, format_duration
from engine.infra.embedded_redis import RedisUnavailable
from engine.monitoring.redis_info import embedded_redis_status
from engine.monitoring.worker_control import WorkerControlError, WorkerInfo, list_workers
from engine.operations.supervisor import LocalWorkerState, WorkerEvent


@dataclass(frozen=True)
class LocalRow:
    state: LocalWorkerState
    info: WorkerInfo | None  # what the worker itself reports, once online

    @property
    def current_task(self) -> str:
        if self.info is None or not self.info.active:
            return ""
        first = self.info.active[0]
        more = f" (+{len(self.info.active) - 1})" if len(self.info.active) > 1 else ""
        return f"{first.name.removeprefix('relaydesk.')} {first.args}{more}"


@dataclass(frozen=True)
class WorkersView:
    local: list[LocalRow]
    everywhere: list[WorkerInfo]
    events: list[WorkerEvent]
    redis: dict[str, Any]
    error: str | None = None  # why the workers on Redis could not be listed


def gather_workers(services: Services) -> WorkersView:
    supervisor = services.supervisor
    everywhere: list[WorkerInfo] = []
    error = None
    try:
        everywhere = list_workers(services.redis(), services.celery())
    except (RedisUnavailable, WorkerControlError, OSError) as exc:
        error = str(exc)
    except Exception as exc:  # redis errors: shown, the page keeps working
        error = f"{type(exc).__name__}: {exc}"
    by_name = {w.hostname: w for w in everywhere}
    local = [LocalRow(s, by_name.get(s.hostname)) for s in supervisor.snapshot()]
    return WorkersView(local, everywhere, supervisor.events(),
                       embedded_redis_status(services.settings), error)


def format_uptime(seconds: float | None) -> str:
    return "–" if seconds is None else format_duration(seconds)


def format_memory(value: int | None) -> str:
    return "–" if value is None else format_bytes(value)
