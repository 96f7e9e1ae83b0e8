"""Twilio's delivery status without a callback: the StatusCallback a send carries, the
Message resource look-up (fetch_status) and the poller that looks up messages still
awaiting a final report, against a local stand-in of Twilio's REST API.

What the stand-in answers is what Twilio documents
(https://www.twilio.com/docs/messaging/api/message-resource):
- Create a Message: ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` answers
  201 with the new Message resource (``sid`` "SM...", ``status`` "queued", or "accepted"
  with a Messaging Service). "StatusCallback: The URL of the endpoint to which Twilio
  sends Message status callback requests."
- Fetch a Message: ``GET /2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json`` answers
  200 with the resource. ``status`` is one of queued, sending, sent, failed, delivered,
  undelivered, receiving, received, accepted, scheduled, read, partially_delivered,
  canceled; ``error_code``: "The error code returned if the Message status is failed or
  undelivered. If no error was encountered, the value is null"; ``error_message``: "The
  description of the error_code".
- An unknown SID answers 404 with Twilio's error body (``code`` 20404, ``message``,
  ``more_info``, ``status``); too many requests 429 (code 20429).
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest
from sqlalchemy import select

from engine.config.settings import Settings, load_settings
from engine.domain.delivery import DeliveryStatus, Report, ReportKind
from engine.domain.personalize import Recipient
from engine.domain.sending import Outcome, Sms
from engine.infra import redis_keys, report_inbox
from engine.infra.embedded_redis import EmbeddedRedis, free_port
from engine.operations.campaigns import create_campaign_to
from engine.pipeline import report_poller
from engine.pipeline.report_applier import apply_pending
from engine.pipeline.report_poller import batch_size, limiter_name, poll_due_reports
from engine.pipeline.runtime import Runtime, build_runtime
from engine.pipeline.sender import SEND_MESSAGE, send_messages
from engine.providers import callbacks
from engine.providers.factory import make_provider
from engine.providers.http_client import ProviderHttp
from engine.providers.twilio import TwilioProvider
from engine.store.db import Database
from engine.store.models import Campaign, MessageStatus, OutgoingMessage
from engine.store.report_polls import MAX_POLL_WAIT_S, due_polls, next_poll_at, poll_again
from tests.support import wait_for

ACCOUNT = "AC0123456789abcdef0123456789abcdef"
TOKEN = "tw-auth-token-0123456789"
SMS = Sms(message_id=1, campaign_id=1, to="+254712345678", body="Dear Ann")
MESSAGE_PATH = re.compile(rf"^/2010-04-01/Accounts/{ACCOUNT}/Messages/([A-Za-z0-9]+)\.json$")


class TwilioStandIn:
    """A real HTTP server answering Messages.json as Twilio documents (module docstring).

    ``statuses[sid]`` is what successive fetches of that message answer: a status word
    (200 with the resource), or (HTTP status, body) for an error; the last one repeats.
    An unknown SID is 404. ``hold_sends`` keeps every create request waiting until set.
    """

    def __init__(self) -> None:
        self.statuses: dict[str, list[str | tuple[int, dict[str, Any]]]] = {}
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.hold_sends: threading.Event | None = None
        self._sids = iter(range(1, 1_000_000))
        self._lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _record(self) -> bytes:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with stand_in._lock:
                    stand_in.requests.append((self.command, self.path,
                                              {k.lower(): v for k, v in self.headers.items()},
                                              body))
                return body

            def _answer(self, status: int, data: dict[str, Any]) -> None:
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_POST(self) -> None:
                self._record()
                if stand_in.hold_sends is not None:
                    stand_in.hold_sends.wait(30)
                sid = f"SM{next(stand_in._sids):032x}"
                self._answer(201, stand_in.resource(sid, "queued"))

            def do_GET(self) -> None:
                self._record()
                match = MESSAGE_PATH.match(self.path)
                answers = stand_in.statuses.get(match.group(1)) if match else None
                if not answers:
                    self._answer(404, {
                        "code": 20404, "message": f"The requested resource {self.path} was "
                        "not found", "more_info": "https://www.twilio.com/docs/errors/20404",
                        "status": 404})
                    return
                answer = answers.pop(0) if len(answers) > 1 else answers[0]
                if isinstance(answer, tuple):
                    self._answer(*answer)
                else:
                    assert match is not None
                    self._answer(200, stand_in.resource(match.group(1), answer))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    @staticmethod
    def resource(sid: str, status: str, error_code: int | None = None,
                 error_message: str | None = None) -> dict[str, Any]:
        return {"sid": sid, "account_sid": ACCOUNT, "status": status, "to": SMS.to,
                "from": "+15005550006", "body": SMS.body, "direction": "outbound-api",
                "num_segments": "1", "error_code": error_code, "error_message": error_message,
                "uri": f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{sid}.json"}

    def fetches(self) -> list[str]:
        """The SIDs looked up, in order."""
        return [m.group(1) for method, path, _, _ in self.requests if method == "GET"
                for m in [MESSAGE_PATH.match(path)] if m]

    def close(self) -> None:
        if self.hold_sends is not None:
            self.hold_sends.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def twilio() -> Iterator[TwilioStandIn]:
    server = TwilioStandIn()
    yield server
    server.close()


def use_twilio(monkeypatch: pytest.MonkeyPatch, url: str, **extra: str) -> None:
    monkeypatch.setenv("RELAYDESK_SMS_PROVIDER", "twilio")
    monkeypatch.setenv("RELAYDESK_TWILIO_ACCOUNT_SID", ACCOUNT)
    monkeypatch.setenv("RELAYDESK_TWILIO_AUTH_TOKEN", TOKEN)
    monkeypatch.setenv("RELAYDESK_TWILIO_FROM", "+15005550006")
    monkeypatch.setenv("RELAYDESK_TWILIO_API_URL", url)
    for name, value in extra.items():
        monkeypatch.setenv(name, value)


def basic_auth() -> str:
    return "Basic " + base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()


# --- the send: StatusCallback only with a public URL -------------------------------------

@pytest.mark.parametrize(("public_url", "callback"), [
    (None, None),
    ("https://relay.example.org", "https://relay.example.org/callbacks/twilio/status"),
    ("https://relay.example.org/desk/", "https://relay.example.org/desk/callbacks/twilio/status"),
])
def test_a_send_carries_the_status_callback_only_with_a_public_url(
        twilio: TwilioStandIn, monkeypatch: pytest.MonkeyPatch, public_url: str | None,
        callback: str | None) -> None:
    use_twilio(monkeypatch, twilio.url)
    if public_url:
        monkeypatch.setenv("RELAYDESK_PUBLIC_URL", public_url)
    provider = make_provider(load_settings())
    assert provider.can_fetch_status

    result = provider.send(SMS)

    assert result.outcome is Outcome.SENT
    [(method, path, headers, body)] = twilio.requests
    assert (method, path) == ("POST", f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json")
    assert headers["authorization"] == basic_auth()
    form = parse_qs(body.decode())
    assert form.get("StatusCallback") == ([callback] if callback else None)
    assert form["To"] == [SMS.to]


def test_look_ups_have_their_own_connections(twilio: TwilioStandIn,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    use_twilio(monkeypatch, twilio.url, RELAYDESK_SEND_CONCURRENCY="2")
    provider = make_provider(load_settings())
    assert isinstance(provider, TwilioProvider)
    # Even with a send pool of the same size: http_client keys its clients by purpose too.
    assert provider.status_http is not provider.http
    again = make_provider(load_settings())
    assert isinstance(again, TwilioProvider)
    assert again.status_http is provider.status_http  # one per process


# --- fetch_status: the Message resource, as a delivery report -----------------------------

HTTP = ProviderHttp(timeout_s=5.0, pool_size=2)


def stand_in_provider(twilio: TwilioStandIn) -> TwilioProvider:
    return TwilioProvider(ACCOUNT, TOKEN, "+15005550006", HTTP, api_url=twilio.url)


@pytest.mark.parametrize(("answer", "status", "error"), [
    ("accepted", None, ""), ("scheduled", None, ""), ("queued", None, ""),
    ("sending", None, ""), ("sent", None, ""), ("receiving", None, ""),
    ("received", None, ""), ("partially_delivered", None, ""),
    ("delivered", DeliveryStatus.DELIVERED, ""),
    ("read", DeliveryStatus.DELIVERED, ""),
    ((30003, "Unreachable destination handset"), DeliveryStatus.UNDELIVERED,
     "Twilio 30003: Unreachable destination handset"),
    ((30008, "Unknown error"), DeliveryStatus.UNDELIVERED, "Twilio 30008: Unknown error"),
    ((30004, None), DeliveryStatus.UNDELIVERED, "Twilio 30004: Message blocked"),
    ((63999, None), DeliveryStatus.UNDELIVERED, "Twilio 63999"),
    ((63998, "Something new"), DeliveryStatus.UNDELIVERED, "Twilio 63998"),  # as a callback
    ("canceled", DeliveryStatus.UNDELIVERED, "Twilio: canceled"),
])
def test_fetch_status_maps_each_twilio_status(twilio: TwilioStandIn, answer: Any,
                                             status: DeliveryStatus | None, error: str) -> None:
    sid = "SM" + "ab" * 16
    if isinstance(answer, tuple):  # undelivered / failed with Twilio's error code
        code, message = answer
        word = "failed" if code == 30008 else "undelivered"
        twilio.statuses[sid] = [(200, twilio.resource(sid, word, code, message))]
    else:
        word = answer
        twilio.statuses[sid] = [word]

    report = stand_in_provider(twilio).fetch_status(sid)

    assert report is not None
    assert (report.kind, report.provider, report.message_id) == (
        ReportKind.STATUS, "twilio", sid)
    assert (report.status, report.provider_status, report.error) == (status, word, error)
    [(method, path, headers, _)] = twilio.requests
    assert (method, path) == ("GET", f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{sid}.json")
    assert headers["authorization"] == basic_auth()


@pytest.mark.parametrize("word", ["delivered", "read", "undelivered", "failed", "canceled",
                                  "sent", "queued", "accepted"])
@pytest.mark.parametrize("code", [None, 30003, 30007, 63999])
def test_a_look_up_and_a_status_callback_read_twilio_alike(twilio: TwilioStandIn,
                                                          word: str, code: int | None) -> None:
    # The same message as Twilio's look-up (error_code, error_message) and its status
    # callback (MessageStatus, ErrorCode: no message) give it: the same status and text.
    sid = "SM" + "cd" * 16
    final_bad = word in ("undelivered", "failed")
    error_code = code if final_bad else None
    twilio.statuses[sid] = [(200, twilio.resource(
        sid, word, error_code, "Something new" if error_code else None))]
    looked_up = stand_in_provider(twilio).fetch_status(sid)
    form = [("MessageSid", sid), ("MessageStatus", word)]
    if error_code:
        form.append(("ErrorCode", str(error_code)))
    called_back = callbacks.twilio_status(form, 0.0, "KE")

    assert looked_up is not None
    assert (looked_up.status, looked_up.error) == (called_back.status, called_back.error)


@pytest.mark.parametrize("answer", [
    (429, {"code": 20429, "message": "Too Many Requests", "status": 429}),
    (503, {"code": 20500, "message": "Internal Server Error", "status": 503}),
    (401, {"code": 20003, "message": "Authenticate", "status": 401}),
    (200, {"sid": "SMx"}),  # no status in it: nothing to learn
])
def test_fetch_status_learns_nothing_from_errors(twilio: TwilioStandIn,
                                                 answer: tuple[int, dict[str, Any]]) -> None:
    sid = "SM" + "cd" * 16
    twilio.statuses[sid] = [answer]
    assert stand_in_provider(twilio).fetch_status(sid) is None
    assert twilio.fetches() == [sid]


def test_an_unknown_message_is_not_a_final_report(twilio: TwilioStandIn) -> None:
    # 404: Twilio does not know the SID. That says nothing about the phone: no report, the
    # message expires in its time.
    assert stand_in_provider(twilio).fetch_status("SM" + "00" * 16) is None
    assert len(twilio.fetches()) == 1


def test_no_answer_is_no_report(caplog: pytest.LogCaptureFixture) -> None:
    provider = TwilioProvider(ACCOUNT, TOKEN, "+1", HTTP,
                              api_url=f"http://127.0.0.1:{free_port()}")
    assert provider.fetch_status("SM1") is None
    assert TOKEN not in caplog.text


# --- the database side: what is due, and the doubling waits --------------------------

T0 = datetime(2030, 3, 1, 12, 0, tzinfo=UTC)
POLL_S = 120
EXPIRY_S = 48 * 3600


def new_campaign(db: Database) -> int:
    with db.session() as session:
        campaign = Campaign(name="Pledges", template="Dear {name}", route="individual",
                            queue="messages", status="sending")
        session.add(campaign)
        session.flush()
        return campaign.id


def sent_message(db: Database, campaign_id: int, sid: str, *, sent_at: datetime = T0,
                 provider: str = "twilio",
                 delivery: DeliveryStatus = DeliveryStatus.AWAITING_REPORT,
                 poll_at: datetime | None = T0 + timedelta(seconds=POLL_S)) -> int:
    """A message as the sender leaves it after Twilio took it."""
    with db.session() as session:
        message = OutgoingMessage(
            campaign_id=campaign_id, contact_id=None, phone=SMS.to, body=SMS.body,
            encoding="GSM-7", segments=1, status="sent", attempts=1,
            provider_message_id=sid, sent_at=sent_at, provider=provider,
            delivery=delivery, report_poll_at=poll_at, report_polls=0)
        session.add(message)
        session.flush()
        return message.id


def poll_state(db: Database, message_id: int) -> tuple[datetime | None, int]:
    with db.session() as session:
        row = session.execute(select(OutgoingMessage.report_poll_at,
                                     OutgoingMessage.report_polls)
                              .where(OutgoingMessage.id == message_id)).one()
        return row[0], row[1]


def test_due_polls_picks_only_twilio_messages_awaiting_a_report(db: Database) -> None:
    campaign = new_campaign(db)
    due = sent_message(db, campaign, "SMdue")
    later = sent_message(db, campaign, "SMlater", poll_at=T0 + timedelta(seconds=POLL_S + 1))
    sent_message(db, campaign, "SMat", provider="africastalking")
    sent_message(db, campaign, "SMdone", delivery=DeliveryStatus.DELIVERED, poll_at=None)
    sent_message(db, campaign, "SMexpired", delivery=DeliveryStatus.EXPIRED)
    # A final report cleared its look-up (the applier): not polled.
    sent_message(db, campaign, "SMcleared", poll_at=None)
    now = T0 + timedelta(seconds=POLL_S)

    with db.session() as session:
        assert due_polls(session, now, 10) == [(due, "SMdue")]
        assert due_polls(session, now + timedelta(seconds=1), 10) == [
            (due, "SMdue"), (later, "SMlater")]
        assert due_polls(session, now + timedelta(seconds=1), 1) == [(due, "SMdue")]


def test_next_poll_at_doubles_up_to_the_cap_and_stops_at_expiry() -> None:
    waits = [(next_poll_at(T0, polls, T0, POLL_S, EXPIRY_S) or T0) - T0 for polls in range(8)]
    assert [w.total_seconds() for w in waits] == [120, 240, 480, 960, 1920, 3600, 3600, 3600]
    assert next_poll_at(T0, 10_000, T0, POLL_S, EXPIRY_S) == T0 + timedelta(
        seconds=MAX_POLL_WAIT_S)
    # Never past the message's expiry: then no more look-ups (the expiry sweep ends it).
    near_expiry = T0 + timedelta(seconds=EXPIRY_S - 100)
    assert next_poll_at(near_expiry, 0, T0, POLL_S, EXPIRY_S) is None
    assert next_poll_at(near_expiry, 0, T0, 100, EXPIRY_S) == T0 + timedelta(seconds=EXPIRY_S)


def test_poll_again_counts_and_moves_on_but_leaves_final_messages_alone(db: Database) -> None:
    campaign = new_campaign(db)
    waiting = sent_message(db, campaign, "SM1")
    final = sent_message(db, campaign, "SM2", delivery=DeliveryStatus.DELIVERED, poll_at=None)
    now = T0 + timedelta(seconds=POLL_S)

    with db.session() as session:
        moved = poll_again(session, [waiting, final], now, POLL_S, EXPIRY_S)
    with db.session() as session:
        again = poll_again(session, [waiting], now, POLL_S, EXPIRY_S)

    assert moved == [waiting]
    assert again == [waiting]
    assert poll_state(db, waiting) == (now + timedelta(seconds=2 * POLL_S), 2)
    assert poll_state(db, final) == (None, 0)


# --- the poller ------------------------------------------------------------------------

@pytest.fixture
def twilio_rt(db_settings: Settings, embedded_redis: EmbeddedRedis, twilio: TwilioStandIn,
              monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    """A worker's runtime with Twilio (the stand-in), no public URL, a send rate limit."""
    use_twilio(monkeypatch, twilio.url, RELAYDESK_RATE_LIMIT="1/s",
               RELAYDESK_REPORT_POLL_RATE="1000", RELAYDESK_SEND_CONCURRENCY="1")
    rt = build_runtime(load_settings())
    yield rt
    rt.pool.shutdown()


