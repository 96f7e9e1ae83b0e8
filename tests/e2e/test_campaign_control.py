"""Pause, resume and cancel a running campaign, and a one-number test send, through real
Redis, a real worker process and the sandbox gateway."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.config.settings import load_settings
from engine.infra import redis_keys, scheduler
from engine.infra.sandbox_gateway import GatewayServer
from engine.monitoring.queue_status import queue_depths
from engine.operations.campaign_control import (
    cancel_campaign,
    pause_campaign,
    resume_campaign,
    send_test_message,
)
from engine.operations.campaigns import CampaignError
from engine.store.campaign_state import campaign_counts, campaign_summary
from engine.store.contacts_import import import_contacts
from engine.store.db import Database
from engine.store.models import Campaign, OutgoingMessage
from tests.conftest import Workers
from tests.support import http_json, run_cli, run_cli_json, wait_for, write_contacts

TEMPLATE = "Dear #name, #balance of your #pledge pledge remains."
BULK = 150  # three chunks of 50
CHUNK_PACING_S = "2"  # long enough to pause or cancel between chunks, short enough for CI
ACCOUNT_EMPTY = "0700000004"  # the sandbox answers 402: insufficient balance


def phone(i: int) -> str:
    return f"0730{i:04d}55"  # never ends like a sandbox test number


def e164(local: str) -> str:
    return "+254" + local[1:]


def add_contacts(db: Database, tmp_path: Path, phones: list[str]) -> None:
    due = (date.today() + timedelta(days=10)).isoformat()
    path = write_contacts(tmp_path / "contacts.csv",
                          [(f"Member {i}", p, "1000", "250", due, "") for i, p in
                           enumerate(phones)])
    result = import_contacts(db, path, "KE")
    assert result.imported == len(phones)
    assert not result.rejected


def summary(db: Database, campaign: int) -> dict[str, Any]:
    with db.session() as session:
        found = campaign_summary(session, campaign)
    assert found is not None
    return found


def counts(db: Database, campaign: int) -> dict[str, int]:
    with db.session() as session:
        return campaign_counts(session, campaign)


def delivered(gateway: GatewayServer, campaign: int) -> Counter[str]:
    """How many times each phone received this campaign's message."""
    return Counter(m["to"] for m in http_json(gateway.url + "/messages")
                   if m["campaign"] == str(campaign))


def broker_idle(client: Any) -> bool:
    """No job left anywhere: none scheduled, none waiting in a queue, none being run."""
    return (scheduler.pending(client) == 0 and not any(queue_depths(client).values())
            and client.hlen("unacked") == 0)


def settled(db: Database, client: Any, campaign: int) -> bool:
    """Every job of the campaign has run: nothing in the broker, no message mid-send."""
    return broker_idle(client) and counts(db, campaign)["sending"] == 0


def start_bulk(db: Database, tmp_path: Path, workers: Workers,
               monkeypatch: pytest.MonkeyPatch) -> int:
    """A 150-recipient bulk campaign whose chunks are paced 2 s apart, under way."""
    monkeypatch.setenv("RELAYDESK_PACING_CHUNK_S", CHUNK_PACING_S)  # over fast_pipeline's 0
    add_contacts(db, tmp_path, [phone(i) for i in range(BULK)])
    workers.start()
    campaign = int(run_cli_json("campaign", "send", "--template", TEMPLATE)["campaign"])
    wait_for(lambda: counts(db, campaign)["sent"] > 0, message="the first chunk to go out")
    return campaign


