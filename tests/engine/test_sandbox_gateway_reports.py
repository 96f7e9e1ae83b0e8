"""The sandbox gateway plays the network's part: delivery reports after a delay (0006
undelivered, 0007 never), replies forwarded with POST /inbound, ids that never repeat, a
bounded report queue, retries while the receiver is starting, and TCP_NODELAY on every
connection. Real HTTP throughout; the receiver is a small recording HTTP server standing in
for ``relaydesk receiver`` (its sandbox routes take JSON, 2xx once stored)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import urllib3

from engine.config.callback_token import callback_token
from engine.config.settings import load_settings
from engine.infra import sandbox_gateway
from engine.infra.embedded_redis import free_port
from engine.infra.sandbox_gateway import GatewayServer, start_gateway
from tests.support import run_cli, wait_for

HTTP = urllib3.PoolManager(retries=False, timeout=10.0)
TOKEN = "t0ken-for-tests"
DELIVERY = f"/callbacks/sandbox/{TOKEN}/delivery"
INBOUND = f"/callbacks/sandbox/{TOKEN}/inbound"


class Recorder(ThreadingHTTPServer):
    """Records every POST (path, JSON body); answers ``statuses`` in turn, then 200."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RecorderHandler)
        self.posts: list[tuple[str, Any]] = []
        self.statuses: list[int] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def received(self, path: str) -> list[Any]:
        with self.lock:
            return [body for p, body in self.posts if p == path]


class _RecorderHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Recorder

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.posts.append((self.path, body))
            status = self.server.statuses.pop(0) if self.server.statuses else 200
        answer = b'{"ok": true}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


@pytest.fixture
def receiver() -> Iterator[Recorder]:
    server = Recorder()
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def gateways() -> Iterator[list[GatewayServer]]:
    """Gateways a test starts, shut down after it."""
    started: list[GatewayServer] = []
    yield started
    for server in started:
        server.shutdown()
        server.server_close()


def reporting(gateways: list[GatewayServer], receiver_url: str,
              delay_ms: float = 5) -> GatewayServer:
    server = start_gateway(reports_url=receiver_url, callback_token=TOKEN,
                           report_delay_ms=delay_ms)
    gateways.append(server)
    return server


def send(server: GatewayServer, to: str, key: str = "") -> dict[str, Any]:
    response = HTTP.request("POST", server.url + "/messages",
                            json={"to": to, "body": "hi", "campaign": "1",
                                  "idempotency_key": key or f"key-{to}"})
    assert response.status == 200, response.data
    return dict(response.json())


def stats(server: GatewayServer) -> dict[str, int]:
    return dict(HTTP.request("GET", server.url + "/stats").json())