def inbox(rt: Runtime) -> list[Report]:
    return report_inbox.peek(rt.redis, 1000)[1]


def test_without_a_public_url_polling_finds_the_final_status(
        twilio_rt: Runtime, twilio: TwilioStandIn) -> None:
    rt = twilio_rt
    db = rt.db
    # Sent through the stand-in: no StatusCallback (no public URL), so no callback comes.
    result = rt.provider.send(SMS)
    assert "StatusCallback" not in parse_qs(twilio.requests[0][3].decode())
    sid = result.provider_message_id
    assert sid
    message = sent_message(db, new_campaign(db), sid)
    twilio.statuses[sid] = ["sent", "delivered"]
    due_at = T0 + timedelta(seconds=POLL_S)

    assert poll_due_reports(rt, now=due_at - timedelta(seconds=1)) == 0  # not due yet
    assert twilio.fetches() == []

    assert poll_due_reports(rt, now=due_at) == 1  # "sent": not final, nothing reported
    assert inbox(rt) == []
    assert poll_state(db, message) == (due_at + timedelta(seconds=POLL_S), 1)

    second = due_at + timedelta(seconds=POLL_S)
    assert poll_due_reports(rt, now=second - timedelta(seconds=1)) == 0  # backing off
    assert poll_due_reports(rt, now=second) == 1
    assert twilio.fetches() == [sid, sid]
    [report] = inbox(rt)
    assert (report.kind, report.provider, report.message_id, report.status,
            report.provider_status) == (
        ReportKind.STATUS, "twilio", sid, DeliveryStatus.DELIVERED, "delivered")
    # Until the applier takes the report, the next look-up waits twice as long.
    assert poll_state(db, message) == (second + timedelta(seconds=2 * POLL_S), 2)


