"""Provider calls end by their deadline, and a message whose call is still running is never
taken over by the lease sweep: real HTTP servers that answer too slowly, real Redis, real
SQLite, the real sender path."""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from engine.config.settings import MAX_PROVIDER_TIMEOUT_S, SettingsError, load_settings
from engine.domain.personalize import Recipient
from engine.domain.sending import Outcome, Sms
from engine.infra.embedded_redis import EmbeddedRedis, free_port
from engine.operations.campaigns import create_campaign_to
from engine.pipeline.runtime import build_runtime
from engine.pipeline.sender import SEND_MESSAGE, send_messages
from engine.providers.generic_http import HttpJsonProvider
from engine.providers.http_client import http_client
from engine.providers.sandbox import SandboxProvider
from engine.store.db import open_database
from engine.store.delivery_state import CLAIM_LEASE_S, stale_sending
from engine.store.models import FailedJob, MessageStatus, OutgoingMessage
from tests.support import wait_for

SMS = Sms(message_id=1, campaign_id=1, to="+254712345678", body="Hello")
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n"


class DripServer:
    """Answers every request one byte at a time, ``every_s`` apart: first the status line
    and headers (``in_headers``) or just the body. Records when each client hung up."""

    def __init__(self, every_s: float, total_bytes: int, *, in_headers: bool) -> None:
        self.every_s = every_s
        self.total_bytes = total_bytes
        self.in_headers = in_headers
        self.requests = 0
        self.hung_up = threading.Event()
        self.finished = threading.Event()  # a whole answer was dripped to some client
        self.connected = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            self.requests += 1
            self.connected.set()
            if self.in_headers:
                drip = HEAD + b"X-Slow: " + b"y" * self.total_bytes
            else:
                conn.sendall(HEAD + b"\r\n")
                drip = b" " * self.total_bytes
            try:
                for index in range(self.total_bytes):
                    conn.sendall(drip[index:index + 1])
                    if self._stop.wait(self.every_s):
                        return
                    # A hung-up client shows as a readable socket with nothing to read.
                    conn.setblocking(False)
                    try:
                        if conn.recv(1) == b"":
                            self.hung_up.set()
                            return
                    except BlockingIOError:
                        pass
                    finally:
                        conn.setblocking(True)
                self.finished.set()
            except OSError:
                self.hung_up.set()

    def close(self) -> None:
        self._stop.set()
        self.listener.close()


@pytest.fixture
def drip_servers() -> Iterator[list[DripServer]]:
    servers: list[DripServer] = []
    yield servers
    for server in servers:
        server.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("in_headers", [False, True], ids=["body", "headers"])
def test_a_slow_drip_answer_is_cut_off_at_the_deadline(
        drip_servers: list[DripServer], in_headers: bool) -> None:
    # 40 bytes, 0.25 s apart: 10 s of answer, each byte well inside a per-read timeout.
    server = DripServer(0.25, 40, in_headers=in_headers)
    drip_servers.append(server)
    provider = SandboxProvider(server.url, http_client(timeout_s=1.0, pool_size=2))
    result = provider.send(SMS)
    assert not server.finished.is_set()  # cut at the deadline, not when the drip ended
    assert result.outcome is Outcome.TRANSIENT
    assert result.error_type == "Timeout"
    assert server.requests == 1
    wait_for(server.hung_up.is_set, message="the client to hang up on the slow server")


def _send_in_child(url: str) -> str | None:
    return SandboxProvider(url, http_client(timeout_s=1.0, pool_size=2)).send(SMS).error_type


@pytest.mark.timeout(120)
@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_worker_process_cuts_slow_calls_too(drip_servers: list[DripServer]) -> None:
    # As Celery's prefork pool does: fork after this process made calls of its own.
    server = DripServer(0.25, 40, in_headers=False)
    drip_servers.append(server)
    assert _send_in_child(server.url) == "Timeout"
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.apply(_send_in_child, (server.url,)) == "Timeout"
    assert server.requests == 2


def test_a_deadline_given_by_the_caller_wins_over_the_default(
        drip_servers: list[DripServer]) -> None:
    server = DripServer(0.25, 40, in_headers=False)
    drip_servers.append(server)
    provider = SandboxProvider(server.url, http_client(timeout_s=25.0, pool_size=2))
    result = provider.send(SMS, deadline=time.monotonic() + 1.0)
    assert not server.finished.is_set()  # the caller's 1 s, not the client's 25 s
    assert result.error_type == "Timeout"


def test_a_provider_timeout_above_the_cap_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYDESK_PROVIDER_TIMEOUT_S", str(MAX_PROVIDER_TIMEOUT_S + 1))
    with pytest.raises(SettingsError) as refused:
        load_settings()
    text = str(refused.value)
    assert "RELAYDESK_PROVIDER_TIMEOUT_S" in text
    assert f"at most {MAX_PROVIDER_TIMEOUT_S:g} seconds" in text
    monkeypatch.setenv("RELAYDESK_PROVIDER_TIMEOUT_S", str(MAX_PROVIDER_TIMEOUT_S))
    assert load_settings().provider_timeout_s == MAX_PROVIDER_TIMEOUT_S


