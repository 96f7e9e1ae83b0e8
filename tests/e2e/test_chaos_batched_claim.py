"""A worker killed (kill -9, with its pool processes) while batches of messages it claimed
in one statement are at the provider: every one of them stays claimed until its lease is
up, is then taken over, ends sent, and the gateway never sends one twice."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from engine.config.settings import load_settings
from engine.infra.sandbox_gateway import GatewayServer
from engine.store.campaign_state import campaign_summary
from engine.store.db import open_database
from engine.store.delivery_state import CLAIM_LEASE_S
from engine.store.models import MessageStatus, OutgoingMessage
from tests.conftest import Workers
from tests.support import http_json, run_cli, run_cli_json, wait_for, write_contacts

RECIPIENTS = 200  # the bulk route: chunks of 50
BATCH = 8  # messages a task claims together (its send pool's size)
WORKER_CONCURRENCY = 2  # tasks at once (tests/conftest.py FAST_PIPELINE_ENV)


def claimed_rows(campaign: int) -> dict[int, datetime]:
    """The campaign's messages now claimed ('sending'), with their claim time."""
    with open_database(load_settings()).session() as session:
        return {id_: claimed_at for id_, claimed_at in session.execute(
            select(OutgoingMessage.id, OutgoingMessage.claimed_at)
            .where(OutgoingMessage.campaign_id == campaign)
            .where(OutgoingMessage.status == MessageStatus.SENDING)) if claimed_at}


def test_a_worker_killed_with_a_batch_at_the_provider(
        tmp_path: Path, gateway: GatewayServer, workers: Workers,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYDESK_SEND_CONCURRENCY", str(BATCH))
    due = (date.today() + timedelta(days=5)).isoformat()
    write_contacts(tmp_path / "c.csv", [(f"M{i}", f"0711{i:04d}55", "500", "0", due, "")
                                        for i in range(RECIPIENTS)])
    assert run_cli("contacts", "import", str(tmp_path / "c.csv")).returncode == 0
    # A slow provider: each batch spends a second at the gateway, where the kill finds it.
    gateway.state.latency_s = 1.0
    first = workers.start()
    campaign = int(run_cli_json("campaign", "send", "--template", "Hello #name")["campaign"])

    # Both tasks have claimed a whole batch, each in one statement (one claim time each).
    claimed = wait_for(lambda: (rows := claimed_rows(campaign))
                       and len(rows) >= WORKER_CONCURRENCY * BATCH and rows,
                       timeout=120, interval=0.02, message="two batches to be claimed")
    workers.kill_hard(first)
    claimed = claimed_rows(campaign)  # as the kill left them
    assert max(Counter(claimed.values()).values()) == BATCH, "no batch claimed whole"
    assert http_json(gateway.url + "/stats")["delivered"] < RECIPIENTS

    gateway.state.latency_s = 0.0  # the rest may go quickly
    workers.start()
    final = wait_for(lambda: (s := summary(campaign))["status"] == "completed" and s,
                     timeout=CLAIM_LEASE_S + 180, interval=0.5,
                     message="the campaign to complete after the kill")
    assert (final["sent"], final["dead"]) == (RECIPIENTS, 0)

    with open_database(load_settings()).session() as session:
        taken_over = {m.id: m for m in session.scalars(
            select(OutgoingMessage).where(OutgoingMessage.id.in_(list(claimed))))}
    for message_id, claimed_at in claimed.items():
        message = taken_over[message_id]
        assert message.status == MessageStatus.SENT
        # Claimed by the dead worker, then once more, by whoever took it over.
        assert message.attempts == 2
        # Never while its lease ran: a live worker could still have been sending it.
        assert message.sent_at is not None
        assert message.sent_at >= claimed_at + timedelta(seconds=CLAIM_LEASE_S)

    # The gateway's own record: everyone got the message, nobody got it twice (a batch the
    # dead worker had sent is sent again with the same idempotency key, and not delivered).
    messages = [m for m in http_json(gateway.url + "/messages")
                if m["campaign"] == str(campaign)]
    per_phone = Counter(m["to"] for m in messages)
    assert len(per_phone) == RECIPIENTS
    assert max(per_phone.values()) == 1
    assert http_json(gateway.url + "/stats")["duplicates"] == 0


def summary(campaign: int) -> dict[str, object]:
    with open_database(load_settings()).session() as session:
        found = campaign_summary(session, campaign)
    assert found is not None
    return found