def test_a_campaign_sent_without_a_public_url_ends_delivered_by_polling(
        twilio_rt: Runtime, twilio: TwilioStandIn) -> None:
    # The whole path: the sender sends through the stand-in and marks the message for a
    # look-up; no callback ever comes; the poller finds "sent", then "delivered"; the
    # applier (the same one the callbacks go through) records it, and looking stops.
    rt = twilio_rt
    created = create_campaign_to(rt.db, rt.settings, "Hello {name}", [
        (None, "+254712345678", Recipient("Amina", 100_00, 0, date(2030, 1, 1)))])
    with rt.db.session() as session:
        message_id = session.scalar(select(OutgoingMessage.id)
                                    .where(OutgoingMessage.campaign_id == created.id))
    assert message_id is not None
    send_messages(rt, created.id, [message_id], (MessageStatus.QUEUED,), SEND_MESSAGE)

    with rt.db.session() as session:
        message = session.get(OutgoingMessage, message_id)
        assert message is not None
        sid, delivery, first = (message.provider_message_id, message.delivery,
                                message.report_poll_at)
    assert sid
    assert delivery == DeliveryStatus.AWAITING_REPORT
    assert first is not None
    [(_, _, _, body)] = twilio.requests
    assert "StatusCallback" not in parse_qs(body.decode())
    twilio.statuses[sid] = ["sent", "delivered"]

    assert poll_due_reports(rt, now=first) == 1
    assert apply_pending(rt) == 0  # "sent" is not final: nothing to apply
    second = first + timedelta(seconds=rt.settings.report_poll_s)
    assert poll_due_reports(rt, now=second) == 1
    assert apply_pending(rt) == 1

    with rt.db.session() as session:
        message = session.get(OutgoingMessage, message_id)
        assert message is not None
        assert (message.delivery, message.report_poll_at, message.report_polls) == (
            DeliveryStatus.DELIVERED, None, 2)
    assert poll_due_reports(rt, now=second + timedelta(days=1)) == 0
    assert twilio.fetches() == [sid, sid]


