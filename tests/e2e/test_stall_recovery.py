"""A campaign waiting its turn is not a lost campaign: queued behind a long one for longer
than the stall time, it runs exactly its own chunks, once; a campaign whose job the broker
really lost is queued again, once (issue 11, item 1)."""

from __future__ import annotations

import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.config.settings import load_settings
from engine.infra.sandbox_gateway import GatewayServer
from engine.monitoring.queue_status import broker_load
from engine.pipeline.dispatcher import STALL_S, SWEEP_EVERY_S
from engine.store.campaign_state import campaign_summary
from engine.store.db import open_database
from tests.conftest import Workers
from tests.support import http_json, run_cli, run_cli_json, wait_for, write_contacts

CHUNK = 10
# The first campaign holds the only worker process for FIRST / RATE seconds (the global
# rate limit makes that a lower bound on any machine): longer than the stall time plus a
# sweep, so the worker's own sweep looks at the second campaign while it still waits.
RATE = 4
FIRST, SECOND, LOST = 300, 20, 10
assert FIRST / RATE > STALL_S + SWEEP_EVERY_S


def campaign_status(campaign: int) -> dict[str, Any]:
    """What 'campaign status --json' prints, read in this process: cheap enough to poll
    often, where a CLI process per look took a second on a loaded machine."""
    with open_database(load_settings()).session() as session:
        summary = campaign_summary(session, campaign)
    assert summary is not None
    return summary


def broker_is_empty(client: Any) -> bool:
    load = broker_load(client)
    return load.in_flight == 0 and load.scheduled == 0 and \
        all(q.waiting == 0 for q in load.queues.values())


def recoveries(data_dir: Path) -> list[str]:
    """The worker's warnings that a campaign lost its jobs and was queued again."""
    log = (data_dir / "worker-0.log").read_text(encoding="utf-8", errors="replace")
    return [line for line in log.splitlines() if "lost its jobs" in line]


def bulk_jobs_run() -> int:
    figures = run_cli_json("metrics", "--since", "1h", "--queue", "bulk_messages")
    return sum(int(b["jobs"]) for b in figures["buckets"])


def test_a_campaign_queued_behind_a_long_one_runs_its_chunks_once(
        tmp_path: Path, isolated_env: Path, gateway: GatewayServer, workers: Workers,
        redis_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"RELAYDESK_RATE_LIMIT": f"{RATE}/s", "RELAYDESK_BULK_THRESHOLD": "10",
                        "RELAYDESK_CHUNK_SIZE": str(CHUNK),
                        "RELAYDESK_WORKER_CONCURRENCY": "1"}.items():
        monkeypatch.setenv(name, value)
    due = (date.today() + timedelta(days=5)).isoformat()
    write_contacts(tmp_path / "c.csv",
                   [(f"A{i}", f"0711{i:04d}55", "500", "0", due, "first") for i in range(FIRST)]
                   + [(f"B{i}", f"0722{i:04d}55", "500", "0", due, "second")
                      for i in range(SECOND)]
                   + [(f"C{i}", f"0733{i:04d}55", "500", "0", due, "lost")
                      for i in range(LOST)])
    assert run_cli("contacts", "import", str(tmp_path / "c.csv")).returncode == 0
    # A campaign whose bulk job the broker loses (as a Redis restart can lose its last
    # writes) before any worker took it: only the database still knows its messages.
    lost = int(run_cli_json("campaign", "send", "--template", "Hey #name",
                            "--tag", "lost")["campaign"])
    assert redis_client.delete("bulk_messages") == 1
    # Both bulk jobs are queued before the worker starts: the second campaign's chunks land
    # in bulk_messages behind all of the first one's, for longer than the stall time.
    first = int(run_cli_json("campaign", "send", "--template", "Hello #name",
                             "--tag", "first")["campaign"])
    second = int(run_cli_json("campaign", "send", "--template", "Hi #name",
                              "--tag", "second")["campaign"])
    second_queued_at = time.time()
    workers.start()

    wait_for(lambda: all(campaign_status(c)["status"] == "completed"
                         for c in (first, second, lost)), timeout=240, interval=0.2,
             message="the three campaigns to complete")
    # Whatever a sweep may have queued again has run or been dropped once the broker is
    # empty: only then is the count of jobs final.
    wait_for(lambda: broker_is_empty(redis_client), timeout=60, interval=0.2,
             message="the broker to hold no job")

    delivered = http_json(gateway.url + "/messages")
    second_started = min(m["at"] for m in delivered if m["campaign"] == str(second))
    assert second_started - second_queued_at > STALL_S + SWEEP_EVERY_S, \
        "the second campaign did not wait long enough behind the first to test anything"
    # The lost campaign was queued again once; the waiting one never was.
    warnings = recoveries(isolated_env)
    assert len(warnings) == 1, warnings
    assert f"campaign {lost} lost its jobs" in warnings[0]
    # Two bulk jobs, each campaign's chunks exactly once, and the lost campaign's one chunk.
    assert bulk_jobs_run() == 2 + FIRST // CHUNK + SECOND // CHUNK + LOST // CHUNK
    for campaign, recipients in ((first, FIRST), (second, SECOND), (lost, LOST)):
        per_phone = Counter(m["to"] for m in delivered if m["campaign"] == str(campaign))
        assert len(per_phone) == recipients
        assert set(per_phone.values()) == {1}
    assert http_json(gateway.url + "/stats")["duplicates"] == 0
