"""Each provider adapter against a local HTTP server answering as that API documents."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest

from engine.domain.sending import Outcome, Sms
from engine.infra.sandbox_gateway import GatewayServer, start_gateway
from engine.providers.africastalking import AfricasTalkingProvider
from engine.providers.generic_http import HttpJsonProvider
from engine.providers.http_client import http_client
from engine.providers.sandbox import SandboxProvider
from engine.providers.twilio import TwilioProvider

SMS = Sms(message_id=7, campaign_id=3, to="+254712345678", body='Dear "Ann", 1,000 left')

Answer = Callable[[str, dict[str, str], bytes], tuple[int, Any]]


class FakeApi:
    """A real HTTP server; ``answer`` decides each response, requests are recorded."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                api.requests.append((self.path, headers, body))
                status, data = api.answer(self.path, headers, body)
                raw = json.dumps(data).encode() if not isinstance(data, bytes) else data
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_api() -> Iterator[Callable[[Answer], FakeApi]]:
    servers: list[FakeApi] = []

    def make(answer: Answer) -> FakeApi:
        servers.append(FakeApi(answer))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


HTTP = http_client(timeout_s=5.0, pool_size=4)


# --- Twilio: POST /2010-04-01/Accounts/{Sid}/Messages.json, form, Basic auth ------------

def twilio_answer(status: int, data: dict[str, Any]) -> Answer:
    return lambda path, headers, body: (status, data)


@pytest.mark.parametrize(("status", "data", "outcome"), [
    (201, {"sid": "SM123", "status": "queued"}, Outcome.SENT),
    (400, {"code": 21211, "message": "The 'To' number is not valid.", "status": 400},
     Outcome.PERMANENT),
    # https://www.twilio.com/docs/api/errors/21610: "21610 Attempt to send to unsubscribed
    # recipient. You have attempted to send to a 'To' number that has replied with "STOP"
    # to one of your previous messages ... You will not be able to send to the phone number
    # specified in the 'To' parameter until the subscriber identified by the phone number
    # has responded with "START"." The REST API's error body carries code, message,
    # more_info and status (as twilio-python's TwilioRestException reads it).
    (400, {"code": 21610, "message": "Attempt to send to unsubscribed recipient",
           "more_info": "https://www.twilio.com/docs/errors/21610", "status": 400},
     Outcome.OPTED_OUT),
    (401, {"code": 20003, "message": "Authenticate", "status": 401}, Outcome.ACCOUNT),
    (429, {"code": 20429, "message": "Too Many Requests", "status": 429}, Outcome.TRANSIENT),
    (503, {"code": 20500, "message": "Internal Server Error"}, Outcome.TRANSIENT),
])
def test_twilio(fake_api: Callable[[Answer], FakeApi], status: int, data: dict[str, Any],
                outcome: Outcome) -> None:
    api = fake_api(twilio_answer(status, data))
    provider = TwilioProvider("AC42", "tok3n", "+15005550006", HTTP, api_url=api.url)
    result = provider.send(SMS)
    assert result.outcome is outcome
    path, headers, body = api.requests[0]
    assert path == "/2010-04-01/Accounts/AC42/Messages.json"
    assert headers["authorization"] == "Basic " + base64.b64encode(b"AC42:tok3n").decode()
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    form = parse_qs(body.decode())
    assert form == {"To": [SMS.to], "Body": [SMS.body], "From": ["+15005550006"]}
    if outcome is Outcome.SENT:
        assert result.provider_message_id == "SM123"
    else:
        assert result.error == data["message"]


def test_opted_out_answers_name_the_provider_code(
        fake_api: Callable[[Answer], FakeApi]) -> None:
    # What becomes the opt-out's reason: the provider's code and words, never the number.
    twilio = fake_api(twilio_answer(400, {
        "code": 21610, "message": "Attempt to send to unsubscribed recipient",
        "more_info": "https://www.twilio.com/docs/errors/21610", "status": 400}))
    result = TwilioProvider("AC42", "t", "+15005550006", HTTP, api_url=twilio.url).send(SMS)
    assert (result.error_type, result.error) == (
        "Twilio 21610", "Attempt to send to unsubscribed recipient")
    at = fake_api(at_answer(406, "UserInBlacklist"))
    result = AfricasTalkingProvider("sandbox", "k", HTTP, api_url=at.url).send(SMS)
    assert (result.outcome, result.error_type, result.error) == (
        Outcome.OPTED_OUT, "AT 406 UserInBlacklist", "UserInBlacklist")


def test_twilio_messaging_service(fake_api: Callable[[Answer], FakeApi]) -> None:
    api = fake_api(twilio_answer(201, {"sid": "SM1"}))
    TwilioProvider("AC42", "t", "MG0123", HTTP, api_url=api.url).send(SMS)
    assert parse_qs(api.requests[0][2].decode())["MessagingServiceSid"] == ["MG0123"]


# --- Africa's Talking: POST /version1/messaging, form, apiKey header --------------------

def at_answer(code: int, status: str) -> Answer:
    data = {"SMSMessageData": {"Message": "Sent to 1/1 Total Cost: KES 0.8000", "Recipients": [
        {"statusCode": code, "number": SMS.to, "status": status, "cost": "KES 0.8000",
         "messageId": "ATXid_1"}]}}
    return lambda path, headers, body: (201, data)