def test_an_undelivered_status_carries_twilios_code(twilio_rt: Runtime,
                                                    twilio: TwilioStandIn) -> None:
    sid = "SM" + "ee" * 16
    twilio.statuses[sid] = [(200, twilio.resource(sid, "undelivered", 30005,
                                                  "Unknown destination handset"))]
    sent_message(twilio_rt.db, new_campaign(twilio_rt.db), sid)

    assert poll_due_reports(twilio_rt, now=T0 + timedelta(hours=1)) == 1

    [report] = inbox(twilio_rt)
    assert (report.status, report.error) == (
        DeliveryStatus.UNDELIVERED, "Twilio 30005: Unknown destination handset")


def test_a_failed_look_up_is_moved_on_all_the_same(twilio_rt: Runtime,
                                                  twilio: TwilioStandIn) -> None:
    # Twilio in trouble: the message's next look-up was written before the fetch, so the
    # poller never asks again and again for the same messages.
    sid = "SM" + "ff" * 16
    twilio.statuses[sid] = [(503, {"code": 20500, "message": "Internal Server Error"})]
    message = sent_message(twilio_rt.db, new_campaign(twilio_rt.db), sid)
    now = T0 + timedelta(seconds=POLL_S)

    assert poll_due_reports(twilio_rt, now=now) == 1
    assert poll_due_reports(twilio_rt, now=now) == 0

    assert twilio.fetches() == [sid]
    assert inbox(twilio_rt) == []
    assert poll_state(twilio_rt.db, message) == (now + timedelta(seconds=POLL_S), 1)


