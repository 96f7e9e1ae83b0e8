"""Crashes mid-campaign: nothing lost, nothing sent twice, and no hour-long stall."""

from __future__ import annotations

import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.config.settings import load_settings
from engine.infra.embedded_redis import EmbeddedRedis
from engine.infra.sandbox_gateway import GatewayServer
from engine.store.campaign_state import campaign_summary
from engine.store.db import open_database
from tests.conftest import Workers
from tests.support import http_json, run_cli, run_cli_json, wait_for, write_contacts

RECIPIENTS = 400
RECOVERY_LIMIT_S = 120  # the bound; Celery's default would be an hour


@pytest.fixture(autouse=True)
def slow_enough_to_interrupt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of 4 calls per job (the default is 25): with batched claims a job sends its
    batch at once, and 400 messages at 30 ms would be done before a crash could land."""
    monkeypatch.setenv("RELAYDESK_SEND_CONCURRENCY", "4")


def start_campaign(tmp_path: Path, gateway: GatewayServer) -> int:
    due = (date.today() + timedelta(days=5)).isoformat()
    write_contacts(tmp_path / "c.csv", [(f"M{i}", f"0711{i:04d}55", "500", "0", due, "")
                                        for i in range(RECIPIENTS)])
    assert run_cli("contacts", "import", str(tmp_path / "c.csv")).returncode == 0
    gateway.state.latency_s = 0.03  # slow enough to be caught mid-campaign
    sent = run_cli_json("campaign", "send", "--template", "Hello #name, #balance to go")
    return int(sent["campaign"])


def delivered(gateway: GatewayServer) -> int:
    return gateway.state.stats()["delivered"]


def wait_until_under_way(gateway: GatewayServer) -> None:
    """Asked of the gateway in this process, not through a CLI process per look: on a busy
    machine each look would take a second, and the campaign could end in between."""
    wait_for(lambda: delivered(gateway) >= 60, message="sending to be under way")


def status(campaign: int) -> dict[str, Any]:
    """What 'campaign status --json' prints, read in this process: cheap enough to poll
    often, where a CLI process per look took a second on a loaded machine."""
    with open_database(load_settings()).session() as session:
        summary = campaign_summary(session, campaign)
    assert summary is not None
    return summary


def assert_each_delivered_once(gateway: GatewayServer, campaign: int) -> None:
    messages = [m for m in http_json(gateway.url + "/messages")
                if m["campaign"] == str(campaign)]
    per_phone = Counter(m["to"] for m in messages)
    assert len(per_phone) == RECIPIENTS, "someone never got the message"
    assert max(per_phone.values()) == 1, "someone got the message twice"
    assert http_json(gateway.url + "/stats")["duplicates"] == 0


def test_worker_killed_mid_campaign(tmp_path: Path, gateway: GatewayServer,
                                    workers: Workers) -> None:
    first = workers.start()
    campaign = start_campaign(tmp_path, gateway)
    wait_until_under_way(gateway)
    workers.kill_hard(first)
    killed_at = time.monotonic()
    assert delivered(gateway) < RECIPIENTS, "the campaign finished before the crash"

    workers.start()
    final = wait_for(lambda: (s := status(campaign))["status"] == "completed" and s,
                     timeout=RECOVERY_LIMIT_S + 30, interval=0.2,
                     message="the campaign to complete after the crash")
    assert time.monotonic() - killed_at < RECOVERY_LIMIT_S
    assert (final["sent"], final["dead"]) == (RECIPIENTS, 0)
    assert_each_delivered_once(gateway, campaign)


def test_redis_restarted_mid_campaign(tmp_path: Path, gateway: GatewayServer,
                                      workers: Workers, embedded_redis: EmbeddedRedis) -> None:
    workers.start()
    campaign = start_campaign(tmp_path, gateway)
    wait_until_under_way(gateway)
    port = embedded_redis.url().rsplit(":", 1)[1]
    embedded_redis.stop()
    process, url = embedded_redis.start()
    assert url.endswith(port), "the restarted Redis must keep its port for the workers"
    assert process is not None
    try:
        final = wait_for(lambda: (s := status(campaign))["status"] == "completed" and s,
                         timeout=RECOVERY_LIMIT_S + 30, interval=0.2,
                         message="the campaign to complete after the Redis restart")
    finally:
        workers.stop_all()
        embedded_redis.stop()
        process.wait(10)
    assert (final["sent"], final["dead"]) == (RECIPIENTS, 0)
    assert_each_delivered_once(gateway, campaign)
