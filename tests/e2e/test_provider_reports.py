"""Delivery reports and replies from each provider, end to end: a campaign sent by real
worker processes through a local stand-in of the provider's API (tests/provider_standins.py,
which answers as the provider documents and then posts its reports), the real receiver
process (`relaydesk receiver`), real Redis and a real database, ends with exact delivered /
undelivered counts in `campaign status --json`. Forged reports change nothing; Twilio
without a public URL gets there by polling; STOP keeps a number out of the next campaign
and START brings it back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import urllib3
from sqlalchemy import func, select

from engine.config.callback_token import callback_token
from engine.config.settings import Settings, load_settings
from engine.infra.embedded_redis import EmbeddedRedis, free_port
from engine.store.campaign_state import campaign_summary
from engine.store.db import open_database
from engine.store.models import DeliveryReport, OptOut, OutgoingMessage
from tests.conftest import Workers
from tests.provider_standins import (
    AT_API_KEY,
    AT_FAILURE,
    AT_USERNAME,
    HTTP_AUTH,
    TWILIO_ACCOUNT,
    TWILIO_FROM,
    TWILIO_TOKEN,
    AfricasTalkingStandIn,
    HttpGatewayStandIn,
    StandIn,
    TwilioStandIn,
)
from tests.support import run_cli, run_cli_json, wait_for, write_contacts

# Twilio's error dictionary: 30003 "Unreachable destination handset", the stand-in's code
# for an undelivered message; kept as the reason, from callbacks and look-ups alike.
UNDELIVERED_REASON = "Twilio 30003: Unreachable destination handset"

MEMBERS = [f"+2547200{i:03d}55" for i in range(10)]
UNDELIVERED = MEMBERS[7:]
DELIVERED = MEMBERS[:7]
COUNT_KEYS = ("sent", "delivered", "undelivered", "awaiting_report", "expired")
EXPECTED = {"sent": 10, "delivered": 7, "undelivered": 3, "awaiting_report": 0, "expired": 0}


# --- the receiver process and the stand-ins ------------------------------------------------

class ReceiverProcess:
    """`relaydesk receiver --port N` on a free port, started once the test's settings are
    in the environment (a Twilio signature is checked against RELAYDESK_PUBLIC_URL)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = Path(os.environ["RELAYDESK_DATA_DIR"]) / "receiver-test.log"

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "engine", "receiver", "--port", str(self.port)],
                stdout=log, stderr=log, start_new_session=True)
        wait_for(self._up, timeout=60, message="the receiver to answer")
        assert self.process.poll() is None, f"the receiver exited; see {self.log}"

    def _up(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            return True
        try:
            return urllib3.request("GET", self.url + "/health", timeout=2.0,
                                   retries=False).status == 200
        except urllib3.exceptions.HTTPError:
            return False

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait()


@pytest.fixture
def receiver(embedded_redis: EmbeddedRedis) -> Iterator[ReceiverProcess]:
    process = ReceiverProcess()
    yield process
    assert process.stop() in (None, 0), f"the receiver did not stop cleanly; see {process.log}"


S = TypeVar("S", bound=StandIn)


class StandIns:
    """The test's stand-ins, closed after it."""

    def __init__(self) -> None:
        self.started: list[StandIn] = []

    def add(self, server: S) -> S:
        self.started.append(server)
        return server


@pytest.fixture
def stand_ins() -> Iterator[StandIns]:
    kept = StandIns()
    yield kept
    for server in kept.started:
        server.close()


def use_twilio(monkeypatch: pytest.MonkeyPatch, api_url: str, **extra: str) -> None:
    for name, value in {"RELAYDESK_SMS_PROVIDER": "twilio",
                        "RELAYDESK_TWILIO_ACCOUNT_SID": TWILIO_ACCOUNT,
                        "RELAYDESK_TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
                        "RELAYDESK_TWILIO_FROM": TWILIO_FROM,
                        "RELAYDESK_TWILIO_API_URL": api_url, **extra}.items():
        monkeypatch.setenv(name, value)


# --- the campaign and what the database says ----------------------------------------------

def import_members(tmp_path: Path, phones: list[str]) -> None:
    due = (date.today() + timedelta(days=20)).isoformat()
    rows = [(f"Member {i}", phone, "1000", "250", due, "") for i, phone in enumerate(phones)]
    result = run_cli("contacts", "import", str(write_contacts(tmp_path / "c.csv", rows)))
    assert result.returncode == 0, result.stderr


def send_campaign(template: str, sent: int, suppressed: int = 0) -> int:
    result = run_cli_json("campaign", "send", "--template", template, "--wait")
    assert (result["sent"], result["dead"], result["suppressed"]) == (sent, 0, suppressed)
    return int(result["campaign"])


def settings() -> Settings:
    return load_settings()


def summary(campaign_id: int) -> dict[str, Any]:
    with open_database(settings()).session() as session:
        found = campaign_summary(session, campaign_id)
    assert found is not None
    return found


def status_counts(campaign_id: int) -> dict[str, int]:
    """What `campaign status --json` says."""
    status = run_cli_json("campaign", "status", str(campaign_id))
    return {key: status[key] for key in COUNT_KEYS}


def counts(campaign_id: int) -> dict[str, int]:
    """The same figures, read in this process (the command costs a second)."""
    found = summary(campaign_id)
    return {key: found[key] for key in COUNT_KEYS}


def stored_reports() -> int:
    with open_database(settings()).session() as session:
        return session.scalar(select(func.count(DeliveryReport.id))) or 0


def outcomes(campaign_id: int) -> dict[str, tuple[str | None, str | None]]:
    """Each number's delivery status and reason."""
    with open_database(settings()).session() as session:
        rows = session.execute(select(OutgoingMessage.phone, OutgoingMessage.delivery,
                                      OutgoingMessage.delivery_error)
                               .where(OutgoingMessage.campaign_id == campaign_id)).all()
    return {phone: (delivery, error or None) for phone, delivery, error in rows}


def opted_out() -> list[tuple[str, str]]:
    with open_database(settings()).session() as session:
        return [(o.phone, str(o.source)) for o in session.scalars(select(OptOut))]


def all_reported(server: StandIn, campaign_id: int) -> bool:
    """The stand-in posted every report, the receiver took each, the applier stored each,
    and no message of the campaign awaits one."""
    return (server.callbacks.settled()
            and stored_reports() == len(server.callbacks.posted)
            and summary(campaign_id)["awaiting_report"] == 0)


def check_refused_report_changes_nothing(post_refused: Callable[[], int], refusal: int,
                                         post_genuine: Callable[[], int],
                                         campaign_id: int) -> None:
    """A refused report (forged signature, wrong token) is answered ``refusal``; a genuine,
    intermediate report posted after it reaches the database, and the campaign's counts
    are what they were: had the refused one been taken, the applier (in order) would have
    stored it first."""
    before, figures = stored_reports(), counts(campaign_id)
    assert post_refused() == refusal
    assert post_genuine() == 200
    wait_for(lambda: stored_reports() >= before + 1, timeout=30,
             message="the genuine report after the refused one")
    assert stored_reports() == before + 1
    assert counts(campaign_id) == figures


# --- Twilio ---------------------------------------------------------------------------------

def test_twilio_status_callbacks_end_in_exact_counts_and_forged_ones_change_nothing(
        db_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        workers: Workers, receiver: ReceiverProcess, stand_ins: StandIns) -> None:
    twilio = stand_ins.add(TwilioStandIn(undelivered=UNDELIVERED,
                                    duplicated=[MEMBERS[0], UNDELIVERED[0]],
                                    reordered=[MEMBERS[1], UNDELIVERED[1]]))
    use_twilio(monkeypatch, twilio.url, RELAYDESK_PUBLIC_URL=receiver.url)
    receiver.start()
    workers.start()
    import_members(tmp_path, MEMBERS)

    campaign = send_campaign("Dear #name, #balance remains.", sent=10)

    wait_for(lambda: all_reported(twilio, campaign), timeout=60,
             message="every status callback to be applied")
    assert status_counts(campaign) == EXPECTED
    callback = receiver.url + "/callbacks/twilio/status"
    assert [form.get("StatusCallback") for form in
            (r.form() for r in twilio.requests("POST"))] == [callback] * 10
    # sent + final for each, the final twice for two: every one taken (200) and stored.
    assert twilio.callbacks.statuses() == [200] * 22
    assert outcomes(campaign) == {
        **dict.fromkeys(DELIVERED, ("delivered", None)),
        **dict.fromkeys(UNDELIVERED, ("undelivered", UNDELIVERED_REASON))}
    assert twilio.requests("GET") == []  # the callbacks did it: nothing was looked up

    victim = twilio.by_number()[UNDELIVERED[2]]
    forged = TwilioStandIn.status_params(victim, "delivered")
    check_refused_report_changes_nothing(
        lambda: twilio.post_signed(callback, forged, auth_token="f" * len(TWILIO_TOKEN)),
        403,
        lambda: twilio.post_signed(callback, TwilioStandIn.status_params(victim, "sent")),
        campaign)
    assert outcomes(campaign)[victim.to] == ("undelivered", UNDELIVERED_REASON)


def test_twilio_without_a_public_url_reaches_final_statuses_by_polling(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: Workers,
        stand_ins: StandIns) -> None:
    # No public URL: no StatusCallback, so Twilio never calls; the workers look each
    # message up a second after its send (then after doubling waits) at 50 look-ups/s.
    late = MEMBERS[:3]  # their first look-up still says "sent"
    twilio = stand_ins.add(TwilioStandIn(undelivered=UNDELIVERED, late=late))
    use_twilio(monkeypatch, twilio.url, RELAYDESK_REPORT_POLL_S="1",
               RELAYDESK_REPORT_POLL_RATE="50")
    workers.start()
    import_members(tmp_path, MEMBERS)

    campaign = send_campaign("Dear #name, #balance remains.", sent=10)

    wait_for(lambda: summary(campaign)["awaiting_report"] == 0, timeout=60,
             message="every message to reach a final status by polling")
    assert status_counts(campaign) == EXPECTED
    assert all("StatusCallback" not in r.form() for r in twilio.requests("POST"))
    assert twilio.callbacks.posted == []
    looked_up = {m.to: m.lookups for m in twilio.by_number().values()}
    assert all(looked_up[phone] >= 2 for phone in late), looked_up  # "sent", then final
    assert all(looked_up[phone] >= 1 for phone in MEMBERS), looked_up
    assert outcomes(campaign) == {
        **dict.fromkeys(DELIVERED, ("delivered", None)),
        **dict.fromkeys(UNDELIVERED, ("undelivered",
                                      UNDELIVERED_REASON))}


# --- Africa's Talking -----------------------------------------------------------------------

def test_africas_talking_reports_end_in_exact_counts_and_its_opt_out_lists_the_number(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: Workers,
        receiver: ReceiverProcess, stand_ins: StandIns) -> None:
    token = callback_token(settings())  # the data dir's: the receiver reads the same
    callbacks = f"{receiver.url}/callbacks/africastalking/{token}"
    at = stand_ins.add(AfricasTalkingStandIn(callbacks + "/delivery", failed=UNDELIVERED,
                                        duplicated=[MEMBERS[0], UNDELIVERED[0]]))
    for name, value in {"RELAYDESK_SMS_PROVIDER": "africastalking",
                        "RELAYDESK_AT_USERNAME": AT_USERNAME, "RELAYDESK_AT_API_KEY": AT_API_KEY,
                        "RELAYDESK_AT_SENDER_ID": "RELAYDESK",
                        "RELAYDESK_AT_API_URL": at.url}.items():
        monkeypatch.setenv(name, value)
    receiver.start()
    workers.start()
    import_members(tmp_path, MEMBERS)

    campaign = send_campaign("Dear #name, #balance remains.", sent=10)

    wait_for(lambda: all_reported(at, campaign), timeout=60,
             message="every delivery report to be applied")
    assert status_counts(campaign) == EXPECTED
    assert sorted(at.sent_to()) == sorted(MEMBERS)
    assert at.callbacks.statuses() == [200] * 22  # Submitted + final, the final twice for two
    assert outcomes(campaign) == {**dict.fromkeys(DELIVERED, ("delivered", None)),
                                  **dict.fromkeys(UNDELIVERED, ("undelivered", AT_FAILURE))}

    failed = UNDELIVERED[2]
    wrong = callbacks.replace(token, "x" * len(token))
    check_refused_report_changes_nothing(
        lambda: at.post_form(wrong + "/delivery", at.report(at.ids[failed], failed, "Success")),
        404,
        lambda: at.post_form(callbacks + "/delivery",
                             at.report(at.ids[failed], failed, "Buffered")),
        campaign)

    # "Bulk SMS Opt Out": the member opted out of our sender ID with the network.
    assert at.post_form(wrong + "/optout", {"senderId": "RELAYDESK",
                                            "phoneNumber": MEMBERS[1]}) == 404
    assert at.post_form(callbacks + "/optout", {"senderId": "RELAYDESK",
                                                "phoneNumber": MEMBERS[1]}) == 200
    wait_for(opted_out, timeout=30, message="the opt-out notice to be applied")
    listed = run_cli_json("optouts", "list")
    assert [(o["phone"], o["source"]) for o in listed] == [(MEMBERS[1], "provider")]


# --- the generic HTTP gateway ---------------------------------------------------------------

def test_generic_http_gateway_reports_end_in_exact_counts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: Workers,
        receiver: ReceiverProcess, stand_ins: StandIns) -> None:
    token = callback_token(settings())
    delivery = f"{receiver.url}/callbacks/http/{token}/delivery"
    gateway = stand_ins.add(HttpGatewayStandIn(delivery, failed=UNDELIVERED))
    for name, value in {"RELAYDESK_SMS_PROVIDER": "http",
                        "RELAYDESK_SMS_GATEWAY_URL": gateway.url + "/send",
                        "RELAYDESK_SMS_HTTP_AUTH_HEADER": f"Authorization: {HTTP_AUTH}"
                        }.items():
        monkeypatch.setenv(name, value)
    receiver.start()
    workers.start()
    import_members(tmp_path, MEMBERS)

    campaign = send_campaign("Dear #name, #balance remains.", sent=10)

    wait_for(lambda: all_reported(gateway, campaign), timeout=60,
             message="every delivery report to be applied")
    assert status_counts(campaign) == EXPECTED
    assert sorted(gateway.sent_to()) == sorted(MEMBERS)
    assert gateway.callbacks.statuses() == [200] * 20
    assert outcomes(campaign) == {
        **dict.fromkeys(DELIVERED, ("delivered", None)),
        **dict.fromkeys(UNDELIVERED, ("undelivered", "absent subscriber"))}

    failed = gateway.ids[UNDELIVERED[0]]
    check_refused_report_changes_nothing(
        lambda: gateway.post_json(delivery.replace(token, "x" * len(token)),
                                  {"id": failed, "status": "delivered"}),
        404,
        lambda: gateway.post_json(delivery, {"id": failed, "status": "queued"}),
        campaign)


