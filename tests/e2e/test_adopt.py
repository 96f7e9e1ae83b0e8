"""A console or supervisor killed without closing (SIGKILL, the X server gone) leaves its
worker, gateway, receiver and embedded Redis running; the next one of the same data dir takes them
back with full control, and its close policy applies to them again."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis

from engine.config.settings import load_settings
from engine.infra.embedded_redis import EmbeddedRedis
from engine.infra.local_gateway import LocalGateway
from engine.infra.local_receiver import LocalReceiver
from engine.infra.process_records import read_records
from engine.infra.worker_registry import live_workers
from engine.operations.supervisor import LocalWorkerState, Supervisor
from tests.support import wait_for

STARTUP_S = 90


@dataclass
class Orphans:
    """What a killed supervisor left running."""

    worker: int
    worker_name: str
    gateway: int
    receiver: int
    redis: int

    def pids(self) -> list[int]:
        return [self.worker, self.gateway, self.receiver, self.redis]


def running(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def heartbeats(data_dir: Path) -> list[dict[str, Any]]:
    client = redis.Redis.from_url(EmbeddedRedis(data_dir / "redis").url())
    try:
        return live_workers(client)
    finally:
        client.close()


def start_supervise(workers: int = 1) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "engine", "supervise", "--workers",
                             str(workers)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def kill_supervise_with_everything_up(data_dir: Path) -> Orphans:
    """`relaydesk supervise` (the console's engine) up with one worker, then SIGKILL."""
    supervise = start_supervise()
    server, gateway = EmbeddedRedis(data_dir / "redis"), LocalGateway(data_dir / "gateway")
    receiver = LocalReceiver(data_dir / "receiver")
    try:
        wait_for(server.ping, timeout=STARTUP_S, message="the embedded Redis")
        beats = wait_for(lambda: heartbeats(data_dir), timeout=STARTUP_S,
                         message="the supervised worker")
        wait_for(gateway.ping, timeout=STARTUP_S, message="the sandbox gateway")
        assert receiver.ping(), "started before the gateway"
    finally:
        supervise.kill()  # no warm stop, no cleanup: as when its console dies
        supervise.wait()
    gateway_pid = json.loads(gateway.state_file.read_text())["pid"]
    orphans = Orphans(beats[0]["pid"], beats[0]["name"], gateway_pid, receiver.pid() or 0,
                      server.pid() or 0)
    assert all(running(pid) for pid in orphans.pids()), "they outlive their owner"
    return orphans


def stop_everything(data_dir: Path, orphans: Orphans) -> None:
    """After a failed test: leave no process behind."""
    for pid in orphans.pids():
        if running(pid):
            with contextlib.suppress(ProcessLookupError):
                if pid == orphans.worker:
                    os.killpg(pid, signal.SIGKILL)  # with its pool
                else:
                    os.kill(pid, signal.SIGKILL)


@pytest.fixture
def orphans(isolated_env: Path, fast_pipeline: None) -> Iterator[Orphans]:
    left = kill_supervise_with_everything_up(isolated_env)
    yield left
    stop_everything(isolated_env, left)


def adopted_state(sup: Supervisor) -> LocalWorkerState | None:
    states = sup.snapshot()
    return states[0] if len(states) == 1 and states[0].state == "online" else None


def test_a_new_supervisor_adopts_what_a_killed_one_left_running(
        isolated_env: Path, orphans: Orphans) -> None:
    sup = Supervisor(load_settings(), workers=1, stop_timeout=30)
    try:
        sup.start()
        # Nothing started twice: the same worker, gateway, receiver and Redis, now its own.
        assert [w.process.pid for w in sup.running if w.process] == [orphans.worker]
        assert sup.own_gateway is not None
        assert sup.own_gateway.pid == orphans.gateway
        assert sup.own_receiver is not None
        assert sup.own_receiver.pid == orphans.receiver
        assert sup.own_redis is not None
        assert sup.own_redis.pid == orphans.redis
        assert [b["pid"] for b in heartbeats(isolated_env)] == [orphans.worker]
        assert [e.action for e in sup.events()] == ["adopted"]

        state = wait_for(lambda: adopted_state(sup), timeout=30, message="online")
        assert state.id == "local-1"
        assert state.adopted
        assert state.pid == orphans.worker
        assert state.hostname == orphans.worker_name
        assert state.rss_bytes
        assert state.rss_bytes > 0
        assert state.cpu_percent is not None
        assert state.processes >= 2  # the worker and its pool

        # Supervised again: a crash is noticed and the worker restarted (as a child now).
        os.killpg(orphans.worker, signal.SIGKILL)
        wait_for(lambda: not running(orphans.worker), message="the worker to die")
        events = wait_for(sup.check, timeout=10, message="the restart")
        assert [(e.action, e.pid) for e in events] == [("restarted", orphans.worker)]
        restarted = wait_for(lambda: adopted_state(sup), timeout=STARTUP_S,
                             message="the restarted worker")
        assert restarted.pid != orphans.worker
        assert not restarted.adopted
        assert restarted.restarts == 1
        assert sup.add_worker() == "local-2"  # numbered after the adopted one
    finally:
        sup.stop()
    assert not [pid for pid in orphans.pids() if running(pid)]
    assert not EmbeddedRedis(isolated_env / "redis").ping()
    assert not LocalGateway(isolated_env / "gateway").ping()
    assert not LocalReceiver(isolated_env / "receiver").ping()


def test_an_adopted_worker_can_be_stopped_and_killed(isolated_env: Path,
                                                      orphans: Orphans) -> None:
    sup = Supervisor(load_settings(), workers=1, stop_timeout=30)
    try:
        assert sup.adopt_orphans() == ["local-1"]
        wait_for(lambda: adopted_state(sup), timeout=30, message="online")
        pool = [p.pid for p in psutil.Process(orphans.worker).children()]
        assert pool
        assert sup.stop_worker("local-1", wait_s=30) is None  # not our child: code unknown
        assert not running(orphans.worker)
        assert not [pid for pid in pool if running(pid)]
        assert sup.snapshot()[0].state == "stopped"
        assert sup.check() == []  # an operator's stop is not undone
        sup.restart_worker("local-1")
        again = wait_for(lambda: adopted_state(sup), timeout=STARTUP_S, message="restart")
        assert sup.kill_worker("local-1") == -signal.SIGKILL
        assert not running(again.pid or 0)
    finally:
        sup.stop()
    assert not [pid for pid in orphans.pids() if running(pid)]


def test_supervise_adopts_and_its_warm_stop_stops_the_adopted(isolated_env: Path,
                                                              orphans: Orphans) -> None:
    supervise = start_supervise()
    try:
        # It runs its one worker by taking the orphan over, not by starting another.
        def owners() -> set[int]:
            return {r.owner_pid for role in ("worker", "gateway", "receiver", "redis")
                    for r in read_records(isolated_env, role)}

        wait_for(lambda: owners() == {supervise.pid}, timeout=STARTUP_S,
                 message="supervise to adopt the worker, the gateway, the receiver and Redis")
        assert [b["pid"] for b in heartbeats(isolated_env)] == [orphans.worker]
    finally:
        supervise.send_signal(signal.SIGTERM)
        code = supervise.wait(90)
    assert code == 0
    assert not [pid for pid in orphans.pids() if running(pid)]