def test_pause_then_resume_continues_where_it_stopped(
        tmp_path: Path, db: Database, redis_client: Any, gateway: GatewayServer,
        workers: Workers, monkeypatch: pytest.MonkeyPatch) -> None:
    campaign = start_bulk(db, tmp_path, workers, monkeypatch)

    paused = pause_campaign(db, redis_client, campaign)
    assert (paused["status"], paused["pause_reason"]) == ("paused", "paused by operator")
    assert redis_client.exists(redis_keys.campaign_paused(campaign))
    # Let the later chunks come due and reach the worker: they must send nothing.
    wait_for(lambda: settled(db, redis_client, campaign), message="the paused jobs to run")
    stopped = summary(db, campaign)
    assert 0 < stopped["sent"] < BULK, "the pause did not land mid-campaign"
    assert stopped["status"] == "paused"
    assert stopped["pending"] == BULK - stopped["sent"]  # waiting, not lost
    assert sum(delivered(gateway, campaign).values()) == stopped["sent"]

    resumed = resume_campaign(db, redis_client, load_settings(), campaign)
    assert (resumed["status"], resumed["pause_reason"]) == ("sending", None)
    assert not redis_client.exists(redis_keys.campaign_paused(campaign))
    final = wait_for(lambda: (s := summary(db, campaign))["status"] == "completed" and s,
                     message="the resumed campaign to complete")
    assert (final["sent"], final["dead"], final["attempts"]) == (BULK, 0, BULK)
    per_phone = delivered(gateway, campaign)
    assert set(per_phone) == {e164(phone(i)) for i in range(BULK)}, "someone was skipped"
    assert set(per_phone.values()) == {1}, "someone got the message twice"


def test_cancel_stops_sending_for_good(
        tmp_path: Path, db: Database, redis_client: Any, gateway: GatewayServer,
        workers: Workers, monkeypatch: pytest.MonkeyPatch) -> None:
    campaign = start_bulk(db, tmp_path, workers, monkeypatch)

    cancelled = cancel_campaign(db, redis_client, campaign)
    assert cancelled["status"] == "cancelled"
    assert scheduler.pending(redis_client) == 0, "the campaign's paced chunks were kept"
    assert redis_client.ttl(redis_keys.campaign_paused(campaign)) > 0
    wait_for(lambda: settled(db, redis_client, campaign), message="the last jobs to run")
    final = summary(db, campaign)
    assert final["status"] == "cancelled"
    assert 0 < final["sent"] < BULK, "the cancel did not land mid-campaign"
    assert final["sent"] + final["cancelled"] == BULK
    assert (final["pending"], final["retrying"], final["dead"]) == (0, 0, 0)
    per_phone = delivered(gateway, campaign)
    assert sum(per_phone.values()) == final["sent"]
    assert set(per_phone.values()) == {1}
    with db.session() as session:
        row = session.get(Campaign, campaign)
        assert row is not None
        assert row.finished_at is not None
    with pytest.raises(CampaignError, match="it is cancelled"):
        resume_campaign(db, redis_client, load_settings(), campaign)


def test_resume_after_the_account_ran_dry(
        tmp_path: Path, db: Database, redis_client: Any, gateway: GatewayServer,
        workers: Workers, monkeypatch: pytest.MonkeyPatch) -> None:
    goods = [phone(i) for i in range(4)]
    add_contacts(db, tmp_path, [*goods, ACCOUNT_EMPTY])
    workers.start()
    campaign = int(run_cli_json("campaign", "send", "--template", TEMPLATE)["campaign"])
    paused = wait_for(lambda: (s := summary(db, campaign))["status"] == "paused" and s,
                      message="the 402 to pause the campaign")
    assert "insufficient_balance" in paused["pause_reason"]
    wait_for(lambda: settled(db, redis_client, campaign), message="the paused jobs to run")

    # The operator tops up the account: from now on the provider accepts the number.
    failure = gateway.state._failure
    monkeypatch.setattr(gateway.state, "_failure",
                        lambda to, attempt: None if to.endswith("0004") else failure(to, attempt))
    resume_campaign(db, redis_client, load_settings(), campaign)
    final = wait_for(lambda: (s := summary(db, campaign))["status"] == "completed" and s,
                     message="the resumed campaign to complete")
    assert (final["sent"], final["dead"]) == (5, 0)
    assert delivered(gateway, campaign) == Counter(e164(p) for p in [*goods, ACCOUNT_EMPTY])
    with db.session() as session:
        row = session.query(OutgoingMessage).filter_by(phone=e164(ACCOUNT_EMPTY)).one()
        assert row.attempts == 1, "the refused attempt was counted against the message"


