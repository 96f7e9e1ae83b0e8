"""Workers on every machine sharing this Redis, seen and steered the way Flower does it:
our heartbeats (``worker_registry``) say which workers exist, Celery's remote control says
what they are doing and changes their pools.

Remote control travels through the pidbox: a command is PUBLISHed on a Redis pub/sub
channel every worker listens to, and each addressed worker pushes its reply onto a list
the caller waits on. It needs neither task events nor mingle/gossip, and it is separate
from the task queues and their exchanges. Every call here is one round trip with a short
timeout: milliseconds when all addressed workers answer, ``timeout`` when one does not.
Call these from a background thread, never a UI thread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import redis
from celery import Celery
from kombu.exceptions import OperationalError

from engine.infra.worker_registry import live_workers


class WorkerStatus(StrEnum):
    ONLINE = "online"  # answered, running nothing
    BUSY = "busy"  # answered, running a task
    UNRESPONSIVE = "unresponsive"  # beats, but did not answer the broadcast in time


CONTROL_TIMEOUT_S = 1.0
_SUMMARY_ITEMS = 3
_SUMMARY_CHARS = 80


class WorkerControlError(RuntimeError):
    """A worker did not answer or refused a command; the message says which and why."""


@dataclass(frozen=True)
class ActiveTask:
    """A task a worker is running now. Our tasks carry only ids, so ``args`` holds no
    phone number or message text."""

    id: str
    name: str
    args: str  # a short summary, e.g. "[7, [101, 102, 103, … +47]]"
    started: float | None  # epoch seconds
    worker_pid: int | None  # the pool process running it


@dataclass(frozen=True)
class WorkerInfo:
    hostname: str  # Celery's node name, what the control functions below take
    host: str
    pid: int | None
    queues: tuple[str, ...]
    concurrency: int | None  # as started; pool_size is what it has now
    started: float | None  # epoch seconds
    seen: float | None  # last heartbeat, epoch seconds
    status: WorkerStatus
    pool: str | None = None  # prefork, threads or solo
    pool_size: int | None = None
    autoscale: tuple[int, int] | None = None  # (max, min) when the worker autoscales
    processed: int | None = None  # tasks taken since the worker started
    processed_by_task: Mapping[str, int] = field(default_factory=dict)
    active: tuple[ActiveTask, ...] = ()
    uptime_s: float | None = None


def list_workers(client: Any, app: Celery,
                 timeout: float = CONTROL_TIMEOUT_S) -> list[WorkerInfo]:
    """Every worker with a fresh heartbeat, with its pool, counts and current tasks.

    Two broadcasts (stats, active) to the workers with a heartbeat, each ending as soon
    as all of them answered, or after ``timeout``; a worker that stays silent is listed
    "unresponsive". No heartbeat, no broadcast: with no workers this costs one SCAN.
    Raises WorkerControlError when Redis cannot be reached.
    """
    try:
        beats = {str(b["name"]): b for b in live_workers(client) if b.get("name")}
    except redis.RedisError as exc:
        raise WorkerControlError(f"cannot read worker heartbeats from Redis: {exc}") from exc
    if not beats:
        return []
    inspect = app.control.inspect(destination=sorted(beats), timeout=timeout,
                                  limit=len(beats))
    try:
        stats: dict[str, Any] = inspect.stats() or {}
        active: dict[str, Any] = inspect.active() or {}
    except OperationalError as exc:
        raise WorkerControlError(f"cannot reach the broker to ask the workers: {exc}") from exc
    return [_worker_info(name, beat, stats.get(name), active.get(name))
            for name, beat in sorted(beats.items())]


def _worker_info(name: str, beat: Mapping[str, Any], stats: Any, active: Any) -> WorkerInfo:
    answered = isinstance(stats, dict) or isinstance(active, list)
    tasks = tuple(_active_task(t) for t in active or [] if isinstance(t, dict))
    status = (WorkerStatus.UNRESPONSIVE if not answered else
              WorkerStatus.BUSY if tasks else WorkerStatus.ONLINE)
    stats = stats if isinstance(stats, dict) else {}
    totals = stats.get("total") or {}
    pool = stats.get("pool") or {}
    scaler = stats.get("autoscaler") or {}
    return WorkerInfo(
        hostname=name,
        host=str(beat.get("host") or name.partition("@")[2]),
        pid=_int(beat.get("pid")) or _int(stats.get("pid")),
        queues=tuple(beat.get("queues") or ()),
        concurrency=_int(beat.get("concurrency")),
        started=_float(beat.get("started")),
        seen=_float(beat.get("seen")),
        status=status,
        pool=_pool_name(pool.get("implementation")),
        pool_size=pool_size(pool),
        autoscale=(int(scaler["max"]), int(scaler["min"])) if scaler else None,
        processed=sum(int(n) for n in totals.values()) if stats else None,
        processed_by_task={str(k): int(v) for k, v in totals.items()},
        active=tasks,
        uptime_s=_float(stats.get("uptime")),
    )


def pool_size(pool: Mapping[str, Any]) -> int | None:
    """The pool's current size from a stats reply's "pool" entry: the live prefork
    processes (a grow shows once the worker started the new process, within ~5 s)."""
    if isinstance(pool.get("processes"), list):
        return len(pool["processes"])
    return _int(pool.get("max-concurrency"))


def _pool_name(implementation: Any) -> str | None:
    if not isinstance(implementation, str):
        return None
    module = implementation.partition(":")[0].rsplit(".", 1)[-1]
    return {"thread": "threads"}.get(module, module)


def _active_task(task: Mapping[str, Any]) -> ActiveTask:
    return ActiveTask(id=str(task.get("id", "")), name=str(task.get("name", "")),
                      args=summarise(task.get("args", [])),
                      started=_float(task.get("time_start")),
                      worker_pid=_int(task.get("worker_pid")))


def summarise(value: Any) -> str:
    """A one-line, bounded rendering of task arguments: long lists are cut with a count."""
    text = _summary(value)
    return text if len(text) <= _SUMMARY_CHARS else text[:_SUMMARY_CHARS - 1] + "…"


def _summary(value: Any) -> str:
    if isinstance(value, list | tuple):
        shown = [_summary(v) for v in value[:_SUMMARY_ITEMS]]
        if len(value) > _SUMMARY_ITEMS:
            shown.append(f"… +{len(value) - _SUMMARY_ITEMS}")
        return "[" + ", ".join(shown) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_summary(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


# --- commands -------------------------------------------------------------------------------

def ping(app: Celery, hostnames: Sequence[str],
         timeout: float = CONTROL_TIMEOUT_S) -> set[str]:
    """The given workers that answer within ``timeout``."""
    if not hostnames:
        return set()
    replies = _call(lambda: app.control.ping(destination=list(hostnames), timeout=timeout,
                                             limit=len(hostnames)))
    return {name for reply in replies for name in reply}


def pool_grow(app: Celery, hostname: str, n: int = 1,
              timeout: float = CONTROL_TIMEOUT_S) -> str:
    """Add ``n`` pool processes (prefork, not autoscaling). Returns the worker's answer."""
    return _command("pool_grow", hostname, timeout, lambda: app.control.pool_grow(
        n, destination=[hostname], reply=True, timeout=timeout, limit=1))


