"""Quiet hours through real worker processes, real Redis and the sandbox gateway over HTTP:
with a window that contains now and ends about a minute from now, a bulk and an individual
campaign send nothing until the window's end, then every message once, no attempt spent on
the wait; an urgent campaign goes out inside the window when RELAYDESK_QUIET_HOURS_URGENT
is ``send``. The window is set relative to the current time, in UTC (the suite's zone)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.infra.sandbox_gateway import GatewayServer
from engine.monitoring import wait_alerts
from tests.conftest import Workers
from tests.support import http_json, run_cli, run_cli_json, wait_for, write_contacts

BULK, FEW, URGENT = 12, 4, 3


def window_ending_soon() -> tuple[str, datetime]:
    """Quiet hours (HH:MM-HH:MM) from ten minutes ago to the first whole minute at least
    40 s from now, and that end: time enough to send and look before it."""
    end = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    while end - datetime.now(UTC) < timedelta(seconds=40):
        end += timedelta(minutes=1)
    start = end - timedelta(minutes=10)
    return f"{start:%H:%M}-{end:%H:%M}", end


def phone(prefix: str, i: int) -> str:
    return f"07{prefix}{i:04d}55"  # never ends like a sandbox test number


class Arrivals:
    """When each request reached the gateway, by campaign (seen in the gateway process,
    which is this test's)."""

    def __init__(self, gateway: GatewayServer, monkeypatch: pytest.MonkeyPatch) -> None:
        self.times: dict[str, list[float]] = {}
        self.lock = threading.Lock()
        handle = gateway.state.handle_send

        def recording(payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            with self.lock:
                self.times.setdefault(str(payload.get("campaign")), []).append(time.time())
            return handle(payload)

        monkeypatch.setattr(gateway.state, "handle_send", recording)

    def of(self, campaign: int) -> list[float]:
        with self.lock:
            return list(self.times.get(str(campaign), []))


def delivered_to(gateway: GatewayServer, campaign: int) -> list[str]:
    return [m["to"] for m in http_json(gateway.url + "/messages")
            if m["campaign"] == str(campaign)]


def finished(campaign: int) -> Any:
    status = run_cli_json("campaign", "status", str(campaign))
    return status if status["status"] == "completed" else None


def test_quiet_hours_hold_everything_until_their_end(
        tmp_path: Path, gateway: GatewayServer, workers: Workers, redis_client: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYDESK_QUIET_HOURS_URGENT", "send")
    monkeypatch.setenv("RELAYDESK_BULK_THRESHOLD", "10")
    monkeypatch.setenv("RELAYDESK_CHUNK_SIZE", "5")
    # An alert after 2 s in a queue: held work must never trip it.
    monkeypatch.setenv("RELAYDESK_LONG_WAIT", "2")
    arrivals = Arrivals(gateway, monkeypatch)
    due = (date.today() + timedelta(days=20)).isoformat()
    rows = [(f"Bulk {i}", phone("10", i), "1000", "250", due, "bulk") for i in range(BULK)]
    rows += [(f"Few {i}", phone("20", i), "1000", "250", due, "few") for i in range(FEW)]
    rows += [(f"Urgent {i}", phone("30", i), "1000", "250", due, "urgent")
             for i in range(URGENT)]
    write_contacts(tmp_path / "contacts.csv", rows)
    assert run_cli("contacts", "import", str(tmp_path / "contacts.csv")).returncode == 0
    workers.start()
    # A campaign records its window when it is created: set now, after the slow start.
    quiet, end = window_ending_soon()
    monkeypatch.setenv("RELAYDESK_QUIET_HOURS", quiet)

    bulk = run_cli_json("campaign", "send", "--tag", "bulk", "--template", "Hi #name")
    few = run_cli_json("campaign", "send", "--tag", "few", "--template", "Hi #name")
    # Urgent and set to send: it goes out inside the window, whole.
    urgent = run_cli_json("campaign", "send", "--tag", "urgent", "--urgent",
                          "--template", "Hi #name")
    status = wait_for(lambda: finished(urgent["campaign"]), message="the urgent campaign")
    assert status["sent"] == URGENT
    assert len(arrivals.of(urgent["campaign"])) == URGENT
    assert all(t < end.timestamp() for t in arrivals.of(urgent["campaign"]))

    held = {c["campaign"]: run_cli_json("campaign", "status", str(c["campaign"]))
            for c in (bulk, few)}
    assert {s["route"] for s in held.values()} == {"bulk", "individual"}
    for status in held.values():
        assert status["held_until"] == end.isoformat()
        assert status["state_note"] == f"waiting for the send window (until {end:%H:%M})"
        assert status["sent"] == 0
    # The held jobs are in the durable schedule, not in a queue: once the workers have
    # taken what was published, no queue waits and `status` says why nothing moves.
    overview = wait_for(lambda: (s := run_cli_json("status"))["scheduled"] > 0
                        and s["in_flight"] == 0 and not any(s["queues"].values()) and s,
                        message="the held jobs to be back in the schedule")
    assert overview["status"] == "waiting"
    notes = {c["campaign"]: c["state_note"] for c in overview["campaigns"]}
    assert notes == dict.fromkeys(held, f"waiting for the send window (until {end:%H:%M})")
    assert overview["alerts"] == []
    text = run_cli("status").stdout
    assert f"waiting for the send window (until {end:%H:%M})" in text

    for campaign, count in ((bulk["campaign"], BULK), (few["campaign"], FEW)):
        status = wait_for(lambda c=campaign: finished(c), timeout=240,
                          message=f"campaign {campaign} to be sent after the window")
        # Each message reached the gateway once, and only after the window's end.
        times = arrivals.of(campaign)
        assert len(times) == count
        assert min(times) >= end.timestamp()
        assert sorted(delivered_to(gateway, campaign)) == sorted(
            "+254" + phone("10" if campaign == bulk["campaign"] else "20", i)[1:]
            for i in range(count))
        # Held, not tried: one attempt per message.
        assert (status["sent"], status["attempts"], status["dead"]) == (count, count, 0)
        assert status["held_until"] is None
    assert http_json(gateway.url + "/stats")["duplicates"] == 0
    assert [e for e in wait_alerts.recent(redis_client) if e["kind"] == "long_wait"] == []