# --- the real sender path -------------------------------------------------------------------

def _one_message_campaign(settings: Any) -> tuple[int, int]:
    db = open_database(settings)
    created = create_campaign_to(
        db, settings, "Hello {name}",
        [(None, "+254712345678", Recipient("Amina", 100_00, 0, date(2030, 1, 1)))])
    with db.session() as session:
        message_id = session.scalar(select(OutgoingMessage.id)
                                    .where(OutgoingMessage.campaign_id == created.id))
    assert message_id is not None
    return created.id, message_id


def _message(settings: Any, message_id: int) -> OutgoingMessage:
    with open_database(settings).session() as session:
        message = session.get(OutgoingMessage, message_id)
        assert message is not None
        session.expunge(message)
        return message


@pytest.mark.timeout(CLAIM_LEASE_S * 4)
def test_a_call_running_to_the_longest_deadline_is_never_taken_over(
        embedded_redis: EmbeddedRedis, drip_servers: list[DripServer],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The provider drips its answer for longer than the lease: without a total deadline
    # the call outlives the claim and the sweep picks the message up to send it again.
    server = DripServer(1.0, int(CLAIM_LEASE_S * 1.5), in_headers=False)
    drip_servers.append(server)
    monkeypatch.setenv("RELAYDESK_PROVIDER_TIMEOUT_S", str(MAX_PROVIDER_TIMEOUT_S))
    monkeypatch.setenv("RELAYDESK_SMS_PROVIDER", "http")
    monkeypatch.setenv("RELAYDESK_SMS_GATEWAY_URL", server.url)
    settings = load_settings()
    campaign_id, message_id = _one_message_campaign(settings)
    rt = build_runtime(settings)
    sending = threading.Thread(target=send_messages, args=(
        rt, campaign_id, [message_id], (MessageStatus.QUEUED,), SEND_MESSAGE))
    sending.start()
    try:
        wait_for(server.connected.is_set, message="the provider call to start")
        db = open_database(settings)
        # What the lease sweep would take over, checked for the whole call.
        while sending.is_alive():
            with db.session() as session:
                taken_over = [m for _, m, _ in stale_sending(session) if m == message_id]
            assert not taken_over, "the sweep would send the message a second time"
            sending.join(0.2)
    finally:
        sending.join()
        rt.pool.shutdown()
    message = _message(settings, message_id)
    assert message.status == MessageStatus.FAILED  # a timeout: retried later, not lost
    assert message.attempts == 1
    assert message.last_error is not None
    assert message.last_error.startswith("Timeout")
    assert server.requests == 1
    wait_for(server.hung_up.is_set, message="the client to hang up on the slow provider")


SECRET = "s3cret-token-0123456789"


@pytest.mark.parametrize("case", ["header", "bad_url", "refused"])
def test_a_failed_request_leaves_no_secret_in_the_error(
        case: str, embedded_redis: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    monkeypatch.setenv("RELAYDESK_MAX_ATTEMPTS", "1")  # the first failure is final: dead letter
    monkeypatch.setenv("RELAYDESK_SMS_PROVIDER", "http")
    monkeypatch.setenv("RELAYDESK_SMS_GATEWAY_URL", "http://127.0.0.1:9/unused")
    settings = load_settings()
    campaign_id, message_id = _one_message_campaign(settings)
    rt = build_runtime(settings)
    if case == "header":
        # A header value HTTP refuses (settings now reject it; older config may hold it):
        # http.client's ValueError quotes the whole value.
        url = f"http://127.0.0.1:{free_port()}/send"
        header = f"Authorization: Bearer {SECRET}\r\nX-Extra: 1"
    elif case == "bad_url":  # urllib3's LocationParseError repeats the whole URL
        url = f"http://127.0.0.1:99999/send?api_key={SECRET}"
        header = f"Authorization: Bearer {SECRET}"
    else:  # nobody listens
        url = f"http://127.0.0.1:{free_port()}/send?api_key={SECRET}"
        header = f"Authorization: Bearer {SECRET}"
    provider = HttpJsonProvider(url, http_client(5.0, 2), auth_header=header)
    rt = dataclasses.replace(rt, provider=provider)
    caplog.set_level(logging.DEBUG)
    try:
        send_messages(rt, campaign_id, [message_id], (MessageStatus.QUEUED,), SEND_MESSAGE)
    finally:
        rt.pool.shutdown()
    with open_database(settings).session() as session:
        job = session.scalars(select(FailedJob).where(FailedJob.message_id == message_id)).one()
        stored = [job.last_error, job.first_error, job.traceback or "",
                  job.provider_response or "", job.exception_type]
    message = _message(settings, message_id)
    assert message.status == MessageStatus.DEAD
    assert job.last_error
    for text in [*stored, message.last_error or "", caplog.text]:
        assert SECRET not in text
    # Still says what to look at.
    if case == "header":
        assert "header" in job.last_error
        assert "127.0.0.1" in job.last_error
    elif case == "bad_url":
        assert "URL is not valid" in job.last_error
    else:
        assert job.last_error.startswith("ConnectionError: could not connect to")
        assert "Connection refused" in job.last_error
        assert "127.0.0.1" in job.last_error
