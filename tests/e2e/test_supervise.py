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
import pytest
import redis
import urllib3

from engine.config.settings import load_settings
from engine.infra.embedded_redis import EmbeddedRedis, free_port
from engine.infra.local_gateway import LocalGateway
from engine.infra.local_receiver import LocalReceiver
from engine.infra.worker_registry import live_workers
from engine.operations.supervisor import Supervisor
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


def test_a_gateway_left_without_reports_is_run_again_reporting_on_its_port(
        isolated_env: Path) -> None:
    # A command line run before the console started the gateway (no receiver then) and
    # exited: the gateway is an orphan that posts no reports.
    subprocess.run([sys.executable, "-c", "from engine.config.settings import load_settings\n"
                    "from engine.infra.local_gateway import gateway_url\n"
                    "gateway_url(load_settings(), start=True)"], check=True, timeout=60)
    gateway = LocalGateway(isolated_env / "gateway")
    url, first_pid = gateway.url(), gateway.pid()
    assert gateway.ping()
    assert gateway.reports_url() is None
    sup = Supervisor(load_settings(), workers=0)
    try:
        sup.start()
        receiver = LocalReceiver(isolated_env / "receiver")
        assert sup.own_receiver is not None
        assert sup.own_gateway is not None
        assert not _running(first_pid or 0)
        assert (gateway.url(), gateway.pid()) == (url, sup.own_gateway.pid)  # same port
        assert gateway.reports_url() == receiver.url()
        urllib3.request("POST", f"{url}/messages", json={"to": "+254712345678", "body": "hi"})
        wait_for(lambda: http_json(f"{url}/stats")["reports_posted"] == 1, timeout=30,
                 message="the restarted gateway's report")
    finally:
        sup.stop()
    assert not gateway.ping()
    assert not LocalReceiver(isolated_env / "receiver").ping()


def test_a_receiver_port_alone_runs_the_receiver_there(
        isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("RELAYDESK_RECEIVER_PORT", str(port))
    monkeypatch.setenv("RELAYDESK_SMS_GATEWAY_URL", "http://127.0.0.1:1")  # not ours to run
    sup = Supervisor(load_settings(), workers=0)
    try:
        sup.start()
        assert sup.own_gateway is None
        assert sup.own_receiver is not None
        assert LocalReceiver(isolated_env / "receiver").url() == f"http://127.0.0.1:{port}"
        assert http_json(f"http://127.0.0.1:{port}/health") == {"ok": True}
    finally:
        sup.stop()
    assert sup.own_receiver is None
    assert not LocalReceiver(isolated_env / "receiver").ping()
    assert not LocalGateway(isolated_env / "gateway").ping()


def test_no_receiver_without_its_port_or_the_sandbox(
        isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYDESK_SMS_GATEWAY_URL", "http://127.0.0.1:1")
    sup = Supervisor(load_settings(), workers=0)
    try:
        assert not sup.runs_receiver()
        sup.start()
        assert (sup.own_receiver, sup.own_gateway) == (None, None)
        assert not (isolated_env / "receiver").exists()
    finally:
        sup.stop()