@pytest.mark.parametrize(("code", "status", "outcome"), [
    (101, "Success", Outcome.SENT),
    (102, "Queued", Outcome.SENT),
    (403, "InvalidPhoneNumber", Outcome.PERMANENT),
    # The SMS API reference lists each recipient's statusCode: "406: UserInBlacklist"
    # beside 101: Success, 403: InvalidPhoneNumber, 405: InsufficientBalance ... (a 201
    # answer, the code per entry of SMSMessageData.Recipients).
    (406, "UserInBlacklist", Outcome.OPTED_OUT),
    (405, "InsufficientBalance", Outcome.ACCOUNT),
    (500, "InternalServerError", Outcome.TRANSIENT),
    (502, "RejectedByGateway", Outcome.TRANSIENT),
])
def test_africastalking(fake_api: Callable[[Answer], FakeApi], code: int, status: str,
                        outcome: Outcome) -> None:
    api = fake_api(at_answer(code, status))
    provider = AfricasTalkingProvider("sandbox", "atsk_key", HTTP, sender_id="CHURCH",
                                      api_url=api.url)
    result = provider.send(SMS)
    assert result.outcome is outcome
    path, headers, body = api.requests[0]
    assert path == "/version1/messaging"
    assert headers["apikey"] == "atsk_key"
    assert headers["accept"] == "application/json"
    assert parse_qs(body.decode()) == {"username": ["sandbox"], "to": [SMS.to],
                                       "message": [SMS.body], "from": ["CHURCH"]}
    if outcome is Outcome.SENT:
        assert result.provider_message_id == "ATXid_1"


def test_africastalking_auth_failure(fake_api: Callable[[Answer], FakeApi]) -> None:
    api = fake_api(lambda p, h, b: (401, b"The supplied authentication is invalid"))
    result = AfricasTalkingProvider("u", "bad", HTTP, api_url=api.url).send(SMS)
    assert result.outcome is Outcome.ACCOUNT
    assert "authentication is invalid" in (result.error or "")


# --- generic JSON gateway ---------------------------------------------------------------

def test_http_json_template_escapes_values(fake_api: Callable[[Answer], FakeApi]) -> None:
    api = fake_api(lambda p, h, b: (200, {"id": "gw-9"}))
    provider = HttpJsonProvider(api.url + "/send", HTTP,
                                '{"msisdn": "{to}", "text": "{body}", "ref": "{id}"}',
                                "Authorization: Bearer s3cret")
    result = provider.send(SMS)
    assert (result.outcome, result.provider_message_id) == (Outcome.SENT, "gw-9")
    path, headers, body = api.requests[0]
    assert path == "/send"
    assert headers["authorization"] == "Bearer s3cret"
    assert json.loads(body) == {"msisdn": SMS.to, "text": SMS.body,
                                "ref": "relaydesk-3-7"}


@pytest.mark.parametrize(("status", "outcome"), [
    (202, Outcome.SENT), (400, Outcome.PERMANENT), (402, Outcome.ACCOUNT),
    (429, Outcome.TRANSIENT), (500, Outcome.TRANSIENT),
])
def test_http_json_status_mapping(fake_api: Callable[[Answer], FakeApi], status: int,
                                  outcome: Outcome) -> None:
    api = fake_api(lambda p, h, b: (status, {}))
    assert HttpJsonProvider(api.url, HTTP).send(SMS).outcome is outcome


def test_unreachable_provider_is_transient() -> None:
    result = HttpJsonProvider("http://127.0.0.1:9/none", HTTP).send(SMS)
    assert result.outcome is Outcome.TRANSIENT


# --- the sandbox gateway itself ---------------------------------------------------------

@pytest.fixture
def sandbox() -> Iterator[GatewayServer]:
    server = start_gateway()
    yield server
    server.shutdown()
    server.server_close()


def sms(to: str, message_id: int = 1) -> Sms:
    return Sms(message_id=message_id, campaign_id=1, to=to, body="hi")


def test_sandbox_test_numbers(sandbox: GatewayServer) -> None:
    provider = SandboxProvider(sandbox.url, HTTP)
    assert provider.send(sms("+254700000001")).outcome is Outcome.PERMANENT
    twice = [provider.send(sms("+254700000002", 2)).outcome for _ in range(3)]
    assert twice == [Outcome.TRANSIENT, Outcome.TRANSIENT, Outcome.SENT]
    assert {provider.send(sms("+254700000003", 3)).outcome for _ in range(4)} == {
        Outcome.TRANSIENT}
    assert provider.send(sms("+254700000004", 4)).outcome is Outcome.ACCOUNT
    opted_out = provider.send(sms("+254700000008", 5))
    assert (opted_out.outcome, opted_out.error_type) == (Outcome.OPTED_OUT, "opted_out")
    # 0006 and 0007 are accepted: only their delivery reports differ (undelivered, none).
    assert provider.send(sms("+254700000006", 6)).outcome is Outcome.SENT
    assert provider.send(sms("+254700000007", 7)).outcome is Outcome.SENT
    assert provider.send(sms("+254712345678", 5)).outcome is Outcome.SENT


def test_sandbox_dedupes_by_idempotency_key(sandbox: GatewayServer) -> None:
    provider = SandboxProvider(sandbox.url, HTTP)
    assert provider.send(sms("+254712345678", 1)).outcome is Outcome.SENT
    assert provider.send(sms("+254712345678", 1)).outcome is Outcome.SENT  # same key
    assert provider.send(sms("+254712345678", 2)).outcome is Outcome.SENT  # new key, same phone
    assert sandbox.state.stats() == {"received": 3, "delivered": 2, "unique_recipients": 1,
                                     "duplicates": 1, "deduplicated": 1, "failed": 0}


def test_sandbox_fail_rate_is_seeded() -> None:
    def run() -> list[Outcome]:
        server = start_gateway(fail_rate=0.5, seed=11)
        try:
            provider = SandboxProvider(server.url, HTTP)
            return [provider.send(sms("+254712345678", i)).outcome for i in range(20)]
        finally:
            server.shutdown()
            server.server_close()

    first = run()
    assert first == run()
    assert Outcome.TRANSIENT in first
    assert Outcome.SENT in first
