"""Sentry reporting against a local endpoint that receives the SDK's envelopes."""

from __future__ import annotations

import gzip
import http.client
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sentry_sdk

from engine.config.settings import load_settings
from engine.infra.sandbox_gateway import GatewayServer
from engine.monitoring.telemetry import init_sentry, scrub_breadcrumb, scrub_event
from tests.conftest import Workers
from tests.support import run_cli, run_cli_json, wait_for, write_contacts

PHONE = "+254712345678"
BODY = "Dear Wanjiru, 4,500 of your pledge remains"


class SentryEndpoint:
    def __init__(self) -> None:
        self.envelopes: list[bytes] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    raw = gzip.decompress(raw)
                elif self.headers.get("Content-Encoding") == "br":
                    import brotli  # type: ignore[import-not-found]

                    raw = brotli.decompress(raw)
                if self.path == "/api/1/envelope/":
                    endpoint.envelopes.append(raw)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.dsn = f"http://publickey@127.0.0.1:{self.server.server_address[1]}/1"

    def text(self) -> str:
        return b"\n".join(self.envelopes).decode("utf-8", "replace")


@pytest.fixture
def sentry_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[SentryEndpoint]:
    endpoint = SentryEndpoint()
    monkeypatch.setenv("RELAYDESK_SENTRY_DSN", endpoint.dsn)
    yield endpoint
    sentry_sdk.init()  # no DSN: reporting off again for the other tests
    endpoint.server.shutdown()
    endpoint.server.server_close()


def fail_with_secrets(to: str, body: str) -> None:
    raise RuntimeError(f"provider rejected {to}")


def test_exceptions_are_reported_without_phones_or_bodies(
        sentry_endpoint: SentryEndpoint) -> None:
    assert init_sentry(load_settings(), "test")
    try:
        fail_with_secrets(PHONE, BODY)
    except RuntimeError:
        sentry_sdk.capture_exception()
    sentry_sdk.flush(10)
    text = sentry_endpoint.text()
    assert "provider rejected [phone]" in text
    assert "fail_with_secrets" in text  # the stack trace is there...
    assert PHONE[4:] not in text  # ...the number is not
    assert BODY not in text
    assert '"component":"test"' in text.replace(" ", "")


def test_scrub_event_drops_locals_and_payloads() -> None:
    event = {"exception": {"values": [{"stacktrace": {"frames": [{"vars": {"to": PHONE}}]}}]},
             "extra": {"payload": {"body": BODY}, "note": "call 0712 345 678 now"},
             "contexts": {"celery-job": {"args": [1, [2, 3]], "task_name": "send"}}}
    scrubbed = scrub_event(event)
    assert "vars" not in scrubbed["exception"]["values"][0]["stacktrace"]["frames"][0]
    assert scrubbed["extra"]["payload"] == "[Filtered]"
    assert scrubbed["extra"]["note"] == "call [phone] now"
    assert scrubbed["contexts"]["celery-job"]["args"] == "[Filtered]"


def test_transactions_are_scrubbed_like_errors(sentry_endpoint: SentryEndpoint,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """With tracing on, a transaction's name, its spans and the URL of an HTTP call made
    inside it (the stdlib integration records its query) carry no phone or credential."""
    monkeypatch.setenv("RELAYDESK_SENTRY_TRACES_SAMPLE_RATE", "1.0")
    assert init_sentry(load_settings(), "test")
    port = sentry_endpoint.server.server_address[1]
    with sentry_sdk.start_transaction(name=f"send to {PHONE}", op="task"):
        with sentry_sdk.start_span(op="sms", name="Call (0712) 345 678") as span:
            span.set_data("note", "+254 (712) 345-678 asked to call back")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/send?api_key=gateway-key-4242&to=%2B254712345678")
        connection.getresponse().read()
        connection.close()
    sentry_sdk.flush(10)
    text = sentry_endpoint.text()
    assert '"type":"transaction"' in text.replace(" ", "")
    assert "send to [phone]" in text
    assert '"op":"http.client"' in text.replace(" ", "")  # the call's span is there...
    for secret in ("712345678", "0712", "345 678", "345-678", "gateway-key-4242"):
        assert secret not in text  # ...without what it carried


def test_urls_in_breadcrumbs_and_messages_lose_their_credentials() -> None:
    crumb = scrub_breadcrumb({"type": "http", "data": {"url": "x"},
                              "message": "POST https://gw.example/send?api_key=k3y-4242 -> 500"})
    assert crumb["message"] == "POST https://gw.example/send?api_key=**** -> 500"
    event = scrub_event({"message": "HTTPConnectionPool: url: /send?token=t0ken-4242 failed",
                         "event_id": "1234567890abcdef1234567890abcdef",
                         "contexts": {"trace": {"trace_id": "12345678901234567890123456789012",
                                                "span_id": "1234567890123456"}}})
    assert "t0ken-4242" not in event["message"]
    assert event["event_id"] == "1234567890abcdef1234567890abcdef"  # ids are not phones
    assert event["contexts"]["trace"]["trace_id"] == "12345678901234567890123456789012"


def test_no_dsn_means_no_reporting() -> None:
    assert not init_sentry(load_settings(), "test")


def test_worker_reports_dead_letters_scrubbed(tmp_path: Path, sentry_endpoint: SentryEndpoint,
                                              gateway: GatewayServer, workers: Workers) -> None:
    path = write_contacts(tmp_path / "c.csv", [("Wanjiru", "0700000001", "5000", "500",
                                                "2027-01-01", "")])
    assert run_cli("contacts", "import", str(path)).returncode == 0
    workers.start()
    result = run_cli_json("campaign", "send", "--template", "Dear #name, #balance of your "
                                                            "pledge remains", "--wait")
    assert result["dead"] == 1
    wait_for(lambda: "dead-letter" in sentry_endpoint.text(), timeout=30,
             message="the worker's Sentry event")
    text = sentry_endpoint.text()
    assert "invalid_number" in text
    assert "700000001" not in text
    assert "Dear Wanjiru" not in text


def test_callback_tokens_never_reach_sentry(sentry_endpoint: SentryEndpoint) -> None:
    """The receiver's routes carry the callback token in their path: Sentry's own tornado
    integration (which would attach each request's URL and the caller's address) stays
    off, and a token in any text is masked."""
    assert init_sentry(load_settings(), "receiver")
    assert "tornado" not in sentry_sdk.get_client().integrations
    token = "Tk3n-secret-callback-0123456789"
    event = scrub_event({"request": {"url": f"http://127.0.0.1:8026/callbacks/http/{token}/"
                                            "delivery"},
                         "message": f"POST /callbacks/africastalking/{token}/inbound failed"})
    assert token not in str(event)
    assert "/callbacks/africastalking/****/inbound" in event["message"]
    sentry_sdk.capture_message(f"refused /callbacks/sandbox/{token}/delivery")
    sentry_sdk.flush(10)
    assert "/callbacks/sandbox/****/delivery" in sentry_endpoint.text()
    assert token not in sentry_endpoint.text()
