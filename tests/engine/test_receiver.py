"""The receiver over real HTTP, pushing into a real Redis (engine.pipeline.receiver).

What providers post is built here as their documentation describes it; Twilio's signature
is computed in the test as Twilio documents it
(https://www.twilio.com/docs/usage/security#validating-requests): "take the full URL of
the request URL you specify for your phone number or app, including the query string;
if the request is a POST, sort all of the POST parameters alphabetically (using Unix-style
case-sensitive sorting order); iterate through the sorted list of POST parameters, and
append the variable name and value (with no delimiters) to the end of the URL string;
sign the resulting string with HMAC-SHA1 using your AuthToken as the key; Base64 encode
the resulting hash value".
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlencode

import pytest
import urllib3

from engine.config.callback_token import callback_token
from engine.config.settings import load_settings
from engine.domain.delivery import DeliveryStatus, Report, ReportKind
from engine.infra import report_inbox
from engine.infra.embedded_redis import EmbeddedRedis
from engine.pipeline.receiver import MAX_BODY, RunningReceiver, start_receiver
from tests.support import wait_for

AUTH_TOKEN = "0123456789abcdef0123456789abcdef"  # a Twilio auth token's shape
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
JSON = {"Content-Type": "application/json"}
PHONE = "+254712345678"

http = urllib3.PoolManager(maxsize=16, block=True, retries=False,
                           timeout=urllib3.Timeout(connect=10, read=30))


def twilio_signature(url: str, params: dict[str, str], token: str = AUTH_TOKEN) -> str:
    """As Twilio documents it (quoted above): URL, then sorted name+value, HMAC-SHA1, base64."""
    signed = url + "".join(name + params[name] for name in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), signed.encode(), hashlib.sha1).digest()
                            ).decode()


def post(url: str, body: bytes | str, headers: dict[str, str]) -> urllib3.BaseHTTPResponse:
    data = body.encode() if isinstance(body, str) else body
    return http.request("POST", url, body=data, headers=headers)


def inbox(client: Any) -> list[Report]:
    return report_inbox.peek(client, 100_000)[1]


Starter = Callable[..., RunningReceiver]


@pytest.fixture
def start(embedded_redis: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch
          ) -> Iterator[Starter]:
    """Start a receiver on a free port with these settings (environment variables)."""
    started: list[RunningReceiver] = []

    def start_with(**env: str) -> RunningReceiver:
        monkeypatch.setenv("RELAYDESK_TWILIO_AUTH_TOKEN", AUTH_TOKEN)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        receiver = start_receiver(load_settings())
        started.append(receiver)
        return receiver

    yield start_with
    for receiver in started:
        receiver.stop()


@pytest.fixture
def receiver(start: Starter) -> RunningReceiver:
    return start()


@pytest.fixture
def token(receiver: RunningReceiver) -> str:
    return callback_token(load_settings())


# --- Twilio -------------------------------------------------------------------------------

def status_params(sid: str = "SM0123456789abcdef0123456789abcdef", status: str = "delivered",
                  **extra: str) -> dict[str, str]:
    # Twilio's status callback: "MessageSid, MessageStatus, ErrorCode ..." with the account,
    # numbers and the older SmsSid/SmsStatus.
    return {"AccountSid": "AC0123", "ApiVersion": "2010-04-01", "From": "+14155550100",
            "MessageSid": sid, "MessageStatus": status, "SmsSid": sid, "SmsStatus": status,
            "To": PHONE, **extra}


def test_a_signed_twilio_status_callback_is_stored(receiver: RunningReceiver,
                                                   redis_client: Any) -> None:
    url = receiver.url + "/callbacks/twilio/status"
    params = status_params(status="undelivered", ErrorCode="30005")
    response = post(url, urlencode(params),
                    {**FORM, "X-Twilio-Signature": twilio_signature(url, params)})
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/xml"
    assert b"<Response/>" in response.data
    [report] = inbox(redis_client)
    assert (report.kind, report.provider, report.message_id, report.status, report.error) == \
        (ReportKind.STATUS, "twilio", params["MessageSid"], DeliveryStatus.UNDELIVERED,
         "Twilio 30005: Unknown destination handset")
    assert report.received_at > 0


def test_a_signed_twilio_inbound_message_gets_empty_twiml(receiver: RunningReceiver,
                                                          redis_client: Any) -> None:
    url = receiver.url + "/callbacks/twilio/inbound"
    # An incoming message: "MessageSid, AccountSid, From, To, Body, NumMedia ..."
    params = {"MessageSid": "SMin1", "AccountSid": "AC0123", "From": "0712345678",
              "To": "+14155550100", "Body": "Stop please & thanks", "NumMedia": "0"}
    response = post(url, urlencode(params),
                    {**FORM, "X-Twilio-Signature": twilio_signature(url, params)})
    assert (response.status, response.headers["Content-Type"]) == (200, "text/xml")
    assert response.data.decode().endswith("<Response/>")
    [report] = inbox(redis_client)
    assert (report.kind, report.phone, report.to, report.text) == \
        (ReportKind.INBOUND, PHONE, "+14155550100", "Stop please & thanks")


def test_forged_twilio_callbacks_are_403_and_change_nothing(receiver: RunningReceiver,
                                                            redis_client: Any) -> None:
    url = receiver.url + "/callbacks/twilio/status"
    params = status_params()
    good = twilio_signature(url, params)
    attempts = [
        {**FORM},  # no signature
        {**FORM, "X-Twilio-Signature": ""},
        {**FORM, "X-Twilio-Signature": good[:-4] + "AAA="},  # forged
        {**FORM, "X-Twilio-Signature": twilio_signature(url, params, "another-token")},
        # Signed for another URL: the inbound route, another host.
        {**FORM, "X-Twilio-Signature": twilio_signature(
            receiver.url + "/callbacks/twilio/inbound", params)},
        {**FORM, "X-Twilio-Signature": twilio_signature(
            "https://evil.example/callbacks/twilio/status", params)},
    ]
    for headers in attempts:
        assert post(url, urlencode(params), headers).status == 403
    # Signed, then changed on the way.
    changed = urlencode({**params, "MessageStatus": "undelivered"})
    assert post(url, changed, {**FORM, "X-Twilio-Signature": good}).status == 403
    assert report_inbox.pending(redis_client) == 0
    assert post(url, urlencode(params), {**FORM, "X-Twilio-Signature": good}).status == 200
    assert report_inbox.pending(redis_client) == 1


def test_with_a_public_url_twilio_signs_that_url(start: Starter, redis_client: Any) -> None:
    # Behind a tunnel or proxy Twilio posts to the public URL; the receiver sees only the
    # path (and the query string, which Twilio signs too).
    receiver = start(RELAYDESK_PUBLIC_URL="https://relay.example.org/sms/")
    path = "/callbacks/twilio/status?tag=a%20b"
    params = status_params()
    public = "https://relay.example.org/sms" + path
    local = receiver.url + path
    assert post(local, urlencode(params),
                {**FORM, "X-Twilio-Signature": twilio_signature(local, params)}).status == 403
    assert post(local, urlencode(params),
                {**FORM, "X-Twilio-Signature": twilio_signature(public, params)}).status == 200
    # Twilio may sign the URL with its standard port written out.
    with_port = "https://relay.example.org:443/sms" + path
    assert post(local, urlencode(params),
                {**FORM, "X-Twilio-Signature": twilio_signature(with_port, params)}
                ).status == 200
    assert report_inbox.pending(redis_client) == 2


def test_without_an_auth_token_twilio_callbacks_cannot_be_verified(
        start: Starter, monkeypatch: pytest.MonkeyPatch, redis_client: Any) -> None:
    receiver = start(RELAYDESK_TWILIO_AUTH_TOKEN="")
    url = receiver.url + "/callbacks/twilio/status"
    params = status_params()
    for signature in (twilio_signature(url, params, ""), twilio_signature(url, params)):
        assert post(url, urlencode(params),
                    {**FORM, "X-Twilio-Signature": signature}).status == 403
    assert report_inbox.pending(redis_client) == 0


# --- Africa's Talking ---------------------------------------------------------------------

def test_africas_talking_callbacks_with_the_token(receiver: RunningReceiver, token: str,
                                                  redis_client: Any) -> None:
    base = f"{receiver.url}/callbacks/africastalking/{token}"
    # Delivery report: "id, status, phoneNumber, networkCode, failureReason, retryCount".
    delivery = {"id": "ATXid_abc", "status": "Failed", "phoneNumber": PHONE,
                "networkCode": "63902", "failureReason": "UserInBlacklist", "retryCount": "0"}
    # Incoming message: "from, to, text, date, id, linkId".
    incoming = {"from": PHONE, "to": "21525", "text": "STOP", "date": "2026-01-02 10:00:00",
                "id": "in-1", "linkId": "link-1"}
    # Bulk SMS opt-out: "phoneNumber, senderId".
    optout = {"phoneNumber": "+254712345679", "senderId": "PLEDGES"}
    for what, fields in (("delivery", delivery), ("inbound", incoming), ("optout", optout)):
        response = post(f"{base}/{what}", urlencode(fields), FORM)
        assert (response.status, json.loads(response.data)) == (200, {"ok": True})
    first, second, third = inbox(redis_client)
    assert (first.kind, first.message_id, first.status, first.error) == \
        (ReportKind.STATUS, "ATXid_abc", DeliveryStatus.UNDELIVERED, "UserInBlacklist")
    assert (second.kind, second.phone, second.text, second.to) == \
        (ReportKind.INBOUND, PHONE, "STOP", "21525")
    assert (third.kind, third.phone, third.to) == (ReportKind.OPTOUT, "+254712345679",
                                                   "PLEDGES")


def test_a_wrong_token_is_404_and_changes_nothing(receiver: RunningReceiver, token: str,
                                                  redis_client: Any) -> None:
    fields = urlencode({"id": "ATX1", "status": "Success"})
    for wrong in ("nope", token[:-1], token + "x", token.upper(), "%00"):
        for provider, what, body, headers in (
                ("africastalking", "delivery", fields, FORM),
                ("http", "delivery", '{"id": "1", "status": "delivered"}', JSON),
                ("sandbox", "inbound", '{"from": "+254712345678", "text": "hi"}', JSON)):
            response = post(f"{receiver.url}/callbacks/{provider}/{wrong}/{what}", body, headers)
            assert response.status == 404
            assert token not in response.data.decode()
    assert report_inbox.pending(redis_client) == 0


# --- the generic HTTP gateway and the sandbox ---------------------------------------------

@pytest.mark.parametrize("provider", ["http", "sandbox"])
def test_json_callbacks(provider: str, receiver: RunningReceiver, token: str,
                        redis_client: Any) -> None:
    base = f"{receiver.url}/callbacks/{provider}/{token}"
    assert post(f"{base}/delivery", json.dumps({"id": "m-1", "status": "delivered"}),
                JSON).status == 200
    assert post(f"{base}/delivery", json.dumps({"id": "m-2", "status": "failed",
                                                "reason": "absent subscriber"}),
                {"Content-Type": "application/json; charset=utf-8"}).status == 200
    assert post(f"{base}/inbound", json.dumps({"from": PHONE, "text": "START"}),
                JSON).status == 200
    delivered, undelivered, reply = inbox(redis_client)
    assert {r.provider for r in (delivered, undelivered, reply)} == {provider}
    assert (delivered.message_id, delivered.status) == ("m-1", DeliveryStatus.DELIVERED)
    assert (undelivered.status, undelivered.error) == (DeliveryStatus.UNDELIVERED,
                                                       "absent subscriber")
    assert (reply.kind, reply.phone, reply.text) == (ReportKind.INBOUND, PHONE, "START")


# --- what is not a callback ---------------------------------------------------------------

def test_malformed_bodies_and_wrong_types_change_nothing(receiver: RunningReceiver,
                                                         token: str, redis_client: Any) -> None:
    at = f"{receiver.url}/callbacks/africastalking/{token}/delivery"
    gateway = f"{receiver.url}/callbacks/http/{token}/delivery"
    cases = [
        (gateway, b'{"id": "1", "status": ', JSON, 400),  # cut off
        (gateway, b"[1, 2]", JSON, 400),
        (gateway, b"[" * 10_000, JSON, 400),  # nested beyond the stack: RecursionError
        (gateway, b'{"id": ' * 5_000, JSON, 400),
        (gateway, b'{"status": "delivered"}', JSON, 400),  # no id
        (gateway, b'{"id": "1", "status": "delivered"}', {}, 415),  # no Content-Type
        (gateway, b'{"id": "1", "status": "delivered"}', FORM, 415),
        (gateway, b'{"id": "1", "status": "delivered"}', {"Content-Type": "text/plain"}, 415),
        (at, b"id=ATX1&status=Success", JSON, 415),
        (at, b"id=%ff&status=Success", FORM, 400),  # not UTF-8
        (at, b"id=ATX1&garbage", FORM, 400),
        (at, b"status=Success", FORM, 400),  # no id
        (at, b"id=" + b"x" * 200 + b"&status=Success", FORM, 400),  # no id is that long
    ]
    for url, body, headers, status in cases:
        response = post(url, body, headers)
        assert response.status == status, (body, headers)
        assert json.loads(response.data)["error"]
    assert report_inbox.pending(redis_client) == 0
    # Wrong methods and paths.
    assert http.request("GET", at).status == 405
    assert http.request("POST", f"{receiver.url}/callbacks/other/{token}/delivery").status == 404
    assert http.request("POST", f"{receiver.url}/callbacks/twilio/other").status == 404
    health = http.request("GET", receiver.url + "/health")
    assert (health.status, json.loads(health.data)) == (200, {"ok": True})
    assert "Server" not in health.headers


def test_bodies_above_the_bound_are_413(receiver: RunningReceiver, token: str,
                                        redis_client: Any) -> None:
    url = f"{receiver.url}/callbacks/http/{token}/delivery"
    padded = json.dumps({"id": "1", "status": "delivered", "pad": "x" * MAX_BODY}).encode()
    response = post(url, padded, JSON)
    assert response.status == 413  # read and dropped, so the client reads the answer
    # Chunked, with no Content-Length to look at first.
    chunked = http.request("POST", url, body=iter([padded[:40_000], padded[40_000:]]),
                           headers={**JSON, "Transfer-Encoding": "chunked"}, chunked=True)
    assert chunked.status == 413
    # A small chunked body is fine.
    small = json.dumps({"id": "c1", "status": "delivered"}).encode()
    assert http.request("POST", url, body=iter([small[:5], small[5:]]), headers=JSON,
                        chunked=True).status == 200
    assert [r.message_id for r in inbox(redis_client)] == ["c1"]


def test_a_huge_body_is_refused_from_its_headers(receiver: RunningReceiver,
                                                 token: str, redis_client: Any) -> None:
    head = (f"POST /callbacks/http/{token}/delivery HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: application/json\r\nContent-Length: 500000000\r\n\r\n")
    with socket.create_connection(("127.0.0.1", receiver.port), timeout=30) as sock:
        sock.sendall(head.encode() + b"{" + b" " * 1000)  # 500 MB announced, 1 KB sent
        answer = b""
        while b"\r\n\r\n" not in answer:
            piece = sock.recv(4096)
            assert piece, answer
            answer += piece
        assert answer.startswith(b"HTTP/1.1 413 ")
        assert b"Connection: close" in answer
        while sock.recv(4096):  # and it closes the connection instead of reading on
            pass
    assert report_inbox.pending(redis_client) == 0


# --- load, Redis down, logs, shutdown -----------------------------------------------------

def test_a_flood_loses_no_acknowledged_report(receiver: RunningReceiver, token: str,
                                              redis_client: Any) -> None:
    twilio = receiver.url + "/callbacks/twilio/status"

    def send(i: int) -> tuple[int, str | None]:
        if i % 3 == 0:
            params = status_params(sid=f"SMflood{i}")
            signature = twilio_signature(twilio, params)
            if i % 30 == 0:
                signature = twilio_signature(twilio, params, "forged")
            response = post(twilio, urlencode(params), {**FORM, "X-Twilio-Signature": signature})
            return response.status, f"SMflood{i}"
        if i % 3 == 1:
            wrong = i % 31 == 0
            url = f"{receiver.url}/callbacks/africastalking/{'x' if wrong else token}/delivery"
            fields = {"id": f"at-{i}", "status": "Success", "phoneNumber": PHONE}
            return post(url, urlencode(fields), FORM).status, f"at-{i}"
        url = f"{receiver.url}/callbacks/sandbox/{token}/delivery"
        return post(url, json.dumps({"id": f"sb-{i}", "status": "sent"}), JSON).status, \
            f"sb-{i}"

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(send, range(3000)))
    acknowledged = [ref for status, ref in results if status == 200]
    refused = [status for status, _ in results if status != 200]
    assert set(refused) == {403, 404}  # the forged and the wrong-token ones, nothing else
    assert len(refused) == len([i for i in range(3000) if i % 30 == 0]) + \
        len([i for i in range(3000) if i % 3 == 1 and i % 31 == 0])
    stored = [r.message_id for r in inbox(redis_client)]
    assert len(stored) == len(acknowledged)
    assert sorted(stored) == sorted(acknowledged)
    assert len({r.receipt for r in inbox(redis_client)}) == len(stored)


def test_slow_clients_do_not_hold_up_the_others(receiver: RunningReceiver, token: str,
                                                redis_client: Any) -> None:
    # 300 connections, each stuck halfway through its headers or its body.
    body = json.dumps({"id": "slow", "status": "delivered"}).encode()
    head = (f"POST /callbacks/sandbox/{token}/delivery HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    slow = [socket.create_connection(("127.0.0.1", receiver.port), timeout=30)
            for _ in range(300)]
    try:
        for i, sock in enumerate(slow):
            sock.sendall(head[:20] if i % 2 else head + body[:5])
        wait_for(lambda: receiver.in_flight == 150, message="the slow bodies to be in flight")
        url = f"{receiver.url}/callbacks/sandbox/{token}/delivery"
        assert post(url, json.dumps({"id": "quick", "status": "delivered"}), JSON).status == 200
        assert [r.message_id for r in inbox(redis_client)] == ["quick"]
        # Each finishes when its client does.
        slow[0].sendall(body[5:])
        assert slow[0].recv(4096).startswith(b"HTTP/1.1 200 ")
    finally:
        for sock in slow:
            sock.close()
    wait_for(lambda: receiver.in_flight == 0, message="the abandoned requests to be let go")
    assert [r.message_id for r in inbox(redis_client)] == ["quick", "slow"]


def test_redis_down_is_503_so_the_provider_retries(receiver: RunningReceiver, token: str,
                                                   embedded_redis: EmbeddedRedis) -> None:
    url = f"{receiver.url}/callbacks/sandbox/{token}/delivery"
    assert post(url, '{"id": "before", "status": "delivered"}', JSON).status == 200
    assert embedded_redis.stop()
    response = post(url, '{"id": "lost?", "status": "delivered"}', JSON)
    assert response.status == 503
    assert response.headers["Retry-After"]
    process, redis_url = embedded_redis.start()
    try:
        # The provider's retry, once Redis is back, is stored.
        assert post(url, '{"id": "retried", "status": "delivered"}', JSON).status == 200
        import redis

        client = redis.Redis.from_url(redis_url)
        assert [r.message_id for r in inbox(client)] == ["before", "retried"]
        client.close()
    finally:
        embedded_redis.stop()
        if process is not None:
            process.wait(10)


def test_logs_show_nothing_from_a_callback(receiver: RunningReceiver, token: str,
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret_text = "my pledge is 5000 thanks"
    at = f"{receiver.url}/callbacks/africastalking/{token}"
    assert post(f"{at}/inbound", urlencode({"from": PHONE, "text": secret_text}),
                FORM).status == 200
    assert post(f"{at}/inbound", urlencode({"from": PHONE}), FORM).status == 400
    assert post(f"{at}/delivery", b"id=%ff", FORM).status == 400
    url = receiver.url + "/callbacks/twilio/inbound"
    params = {"MessageSid": "SMx", "From": PHONE, "Body": secret_text}
    signature = twilio_signature(url, params, "forged")
    assert post(url, urlencode(params), {**FORM, "X-Twilio-Signature": signature}).status == 403
    assert post(f"{receiver.url}/callbacks/http/{token}/inbound", b"{", JSON).status == 400
    # Everything logged in this process but the test's own HTTP client.
    logged = "\n".join(r.getMessage() for r in caplog.records
                       if not r.name.startswith("urllib3"))
    assert "/callbacks/africastalking/****/inbound" in logged  # the requests are logged...
    for secret in (token, PHONE, PHONE[4:], secret_text, signature):
        assert secret not in logged  # ...with nothing from them


def test_stopping_finishes_the_request_in_flight(start: Starter, redis_client: Any) -> None:
    receiver = start()
    token = callback_token(load_settings())
    body = json.dumps({"id": "in-flight", "status": "delivered"}).encode()
    head = (f"POST /callbacks/sandbox/{token}/delivery HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", receiver.port), timeout=30) as sock:
        sock.sendall(head + body[:10])
        wait_for(lambda: receiver.in_flight == 1, message="the request to be in flight")
        stopping = threading.Thread(target=receiver.stop)
        stopping.start()
        wait_for(lambda: not _accepts(receiver.port), message="the receiver to stop accepting")
        sock.sendall(body[10:])
        answer = sock.recv(4096)
    stopping.join(30)
    assert not stopping.is_alive()
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert [r.message_id for r in inbox(redis_client)] == ["in-flight"]


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except OSError:
        return False
    return True


def test_the_receiver_command(embedded_redis: EmbeddedRedis, redis_client: Any) -> None:
    token = callback_token(load_settings())
    with subprocess.Popen([sys.executable, "-m", "engine", "receiver", "--port", "0"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line.startswith("receiver listening on http://127.0.0.1:"), line
            assert "/callbacks/africastalking/****/{delivery,inbound,optout}" in line
            assert token not in line
            base = line.split()[3]
            response = post(f"{base}/callbacks/sandbox/{token}/inbound",
                            json.dumps({"from": PHONE, "text": "hello"}), JSON)
            assert response.status == 200
            process.send_signal(signal.SIGTERM)  # a clean stop, exit status 0
            out, err = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 0, err
    assert token not in out + err
    assert [r.text for r in inbox(redis_client)] == ["hello"]