def test_each_due_message_is_looked_up_once_in_bounded_calls(
        twilio_rt: Runtime, twilio: TwilioStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    campaign = new_campaign(twilio_rt.db)
    sids = [f"SM{i:032x}" for i in range(12)]
    for sid in sids:
        twilio.statuses[sid] = ["delivered"]
        sent_message(twilio_rt.db, campaign, sid)
    now = T0 + timedelta(seconds=POLL_S)
    batch = batch_size(twilio_rt.settings.report_poll_rate, 0.005)
    assert batch == 5

    counts = []
    while len(twilio.fetches()) < len(sids):
        counts.append(poll_due_reports(twilio_rt, now=now, budget_s=0.005))
        assert len(counts) < 50, "the poller stopped looking messages up"

    assert all(count <= batch for count in counts)  # one call does a bounded amount
    assert sorted(twilio.fetches()) == sids  # each exactly once: moved on before its fetch
    assert sorted(r.message_id for r in inbox(twilio_rt)) == sids


def test_look_ups_keep_their_own_rate_and_never_the_send_limit(
        db_settings: Settings, embedded_redis: EmbeddedRedis, twilio: TwilioStandIn,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # 0.01 look-ups a second: one slot every 100 s. The first look-up goes at once; the
    # next slot opens long after any call's budget, so no later call looks up another
    # message, and having reserved that slot once, no call reserves another.
    use_twilio(monkeypatch, twilio.url, RELAYDESK_RATE_LIMIT="1/s",
               RELAYDESK_REPORT_POLL_RATE="0.01")
    rt = build_runtime(load_settings())
    try:
        campaign = new_campaign(rt.db)
        for i in range(3):
            sid = f"SM{i:032x}"
            twilio.statuses[sid] = ["delivered"]
            sent_message(rt.db, campaign, sid)
        now = T0 + timedelta(hours=1)

        assert poll_due_reports(rt, now=now) == 1
        slots = report_poller._poller(rt).slots
        assert slots.reserved == 1
        assert poll_due_reports(rt, now=now) == 0
        assert slots.reserved == 2  # the next slot, 100 s ahead: kept, not used
        poll_key = redis_keys.rate_limit(limiter_name("twilio"))
        next_free = rt.redis.get(poll_key)
        for _ in range(3):
            assert poll_due_reports(rt, now=now) == 0
        assert (slots.reserved, rt.redis.get(poll_key)) == (2, next_free)
        assert len(twilio.fetches()) == 1  # one request, one slot used

        # The send limit (1/s) was never touched: the first send is not delayed at all.
        assert rt.redis.exists(redis_keys.rate_limit("twilio")) == 0
        assert rt.limiter.reserve() == 0.0
    finally:
        rt.pool.shutdown()


def test_a_look_up_goes_through_while_a_send_holds_every_send_connection(
        twilio_rt: Runtime, twilio: TwilioStandIn) -> None:
    # RELAYDESK_SEND_CONCURRENCY=1: the send pool has one connection, and a send to a slow
    # Twilio holds it. A look-up on that pool would wait for it and time out.
    sid = "SM" + "12" * 16
    twilio.statuses[sid] = ["delivered"]
    sent_message(twilio_rt.db, new_campaign(twilio_rt.db), sid)
    twilio.hold_sends = threading.Event()
    sending = threading.Thread(target=twilio_rt.provider.send, args=(SMS,))
    sending.start()
    try:
        wait_for(lambda: any(m == "POST" for m, _, _, _ in twilio.requests),
                 message="the send to reach the stand-in")
        assert poll_due_reports(twilio_rt, now=T0 + timedelta(hours=1)) == 1
        assert [r.status for r in inbox(twilio_rt)] == [DeliveryStatus.DELIVERED]
        assert sending.is_alive()  # the send was still holding its connection
    finally:
        twilio.hold_sends.set()
        sending.join()


def test_providers_that_cannot_be_asked_are_not_polled(
        db_settings: Settings, embedded_redis: EmbeddedRedis,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYDESK_SMS_PROVIDER", "http")
    monkeypatch.setenv("RELAYDESK_SMS_GATEWAY_URL", f"http://127.0.0.1:{free_port()}/send")
    rt = build_runtime(load_settings())
    try:
        campaign = new_campaign(rt.db)
        message = sent_message(rt.db, campaign, "x1", provider="http")
        assert poll_due_reports(rt, now=T0 + timedelta(days=1)) == 0
        assert poll_state(rt.db, message) == (T0 + timedelta(seconds=POLL_S), 0)
    finally:
        rt.pool.shutdown()