def inbound(server: GatewayServer, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = HTTP.request("POST", server.url + "/inbound", json=payload)
    return response.status, dict(response.json())


def test_reports_delivered_undelivered_and_never(gateways: list[GatewayServer],
                                                 receiver: Recorder) -> None:
    gateway = reporting(gateways, receiver.url)
    silent = send(gateway, "+254700000007")["id"]  # first: it had every chance to report
    delivered = send(gateway, "+254712345678")["id"]
    undelivered = send(gateway, "+254700000006")["id"]
    reports = wait_for(lambda: len(receiver.received(DELIVERY)) == 2
                       and receiver.received(DELIVERY), message="two reports")
    assert sorted(reports, key=lambda r: r["status"]) == [
        {"id": delivered, "status": "delivered"},
        {"id": undelivered, "status": "undelivered", "reason": "absent subscriber"}]
    # 0007 was accepted and never queued: nothing is pending, only two were posted.
    assert silent not in {r["id"] for r in reports}
    # The gateway counts a report once the receiver has answered, just after it recorded it.
    wait_for(lambda: {k: v for k, v in stats(gateway).items() if k.startswith("reports_")} == {
        "reports_pending": 0, "reports_posted": 2, "reports_failed": 0, "reports_dropped": 0},
        message="both reports counted")
    assert [path for path, _ in receiver.posts] == [DELIVERY, DELIVERY]


def test_a_repeated_send_keeps_its_first_id_and_report(gateways: list[GatewayServer],
                                                       receiver: Recorder) -> None:
    gateway = reporting(gateways, receiver.url)
    first = send(gateway, "+254712345678", key="1-1-1")
    again = send(gateway, "+254712345678", key="1-1-1")
    assert (again["id"], again["status"]) == (first["id"], "duplicate")
    wait_for(lambda: stats(gateway)["reports_posted"] == 1, message="the report")
    assert receiver.received(DELIVERY) == [{"id": first["id"], "status": "delivered"}]
    assert stats(gateway)["reports_pending"] == 0  # the repeat queued no second report


def test_ids_never_repeat_across_gateways(gateways: list[GatewayServer]) -> None:
    # Reports are matched by id: a restarted gateway must not give out ids again.
    one, two = start_gateway(), start_gateway()
    gateways += [one, two]
    ids = [send(server, "+254712345678", key=f"1-1-{i}")["id"]
           for i, server in enumerate((one, two, one))]
    assert len(set(ids)) == 3
    assert all(i.startswith("sbx-") for i in ids)
    HTTP.request("DELETE", one.url + "/messages")  # a reset is a new run too
    assert send(one, "+254712345678", key="1-1-0")["id"] not in ids


def test_inbound_is_forwarded_to_the_receiver(gateways: list[GatewayServer],
                                              receiver: Recorder) -> None:
    gateway = reporting(gateways, receiver.url)
    status, answer = inbound(gateway, {"from": "+254712345678", "text": "STOP"})
    assert (status, answer["status"]) == (202, "forwarded")
    assert receiver.received(INBOUND) == [{"from": "+254712345678", "text": "STOP",
                                           "id": answer["id"]}]
    _, second = inbound(gateway, {"from": "+254712345678", "text": "START", "to": "RELAY"})
    assert second["id"] != answer["id"]
    assert receiver.received(INBOUND)[1] == {"from": "+254712345678", "text": "START",
                                             "id": second["id"], "to": "RELAY"}


def test_inbound_says_when_it_cannot_be_forwarded(gateways: list[GatewayServer],
                                                  receiver: Recorder) -> None:
    gateway = reporting(gateways, receiver.url)
    assert inbound(gateway, {"text": "STOP"})[0] == 400
    assert inbound(gateway, {"from": "+254712345678"})[0] == 400
    receiver.statuses = [404]  # e.g. a wrong token
    status, answer = inbound(gateway, {"from": "+254712345678", "text": "STOP"})
    assert (status, answer["error"]) == (502, "receiver_failed")
    assert "answered HTTP 404" in answer["message"]
    assert TOKEN not in answer["message"]

    closed = reporting(gateways, f"http://127.0.0.1:{free_port()}")  # nothing listens
    status, answer = inbound(closed, {"from": "+254712345678", "text": "STOP"})
    assert (status, answer["error"]) == (502, "receiver_failed")
    assert "did not answer" in answer["message"]

    plain = start_gateway()
    gateways.append(plain)
    assert inbound(plain, {"from": "+254712345678", "text": "STOP"})[0] == 409


def test_a_full_report_queue_drops_and_counts(gateways: list[GatewayServer],
                                              receiver: Recorder,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox_gateway, "MAX_PENDING_REPORTS", 3)
    gateway = reporting(gateways, receiver.url, delay_ms=600_000)  # none is due in the test
    for i in range(7):
        send(gateway, f"+2547123456{i:02d}")
    # Three wait (in the queue or held by a thread until due); the other four are dropped.
    assert {k: v for k, v in stats(gateway).items() if k.startswith("reports_")} == {
        "reports_pending": 3, "reports_posted": 0, "reports_failed": 0, "reports_dropped": 4}
    assert gateway.state.stats()["delivered"] == 7  # sending never waits for reports


def test_failed_posts_are_retried_then_counted(gateways: list[GatewayServer],
                                               receiver: Recorder,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox_gateway, "REPORT_BACKOFF_S", 0.01)
    receiver.statuses = [503, 503]  # starting up: the third attempt is taken
    gateway = reporting(gateways, receiver.url)
    message = send(gateway, "+254712345678")["id"]
    wait_for(lambda: stats(gateway)["reports_posted"] == 1, message="the report")
    assert receiver.received(DELIVERY) == [{"id": message, "status": "delivered"}] * 3
    assert stats(gateway)["reports_failed"] == 0

    receiver.statuses = [404]  # refused: trying again would change nothing
    send(gateway, "+254712345679")
    wait_for(lambda: stats(gateway)["reports_failed"] == 1, message="the refusal")
    assert len(receiver.received(DELIVERY)) == 4

    receiver.statuses = [500] * sandbox_gateway.REPORT_ATTEMPTS  # down throughout
    send(gateway, "+254712345670")
    wait_for(lambda: stats(gateway)["reports_failed"] == 2, message="giving up")
    assert len(receiver.received(DELIVERY)) == 4 + sandbox_gateway.REPORT_ATTEMPTS
    assert stats(gateway)["reports_posted"] == 1


def test_accepted_connections_send_without_delay() -> None:
    """Nagle's algorithm would hold each answer's body behind its headers for ~40 ms."""
    server = GatewayServer("127.0.0.1", 0, sandbox_gateway.GatewayState())
    try:
        with socket.create_connection(("127.0.0.1", server.server_address[1])):
            connection, _ = server.get_request()  # what the server thread would accept
            with connection:
                assert connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        server.server_close()


def test_cli_posts_reports_with_the_data_dirs_token(receiver: Recorder) -> None:
    token = callback_token(load_settings())  # what the receiver of this data dir expects
    port = free_port()
    gateway = subprocess.Popen([sys.executable, "-m", "engine", "gateway", "--port", str(port),
                                "--reports-url", receiver.url, "--report-delay-ms", "0"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(url), message="the gateway")
        answer = HTTP.request("POST", url + "/messages", json={"to": "+254700000006",
                                                               "body": "hi"}).json()
        path = f"/callbacks/sandbox/{token}/delivery"
        reports = wait_for(lambda: receiver.received(path), message="the report")
        assert reports == [{"id": answer["id"], "status": "undelivered",
                            "reason": "absent subscriber"}]
    finally:
        gateway.terminate()
        _, err = gateway.communicate(timeout=30)
    assert token.encode() not in err


def _answers(url: str) -> bool:
    try:
        return HTTP.request("GET", url + "/stats").status == 200
    except urllib3.exceptions.HTTPError:
        return False


@pytest.mark.parametrize("url", ["127.0.0.1:8026", "ftp://127.0.0.1:8026",
                                 "http://127.0.0.1:8026/callbacks"])
def test_cli_refuses_a_reports_url_that_is_not_a_base_url(url: str, tmp_path: Path) -> None:
    result = run_cli("gateway", "--port", "0", "--reports-url", url, timeout=60)
    assert result.returncode == 1
    assert "--reports-url must be the receiver's base URL" in result.stderr
    assert "Traceback" not in result.stderr