def test_test_send_and_refusals(tmp_path: Path, db: Database, redis_client: Any,
                                gateway: GatewayServer, workers: Workers) -> None:
    add_contacts(db, tmp_path, [phone(1), phone(2)])
    workers.start()
    sent = run_cli_json("campaign", "test-send", "--template", TEMPLATE,
                        "--to", "0799 000 555", "--wait")
    assert (sent["sent"], sent["dead"], sent["recipients"]) == (1, 0, 1)
    assert sent["name"].startswith("Test send: ")
    assert (sent["route"], sent["queue"]) == ("individual", "high_priority")
    assert http_json(gateway.url + "/messages")[0]["body"] == \
        "Dear Member 0, 750 of your 1,000 pledge remains."
    assert delivered(gateway, sent["campaign"]) == Counter(["+254799000555"])
    assert http_json(gateway.url + "/stats")["delivered"] == 1, "a contact got the test"

    # --wait returns once the message is sent; the worker marks the campaign done just after.
    wait_for(lambda: summary(db, sent["campaign"])["status"] == "completed",
             message="the test campaign to complete")
    done = str(sent["campaign"])
    refusals = {
        ("pause", done): f"cannot pause campaign {done}: it is completed",
        ("resume", done): f"cannot resume campaign {done}: it is completed",
        ("cancel", "9999"): "there is no campaign 9999",
    }
    with ThreadPoolExecutor(len(refusals)) as pool:  # independent processes: run together
        results = dict(zip(refusals, pool.map(lambda a: run_cli("campaign", *a), refusals),
                           strict=True))
    for args, expected in refusals.items():
        assert results[args].returncode != 0, args
        assert expected in results[args].stderr
        assert "Traceback" not in results[args].stderr


def test_test_send_without_contacts(db: Database, redis_client: Any) -> None:
    settings = load_settings()
    created = send_test_message(db, redis_client, settings, "Hi #name, #balance to go",
                                "+254799000555")
    with db.session() as session:
        [row] = session.query(OutgoingMessage).filter_by(campaign_id=created.id).all()
        assert (row.phone, row.body) == ("+254799000555", "Hi Sample Name, 7,500 to go")
        assert row.contact_id is None
    assert summary(db, created.id)["status"] == "sending"  # no worker: it waits
    assert scheduler.pending(redis_client) == 1
    with pytest.raises(CampaignError, match="the test number '12345' is not a valid number"):
        send_test_message(db, redis_client, settings, "Hi", "12345")
    with pytest.raises(CampaignError, match="there is no contact 7"):
        send_test_message(db, redis_client, settings, "Hi", "+254799000555", contact_id=7)
    with pytest.raises(CampaignError, match=r"cannot resume campaign \d+: it is sending"):
        resume_campaign(db, redis_client, settings, created.id)


def test_state_changes_without_a_worker(db: Database, redis_client: Any) -> None:
    """The transitions and their Redis side on their own (and on PostgreSQL when given)."""
    settings = load_settings()
    campaign = send_test_message(db, redis_client, settings, "Hi #name", "+254799000555").id
    flag = redis_keys.campaign_paused(campaign)
    assert scheduler.pending(redis_client) == 1

    assert pause_campaign(db, redis_client, campaign, "checking")["pause_reason"] == "checking"
    assert redis_client.get(flag) == b"checking"
    with pytest.raises(CampaignError, match=r"it is paused, .* resume it with"):
        pause_campaign(db, redis_client, campaign)

    resumed = resume_campaign(db, redis_client, settings, campaign)
    assert (resumed["status"], resumed["pending"]) == ("sending", 1)
    assert not redis_client.exists(flag)
    assert scheduler.pending(redis_client) == 1, "the old job was kept beside the new one"

    cancelled = cancel_campaign(db, redis_client, campaign)
    assert (cancelled["status"], cancelled["cancelled"], cancelled["pending"]) == \
        ("cancelled", 1, 0)
    assert cancelled["pause_reason"] is None
    assert scheduler.pending(redis_client) == 0
    assert 0 < redis_client.ttl(flag) <= 24 * 3600
    for action in (lambda: pause_campaign(db, redis_client, campaign),
                   lambda: cancel_campaign(db, redis_client, campaign)):
        with pytest.raises(CampaignError, match="it is cancelled"):
            action()
    with pytest.raises(CampaignError, match="there is no campaign 999"):
        pause_campaign(db, redis_client, 999)