def pool_shrink(app: Celery, hostname: str, n: int = 1,
                timeout: float = CONTROL_TIMEOUT_S) -> str:
    """Stop ``n`` idle pool processes (prefork, not autoscaling)."""
    return _command("pool_shrink", hostname, timeout, lambda: app.control.pool_shrink(
        n, destination=[hostname], reply=True, timeout=timeout, limit=1))


def set_autoscale(app: Celery, hostname: str, max_processes: int, min_processes: int,
                  timeout: float = CONTROL_TIMEOUT_S) -> str:
    """Change the process range of a worker started with ``--autoscale``."""
    if max_processes < 1 or not 0 <= min_processes <= max_processes:
        raise ValueError("autoscale needs max >= 1 and 0 <= min <= max, not "
                         f"{max_processes},{min_processes}")
    return _command("autoscale", hostname, timeout, lambda: app.control.autoscale(
        max_processes, min_processes, destination=[hostname], reply=True, timeout=timeout,
        limit=1))


def shutdown(app: Celery, hostname: str, timeout: float = CONTROL_TIMEOUT_S) -> str:
    """Warm shutdown of one worker, on any machine and on Windows (no signals needed).

    A worker never answers ``shutdown`` itself (it exits from inside the command handler),
    so it is pinged first: an error means nobody received the command.
    """
    if hostname not in ping(app, [hostname], timeout):
        raise WorkerControlError(f"worker {hostname} did not answer within {timeout:g} s; "
                                 "it may be stopped already or cut off from Redis")
    _call(lambda: app.control.shutdown(destination=[hostname], reply=False))
    return "shutdown requested"


def _command(command: str, hostname: str, timeout: float, request: Callable[[], Any]) -> str:
    replies = _call(request)
    answer = next((reply[hostname] for reply in replies if hostname in reply), None)
    if answer is None:
        raise WorkerControlError(f"worker {hostname} did not answer {command} within "
                                 f"{timeout:g} s; is it running and connected to Redis?")
    if isinstance(answer, dict) and "error" in answer:
        raise WorkerControlError(f"worker {hostname} refused {command}: {answer['error']}")
    if isinstance(answer, dict) and "ok" in answer:
        return str(answer["ok"])
    return str(answer)


def _call(request: Callable[[], Any]) -> list[dict[str, Any]]:
    try:
        replies = request()
    except OperationalError as exc:
        raise WorkerControlError(f"cannot reach the broker: {exc}") from exc
    return list(replies or [])
