"""`relaydesk supervise`: owns Redis, the receiver and the gateway (posting its reports to
that receiver), restarts dead workers, stops warm."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import redis
import urllib3

from engine.infra.embedded_redis import EmbeddedRedis
from engine.infra.local_gateway import LocalGateway
from engine.infra.local_receiver import LocalReceiver
from engine.infra.worker_registry import live_workers
from tests.support import http_json, wait_for


def test_supervise_restarts_a_dead_worker_and_stops_everything(
        isolated_env: Path, fast_pipeline: None) -> None:
    survivors: list[int] = []
    supervise = subprocess.Popen([sys.executable, "-m", "engine", "supervise", "--workers", "2"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = EmbeddedRedis(isolated_env / "redis")
    try:
        wait_for(server.ping, timeout=60, message="the embedded Redis")
        client = redis.Redis.from_url(server.url())

        def workers() -> list[dict[str, Any]]:
            return live_workers(client)

        first = wait_for(lambda: len(workers()) == 2 and workers(), timeout=90,
                         message="two workers")
        gateway, receiver = LocalGateway(isolated_env / "gateway"), \
            LocalReceiver(isolated_env / "receiver")
        assert gateway.ping()
        # The receiver started first, on a free port; the gateway reports to it.
        assert receiver.ping()
        assert gateway.reports_url() == receiver.url()
        urllib3.request("POST", f"{gateway.url()}/messages",
                        json={"to": "+254712345678", "body": "hi"})
        # The receiver answers 2xx only once the report is stored (with the right token).
        wait_for(lambda: http_json(f"{gateway.url()}/stats")["reports_posted"] == 1,
                 timeout=30, message="the gateway's report to reach the receiver")
        victim = first[0]["pid"]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: len(workers()) == 2 and victim not in {w["pid"] for w in workers()},
                 timeout=90, message="the dead worker to be replaced")
        # The workers run in their own sessions (so a terminal's Ctrl-C reaches only the
        # supervisor): its warm stop must leave none of them or their pools behind.
        survivors = [p.pid for w in workers() for p in
                     [psutil.Process(w["pid"]), *psutil.Process(w["pid"]).children()]]
        client.close()
    finally:
        supervise.send_signal(signal.SIGTERM)
        code = supervise.wait(60)
    assert code == 0
    assert not [pid for pid in survivors if _running(pid)]
    assert not server.ping(), "supervise started Redis, so it must stop it"
    assert not LocalGateway(isolated_env / "gateway").ping()
    assert not LocalReceiver(isolated_env / "receiver").ping(), "nor the receiver"


def _running(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
