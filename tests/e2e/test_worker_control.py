"""The engine of the console's Workers page, with real worker processes and the embedded
Redis: local workers under a Supervisor, every worker through Celery's remote control,
and the Redis panel's figures."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from celery import Celery

from engine.config.settings import load_settings
from engine.domain.queues import BULK_MESSAGES, MESSAGES
from engine.infra.celery_app import publish
from engine.infra.connections import celery_for
from engine.infra.embedded_redis import EmbeddedRedis
from engine.infra.sandbox_gateway import GatewayServer
from engine.monitoring import worker_control
from engine.monitoring.redis_info import embedded_redis_status
from engine.monitoring.worker_control import WorkerControlError, WorkerInfo
from engine.operations.supervisor import LocalWorkerState, Supervisor, WorkerSpec
from engine.pipeline.sender import SEND_MESSAGE
from tests.support import wait_for

STARTUP_S = 60


@pytest.fixture
def supervisor(redis_client: Any, gateway: GatewayServer,
               fast_pipeline: None) -> Iterator[Supervisor]:
    # The data dir's embedded Redis already runs (the fixture), so the workers use it;
    # RELAYDESK_SMS_GATEWAY_URL is set, so they start no gateway of their own.
    sup = Supervisor(load_settings(), workers=0, min_processes=1, max_processes=3,
                     stop_timeout=20)
    yield sup
    sup.stop()


@pytest.fixture
def app(embedded_redis: EmbeddedRedis) -> Celery:
    return celery_for(embedded_redis.url())


def state_of(sup: Supervisor, worker_id: str) -> LocalWorkerState:
    return next(s for s in sup.snapshot() if s.id == worker_id)


def wait_state(sup: Supervisor, worker_id: str, *states: str) -> LocalWorkerState:
    def reached() -> LocalWorkerState | None:
        state = state_of(sup, worker_id)
        return state if state.state in states else None

    result: LocalWorkerState = wait_for(reached, timeout=STARTUP_S,
                                        message=f"{worker_id} to be {'/'.join(states)}")
    return result


def info_of(client: Any, app: Celery, hostname: str) -> WorkerInfo | None:
    return next((w for w in worker_control.list_workers(client, app, timeout=2.0)
                 if w.hostname == hostname), None)


def wait_info(client: Any, app: Celery, hostname: str, condition: Any,
              message: str) -> WorkerInfo:
    def met() -> WorkerInfo | None:
        info = info_of(client, app, hostname)
        return info if info is not None and condition(info) else None

    result: WorkerInfo = wait_for(met, timeout=30, interval=0.2, message=message)
    return result


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def tree(pid: int) -> list[int]:
    return [p.pid for p in psutil.Process(pid).children(recursive=True)]


def test_local_workers_are_watched_steered_restarted_and_stopped(
        supervisor: Supervisor, redis_client: Any, app: Celery) -> None:
    # Two workers for the whole story, since each takes seconds to start.
    fixed = supervisor.add_worker(WorkerSpec(concurrency=1))
    scaling = supervisor.add_worker(WorkerSpec((BULK_MESSAGES,), autoscale=True))
    assert {s.id: s.state for s in supervisor.snapshot()} == {fixed: "starting",
                                                             scaling: "starting"}
    wait_state(supervisor, fixed, "online", "busy")
    wait_state(supervisor, scaling, "online", "busy")

    listed_with_counts(supervisor, redis_client, app, fixed, scaling)
    resized_by_remote_control(supervisor, redis_client, app, fixed, scaling)
    usage_of_the_process_tree(supervisor, fixed)
    restarted_after_an_outside_kill(supervisor, fixed)
    killed_with_its_pool_by_the_operator(supervisor, scaling)
    restarted_by_the_operator(supervisor, fixed)
    warm_stopped_for_good(supervisor, fixed)
    assert [e.action for e in supervisor.events()] == [
        "added", "added", "restarted", "killed", "restarted by operator", "stopped"]


def listed_with_counts(supervisor: Supervisor, client: Any, app: Celery, fixed: str,
                       scaling: str) -> None:
    """Every worker sharing this Redis, with its pool and what it has done."""
    first = state_of(supervisor, fixed)
    for n in range(3):  # to the fixed worker: the other one takes bulk_messages only
        publish(SEND_MESSAGE, [999_000 + n, 1, False], MESSAGES)  # no such campaign: no-op
    info = wait_info(client, app, first.hostname, lambda i: i.processed == 3,
                     "three tasks processed")
    assert info.pid == first.pid
    assert info.status == "online"
    assert (info.pool, info.pool_size, info.autoscale) == ("prefork", 1, None)
    assert info.processed_by_task == {SEND_MESSAGE: 3}
    assert info.active == ()
    assert info.queues == ("high_priority", "messages", "bulk_messages")
    hostnames = {w.hostname for w in worker_control.list_workers(client, app)}
    assert hostnames == {first.hostname, state_of(supervisor, scaling).hostname}


def resized_by_remote_control(supervisor: Supervisor, client: Any, app: Celery, fixed: str,
                              scaling: str) -> None:
    host = state_of(supervisor, fixed).hostname
    assert worker_control.pool_grow(app, host) == "pool will grow"
    wait_info(client, app, host, lambda i: i.pool_size == 2, "a pool of 2")
    assert worker_control.pool_shrink(app, host) == "pool will shrink"
    wait_info(client, app, host, lambda i: i.pool_size == 1, "a pool of 1")
    with pytest.raises(WorkerControlError, match="refused autoscale"):
        worker_control.set_autoscale(app, host, 4, 1)

    # The autoscaling worker got the supervisor's range, and takes a new one.
    scaler = state_of(supervisor, scaling).hostname
    wait_info(client, app, scaler, lambda i: i.autoscale == (3, 1), "the range 3,1")
    assert "max=4 min=1" in worker_control.set_autoscale(app, scaler, 4, 1)
    wait_info(client, app, scaler, lambda i: i.autoscale == (4, 1), "the range 4,1")
    with pytest.raises(WorkerControlError, match="not supported with autoscale"):
        worker_control.pool_grow(app, scaler)
    with pytest.raises(WorkerControlError, match="did not answer"):
        worker_control.pool_grow(app, "relaydesk-nobody@nowhere", timeout=0.3)
    with pytest.raises(WorkerControlError, match="did not answer"):
        worker_control.shutdown(app, "relaydesk-nobody@nowhere", timeout=0.3)


def usage_of_the_process_tree(supervisor: Supervisor, fixed: str) -> None:
    usage = state_of(supervisor, fixed)  # CPU % compares with the previous snapshot
    assert usage.rss_bytes is not None
    assert usage.rss_bytes > 10_000_000
    assert usage.cpu_percent is not None
    assert usage.cpu_percent >= 0
    assert usage.processes == 2  # the worker and its one pool process
    assert usage.uptime_s is not None
    assert usage.uptime_s > 0


def restarted_after_an_outside_kill(supervisor: Supervisor, fixed: str) -> None:
    first = state_of(supervisor, fixed)
    assert first.pid is not None
    pool = tree(first.pid)
    os.kill(first.pid, signal.SIGKILL)
    assert wait_state(supervisor, fixed, "dead").exit_code == -signal.SIGKILL
    events = wait_for(supervisor.check, timeout=10, message="check() to restart the worker")
    assert [(e.worker_id, e.pid, e.exit_code, e.action) for e in events] == \
        [(fixed, first.pid, -signal.SIGKILL, "restarted")]
    assert supervisor.events()[-1] == events[0]
    second = wait_state(supervisor, fixed, "online", "busy")
    assert second.pid != first.pid
    assert second.hostname != first.hostname
    assert second.restarts == 1
    # Its orphaned pool processes notice the lost parent and exit by themselves.
    wait_for(lambda: all(gone(pid) for pid in pool), timeout=10,
             message="the orphaned pool processes to exit")


def killed_with_its_pool_by_the_operator(supervisor: Supervisor, scaling: str) -> None:
    pid = state_of(supervisor, scaling).pid
    assert pid is not None
    pool = tree(pid)
    assert pool
    assert supervisor.kill_worker(scaling) == -signal.SIGKILL
    wait_for(lambda: all(gone(child) for child in pool), timeout=5,
             message="the pool processes to be killed too")
    assert state_of(supervisor, scaling).state == "stopped"
    assert supervisor.check() == []


def restarted_by_the_operator(supervisor: Supervisor, fixed: str) -> None:
    before = state_of(supervisor, fixed)
    supervisor.restart_worker(fixed)  # warm stop, then a new process
    after = wait_state(supervisor, fixed, "online", "busy")
    assert after.pid != before.pid
    assert after.restarts == before.restarts  # an operator restart is no crash


def warm_stopped_for_good(supervisor: Supervisor, fixed: str) -> None:
    assert supervisor.stop_worker(fixed, wait_s=30) == 0
    stopped = state_of(supervisor, fixed)
    assert (stopped.state, stopped.exit_code, stopped.cpu_percent) == ("stopped", 0, None)
    assert supervisor.check() == []
    assert {s.state for s in supervisor.snapshot()} == {"stopped"}


def test_redis_status_running_then_stopped(embedded_redis: EmbeddedRedis,
                                           redis_client: Any) -> None:
    settings = load_settings()
    redis_client.set("relaydesk:test:key", "x")
    status = embedded_redis_status(settings)
    assert status["running"] is True
    assert status["embedded"] is True
    assert status["error"] is None
    assert status["port"] == embedded_redis.port()
    assert status["pid"] == embedded_redis.pid()
    assert status["keys"] == 1
    assert status["used_memory_bytes"] > 0
    assert status["used_memory_human"].endswith(("K", "M"))
    assert status["maxmemory_policy"] == "noeviction"
    assert status["version"].count(".") == 2
    assert status["uptime_s"] >= 0
    assert "****" in status["url"]

    assert embedded_redis.stop()
    down = embedded_redis_status(settings)
    assert (down["running"], down["port"], down["pid"], down["keys"]) == \
        (False, embedded_redis.port(), None, None)
    assert "not answering" in down["error"]


def test_redis_status_of_a_data_dir_that_never_ran_one(isolated_env: Path) -> None:
    status = embedded_redis_status(load_settings())
    assert (status["running"], status["port"]) == (False, None)
    assert "never been started" in status["error"]
    assert not (isolated_env / "redis" / "password").exists()
