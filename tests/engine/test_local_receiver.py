"""The receiver a data dir runs for itself (engine.infra.local_receiver), and the local
gateway started with its reports pointed at it: real ``relaydesk receiver`` and ``relaydesk
gateway`` processes, the embedded Redis, and a report from the gateway landing in the
report inbox."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3

from engine.config.settings import load_settings
from engine.infra import report_inbox
from engine.infra.embedded_redis import EmbeddedRedis, free_port
from engine.infra.local_gateway import LocalGateway
from engine.infra.local_receiver import LocalReceiver, ReceiverUnavailable, receiver_url
from engine.infra.process_records import read_records
from engine.pipeline.receiver import start_receiver
from tests.support import wait_for

HTTP = urllib3.PoolManager(retries=False, timeout=10.0)


@pytest.fixture
def started(embedded_redis: EmbeddedRedis) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts (the receiver needs the embedded Redis), stopped after it."""
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start(processes: list[subprocess.Popen[bytes]],
          service: LocalReceiver | LocalGateway) -> tuple[subprocess.Popen[bytes] | None, str]:
    process, url = service.start(load_settings())
    if process is not None:
        processes.append(process)
    return process, url


def test_one_receiver_per_data_dir_and_the_gateway_reports_to_it(
        isolated_env: Path, started: list[subprocess.Popen[bytes]], redis_client: Any) -> None:
    receiver = LocalReceiver.for_settings(load_settings())
    assert receiver_url(load_settings()) is None
    process, url = start(started, receiver)
    assert process is not None
    assert json.loads(receiver.state_file.read_text()) == {"url": url, "pid": process.pid}
    assert [r.pid for r in read_records(isolated_env, "receiver")] == [process.pid]
    assert HTTP.request("GET", url + "/health").status == 200
    assert start(started, receiver) == (None, url)  # found again, not started twice
    assert receiver_url(load_settings()) == url

    # The gateway started now posts to it: its report lands in the report inbox.
    gateway = LocalGateway.for_settings(load_settings())
    gateway_process, gateway_url = start(started, gateway)
    assert gateway_process is not None
    assert gateway.reports_url() == url
    sent = HTTP.request("POST", gateway_url + "/messages",
                        json={"to": "+254700000006", "body": "hi"}).json()
    wait_for(lambda: report_inbox.pending(redis_client) == 1, message="the report")
    _, reports = report_inbox.peek(redis_client, 10)
    assert [(r.provider, r.message_id, r.status) for r in reports] == [
        ("sandbox", sent["id"], "undelivered")]
    assert reports[0].error == "absent subscriber"


def test_a_receiver_port_is_used(isolated_env: Path, started: list[subprocess.Popen[bytes]],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("RELAYDESK_RECEIVER_PORT", str(port))
    _, url = start(started, LocalReceiver.for_settings(load_settings()))
    assert url == f"http://127.0.0.1:{port}"
    assert HTTP.request("GET", url + "/health").status == 200


def test_a_receiver_the_operator_runs_on_the_port_is_used_not_doubled(
        isolated_env: Path, started: list[subprocess.Popen[bytes]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("RELAYDESK_RECEIVER_PORT", str(port))
    running = start_receiver(load_settings(), port=port)  # as 'relaydesk receiver' would
    try:
        receiver = LocalReceiver.for_settings(load_settings())
        assert start(started, receiver) == (None, f"http://127.0.0.1:{port}")
        assert receiver_url(load_settings()) == f"http://127.0.0.1:{port}"
        assert not receiver.state_file.exists()  # not ours: nothing recorded
    finally:
        running.stop()


def test_a_receiver_that_cannot_start_says_why(isolated_env: Path,
                                               started: list[subprocess.Popen[bytes]],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:  # something else holds the port
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        monkeypatch.setenv("RELAYDESK_RECEIVER_PORT", str(port))
        receiver = LocalReceiver.for_settings(load_settings())
        with pytest.raises(ReceiverUnavailable) as failure:
            start(started, receiver)
    assert str(failure.value) == (
        f"the report receiver did not start on port {port}; see {receiver.log_file} (if "
        "the port is taken, set RELAYDESK_RECEIVER_PORT to a free one)")
    pid = receiver.pid()
    assert pid is not None
    assert not _running(pid)


def _running(pid: int) -> bool:
    import psutil

    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