# --- STOP and START -------------------------------------------------------------------------

def test_stop_keeps_a_number_out_of_the_next_campaign_and_start_brings_it_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        workers: Workers, receiver: ReceiverProcess, stand_ins: StandIns) -> None:
    members = MEMBERS[:4]
    stopper = members[1]
    twilio = stand_ins.add(TwilioStandIn())
    use_twilio(monkeypatch, twilio.url)
    receiver.start()
    workers.start()
    import_members(tmp_path, members)
    inbound = receiver.url + "/callbacks/twilio/inbound"

    def texted(prefix: str) -> list[str]:
        return sorted(r.form()["To"] for r in twilio.requests("POST")
                      if r.form()["Body"].startswith(prefix))

    send_campaign("First #name", sent=4)
    assert texted("First") == sorted(members)

    # Signed as Twilio signs it, against the receiver's own URL (no public URL here).
    assert twilio.reply(inbound, stopper, "Stop.") == 200
    assert wait_for(opted_out, timeout=30, message="the STOP reply to be applied") == [
        (stopper, "reply")]

    second = send_campaign("Second #name", sent=3, suppressed=1)
    assert texted("Second") == sorted(set(members) - {stopper})  # Twilio got nothing for it
    assert summary(second)["suppressed"] == 1

    assert twilio.reply(inbound, stopper, "START") == 200
    wait_for(lambda: not opted_out(), timeout=30, message="the START reply to be applied")

    send_campaign("Third #name", sent=4)
    assert texted("Third") == sorted(members)
    history = run_cli_json("optouts", "history", stopper)
    assert [(e["action"], e["source"]) for e in history] == [("removed", "reply"),
                                                             ("added", "reply")]
    assert [m["text"] for m in run_cli_json("inbox")] == ["START", "Stop."]
