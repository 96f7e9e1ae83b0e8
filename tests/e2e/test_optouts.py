"""An opted-out number is never sent, through real Redis, real worker processes and the
sandbox gateway: opted out before planning (left out, counted), after its campaign was
queued (its message ends suppressed), reported by the provider (suppressed and listed), and
when dead letters are retried (skipped, and said so)."""

from __future__ import annotations

import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from engine.config.settings import load_settings
from engine.infra import metrics
from engine.infra.metrics import Metric
from engine.infra.sandbox_gateway import GatewayServer
from engine.store.db import open_database
from engine.store.models import FailedJob, OutgoingMessage
from tests.conftest import Workers
from tests.support import http_json, run_cli, run_cli_json, wait_for, write_contacts

TEMPLATE = "Dear #name, #balance remains."
GOOD = [f"+25472{i:05d}55" for i in range(6)]  # never end like a sandbox test number
BEFORE = "+254720009955"  # opted out before the campaign is planned
AFTER = "+254720008855"  # opted out once the campaign is queued, before a worker runs
PROVIDER = "+254700000008"  # the sandbox answers as a recipient who unsubscribed
DEAD_LISTED = "+254700000001"  # refused as invalid: a dead letter, then opted out
DEAD_OTHER = "+254711000001"  # refused as invalid: a dead letter, retried


def contacts() -> list[tuple[str, str, str, str, str, str]]:
    due = (date.today() + timedelta(days=20)).isoformat()
    phones = [*GOOD, BEFORE, AFTER, PROVIDER, DEAD_LISTED, DEAD_OTHER]
    return [(f"Member {i}", phone, "1000", "250", due, "") for i, phone in enumerate(phones)]


def attempts_by_phone(gateway: GatewayServer, campaign: int) -> dict[str, int]:
    """Every request the gateway received for the campaign, delivered or refused, by number
    (its idempotency keys name the message; the database names the number)."""
    with open_database(load_settings()).session() as session:
        phones = dict(session.execute(select(OutgoingMessage.id, OutgoingMessage.phone)
                                      .where(OutgoingMessage.campaign_id == campaign)).all())
    with gateway.state.lock:
        keys = dict(gateway.state.attempts.counts)
    found: dict[str, int] = {}
    for key, count in keys.items():
        _, campaign_id, message_id = key.rsplit("-", 2)
        if int(campaign_id) == campaign:
            phone = phones[int(message_id)]
            found[phone] = found.get(phone, 0) + count
    return found


def check_nothing_sent_to_the_opted_out(gateway: GatewayServer, campaign: int) -> None:
    delivered = {m["to"] for m in http_json(gateway.url + "/messages")
                 if m["campaign"] == str(campaign)}
    assert delivered == set(GOOD)
    tried = attempts_by_phone(gateway, campaign)
    assert BEFORE not in tried  # never rendered, never asked
    assert AFTER not in tried  # stopped by the claim: no request at all
    assert tried[PROVIDER] == 1  # asked once, refused, never retried
    with open_database(load_settings()).session() as session:
        rows = {phone: (status, attempts) for phone, status, attempts in session.execute(
            select(OutgoingMessage.phone, OutgoingMessage.status, OutgoingMessage.attempts)
            .where(OutgoingMessage.campaign_id == campaign))}
        refused = set(session.scalars(select(FailedJob.recipient)))
    assert BEFORE not in rows
    assert rows[AFTER] == ("suppressed", 0)  # no attempt spent
    assert rows[PROVIDER] == ("suppressed", 1)
    assert refused == {DEAD_LISTED, DEAD_OTHER}  # the opt-outs are not failed jobs


def test_an_opted_out_number_is_never_sent(tmp_path: Path, gateway: GatewayServer,
                                           workers: Workers, redis_client: Any) -> None:
    started = time.time()
    path = write_contacts(tmp_path / "contacts.csv", contacts())
    assert run_cli("contacts", "import", str(path)).returncode == 0

    # (a) Opted out before planning: left out, and counted as suppressed.
    run_cli_json("optouts", "add", BEFORE, "--reason", "asked at the door")
    preview = run_cli_json("campaign", "preview", "--template", TEMPLATE)
    assert (preview["totals"]["recipients"], preview["totals"]["suppressed"]) == (10, 1)
    sent = run_cli_json("campaign", "send", "--template", TEMPLATE)  # no worker yet
    campaign = sent["campaign"]
    assert (sent["recipients"], sent["suppressed"], sent["pending"]) == (10, 1, 10)

    # (b) Opted out while its message waits in the queue.
    run_cli_json("optouts", "add", AFTER)
    workers.start()

    def settled() -> Any:
        status = run_cli_json("campaign", "status", str(campaign))
        return status if status["status"] == "completed" else None

    status = wait_for(settled, message="the campaign to finish")
    # Suppressed: one left out at planning, one stopped at send time, one the provider
    # refused as unsubscribed; the two invalid numbers are dead letters.
    assert (status["sent"], status["dead"], status["suppressed"]) == (len(GOOD), 2, 3)
    assert (status["pending"], status["retrying"]) == (0, 0)

    check_nothing_sent_to_the_opted_out(gateway, campaign)

    # (c) The provider's answer put the number on the list, with its code as the reason.
    listed = {o["phone"]: o for o in run_cli_json("optouts", "list")}
    assert set(listed) == {BEFORE, AFTER, PROVIDER}
    assert (listed[PROVIDER]["source"], listed[PROVIDER]["reason"]) == (
        "provider", "opted_out: the recipient unsubscribed from this sender")
    assert listed[BEFORE]["reason"] == "asked at the door"

    minute = metrics.resolutions(load_settings())[1]
    field = metrics.field(metrics.campaign_scope(campaign), Metric.SUPPRESSED)
    counted = metrics.read_series(redis_client, minute, [field], started - 60)
    assert counted.total(field) == 2  # the two stopped at send time

    # (d) Retrying the dead letters skips the one whose number has opted out since.
    run_cli_json("optouts", "add", DEAD_LISTED)
    received = gateway.state.stats()["received"]
    retried = run_cli_json("failed", "retry", "--all")
    assert retried == {"retried": 1, "skipped_opted_out": 1}
    with open_database(load_settings()).session() as session:
        skipped = session.scalar(select(FailedJob.id).where(FailedJob.recipient == DEAD_LISTED))
    text = run_cli("failed", "retry", str(skipped))  # its record stays, not retried
    assert text.stdout.splitlines() == [
        "0 job(s) queued again",
        "1 job(s) skipped: the number is on the opt-out list (see 'relaydesk optouts list')"]

    def died_again() -> bool:
        with open_database(load_settings()).session() as session:
            return len(session.scalars(select(FailedJob.id)).all()) == 3

    wait_for(died_again, message="the retried message to fail again")
    wait_for(settled, message="the campaign to finish again")
    assert gateway.state.stats()["received"] == received + 1  # the other one only
    tried = attempts_by_phone(gateway, campaign)
    assert (tried[DEAD_LISTED], tried[DEAD_OTHER]) == (1, 2)
    with open_database(load_settings()).session() as session:
        assert session.scalar(select(OutgoingMessage.status)
                              .where(OutgoingMessage.phone == DEAD_LISTED)) == "dead"
