"""The sandbox gateway stays a local tool: loopback only, requests addressed to it only,
request bodies capped before they are read, and a record of deliveries bounded in memory
with exact counts. Real HTTP throughout."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3

from engine.domain.sending import Outcome, Sms
from engine.infra import sandbox_gateway
from engine.infra.sandbox_gateway import (
    MAX_BODY_BYTES,
    GatewayHostError,
    GatewayServer,
    GatewayState,
    start_gateway,
)
from engine.providers.http_client import http_client
from engine.providers.sandbox import SandboxProvider
from tests.support import run_cli

HTTP = urllib3.PoolManager(retries=False, timeout=10.0)
PROVIDER_HTTP = http_client(timeout_s=10.0, pool_size=2)


@pytest.fixture
def server() -> Iterator[GatewayServer]:
    gateway = start_gateway()
    yield gateway
    gateway.shutdown()
    gateway.server_close()


def port(server: GatewayServer) -> int:
    return int(server.server_address[1])


def request(server: GatewayServer, method: str, path: str, *, host: str | None = None,
            body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """One request on its own connection, with the Host header exactly as given."""
    connection = http.client.HTTPConnection("127.0.0.1", port(server), timeout=10)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        if host is not None:
            connection.putheader("Host", host)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_connections_have_nagle_off() -> None:
    """http.server writes an answer's headers and its body separately: with Nagle's
    algorithm on, the body waits for the client's delayed ACK (~40 ms), and the "0 ms"
    gateway every benchmark sends to answers in 44 ms (benchmarks/gateway.py measures it)."""
    gateway = GatewayServer("127.0.0.1", 0, GatewayState())  # not serving: accepted here
    try:
        with socket.create_connection(("127.0.0.1", port(gateway)), timeout=10):
            connection, _ = gateway.get_request()
            with connection:
                assert connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        gateway.server_close()


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1:1",
                                  "192.168.1.5:{port}", "localhost.evil.example:{port}", None])
def test_requests_for_another_host_are_refused(server: GatewayServer, host: str | None) -> None:
    """DNS rebinding: a web page on evil.example resolving to 127.0.0.1 must not read or
    post messages."""
    shown = host.format(port=port(server)) if host else None
    for method, path in [("GET", "/messages"), ("GET", "/stats"), ("DELETE", "/messages")]:
        status, answer = request(server, method, path, host=shown)
        assert (status, answer["error"]) == (421, "misdirected_request")
    body = json.dumps({"to": "+254712345678", "body": "hi"}).encode()
    status, _ = request(server, "POST", "/messages", host=shown, body=body,
                        headers={"Content-Length": str(len(body))})
    assert status == 421
    assert server.state.stats()["received"] == 0


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost", "LOCALHOST", "[::1]"])
def test_loopback_names_with_its_port_are_answered(server: GatewayServer, name: str) -> None:
    status, answer = request(server, "GET", "/stats", host=f"{name}:{port(server)}")
    assert status == 200
    assert answer["received"] == 0


def test_oversized_body_is_refused_before_it_is_read(server: GatewayServer) -> None:
    with socket.create_connection(("127.0.0.1", port(server)), timeout=10) as sock:
        sock.sendall(f"POST /messages HTTP/1.1\r\nHost: 127.0.0.1:{port(server)}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {10**12}\r\n\r\n"
                     .encode())
        answer = b""
        while chunk := sock.recv(65536):  # the server answers and closes: no body sent
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert b"Connection: close" in head
    assert json.loads(body)["message"] == (f"the body is {10**12} bytes; at most "
                                           f"{MAX_BODY_BYTES} are accepted")


@pytest.mark.parametrize(("headers", "status"), [
    ({}, 411),
    ({"Transfer-Encoding": "chunked"}, 411),
    ({"Content-Length": "abc"}, 400),
    ({"Content-Length": "-5"}, 400),
    ({"Content-Length": str(MAX_BODY_BYTES + 1)}, 413),
])
def test_missing_or_invalid_length(server: GatewayServer, headers: dict[str, str],
                                   status: int) -> None:
    assert request(server, "POST", "/messages", host=f"127.0.0.1:{port(server)}",
                   headers=headers)[0] == status
    assert server.state.stats()["received"] == 0


def test_body_at_the_limit_is_read(server: GatewayServer) -> None:
    payload = {"to": "+254712345678", "body": ""}
    payload["body"] = "x" * (MAX_BODY_BYTES - len(json.dumps(payload)))
    body = json.dumps(payload).encode()
    assert len(body) == MAX_BODY_BYTES
    status, answer = request(server, "POST", "/messages", host=f"127.0.0.1:{port(server)}",
                             body=body, headers={"Content-Length": str(len(body))})
    assert (status, answer["status"]) == (200, "delivered")


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "example.org", "::"])
def test_gateway_listens_on_loopback_only(host: str) -> None:
    with pytest.raises(GatewayHostError, match="listens on this machine only"):
        start_gateway(host)


def test_cli_refuses_a_public_address() -> None:
    result = run_cli("gateway", "--host", "0.0.0.0", "--port", "0", timeout=60)
    assert result.returncode == 1
    assert "listens on this machine only" in result.stderr
    assert "Traceback" not in result.stderr


def sms(index: int, to: str = "+254712345678") -> Sms:
    return Sms(message_id=index, campaign_id=1, to=to, body=f"message {index}")


def test_record_is_bounded_and_counts_stay_exact(server: GatewayServer,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox_gateway, "MAX_RECORDED", 5)
    monkeypatch.setattr(sandbox_gateway, "MAX_TRACKED", 8)
    provider = SandboxProvider(server.url, PROVIDER_HTTP)
    for i in range(12):
        assert provider.send(sms(i, f"+2547123456{i:02d}")).outcome is Outcome.SENT
    assert provider.send(sms(11, "+254712345611")).outcome is Outcome.SENT  # deduplicated
    assert provider.send(sms(12, "+254712345611")).outcome is Outcome.SENT  # duplicate
    messages = HTTP.request("GET", server.url + "/messages").json()
    assert [m["body"] for m in messages] == [f"message {i}" for i in range(8, 13)]
    assert [m["id"] for m in messages] == [f"sbx-{server.state.run}-{i}" for i in range(9, 14)]
    stats = HTTP.request("GET", server.url + "/stats").json()
    assert stats == {"received": 14, "delivered": 13, "unique_recipients": 8,
                     "duplicates": 1, "deduplicated": 1, "failed": 0, "recorded": 5,
                     "forgotten": 8, "keys_forgotten": 10, "recipients_forgotten": 4,
                     "reports_pending": 0, "reports_posted": 0, "reports_failed": 0,
                     "reports_dropped": 0}


def test_record_is_bounded_in_bytes(server: GatewayServer,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox_gateway, "MAX_RECORDED_BYTES", 3 * 10_300)
    provider = SandboxProvider(server.url, PROVIDER_HTTP)
    for i in range(6):
        message = Sms(message_id=i, campaign_id=1, to="+254712345678", body=str(i) * 10_000)
        assert provider.send(message).outcome is Outcome.SENT
    messages = HTTP.request("GET", server.url + "/messages").json()
    assert [m["body"][0] for m in messages] == ["3", "4", "5"]
    assert server.state.memory_stats()["forgotten"] == 3
