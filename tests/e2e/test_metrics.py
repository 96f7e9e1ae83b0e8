"""Metrics recorded by real worker processes as a campaign goes out, read back through
``relaydesk metrics`` and ``relaydesk status``."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from engine.infra.sandbox_gateway import GatewayServer
from tests.conftest import Workers
from tests.support import http_json, run_cli, run_cli_json, write_contacts


def test_a_campaign_shows_up_in_the_metrics(tmp_path: Path, gateway: GatewayServer,
                                            workers: Workers) -> None:
    due = (date.today() + timedelta(days=9)).isoformat()
    rows = [(f"Donor {i}", f"0712{i:04d}55", "1000", "100", due, "") for i in range(119)]
    rows.append(("Wrong number", "0700000001", "1000", "100", due, ""))  # fails for good
    write_contacts(tmp_path / "contacts.csv", rows)
    assert run_cli("contacts", "import", str(tmp_path / "contacts.csv")).returncode == 0
    workers.start()
    result = run_cli_json("campaign", "send", "--template", "Hello #name", "--wait")
    assert (result["sent"], result["dead"]) == (119, 1)
    delivered = sum(1 for m in http_json(gateway.url + "/messages")
                    if m["campaign"] == str(result["campaign"]))

    figures = run_cli_json("metrics", "--since", "15m")
    assert figures["step_s"] == 10
    total = {name: sum(b[name] for b in figures["buckets"])
             for name in ("sent", "dead", "retried", "jobs", "calls")}
    assert total["sent"] == delivered == 119
    assert total["dead"] == 1
    assert total["retried"] == 0
    assert total["calls"] == 120
    assert total["jobs"] >= 1 + 120 // 50  # the bulk job and its chunks
    assert any(b["call_avg_ms"] > 0 for b in figures["buckets"])
    assert any(b["runtime_avg_ms"] > 0 for b in figures["buckets"])
    assert all(0 <= b["success_pct"] <= 100 for b in figures["buckets"])

    bulk = run_cli_json("metrics", "--since", "15m", "--queue", "bulk_messages")
    assert sum(b["sent"] for b in bulk["buckets"]) == 119
    assert sum(b["jobs"] for b in bulk["buckets"]) == total["jobs"]
    assert any(b["runtime_max_ms"] > 0 for b in bulk["buckets"])
    per_campaign = run_cli_json("metrics", "--since", "1h", "--campaign",
                                str(result["campaign"]))
    assert per_campaign["step_s"] == 10
    assert sum(b["sent"] for b in per_campaign["buckets"]) == 119

    status = run_cli_json("status")
    assert status["status"] == "active"
    assert status["sent_last_hour"] == 119
    assert status["failed_last_7_days"] == 1
    assert status["success_rate_last_hour"] == round(119 / 120, 4)
    assert status["provider_ms_last_hour"] > 0
    assert status["processes"] == 2
    assert status["breakers"]["sandbox"] == "closed"
    assert status["redis_memory_bytes"] > 0
    workload = {w["queue"]: w for w in status["workload"]}
    assert workload["bulk_messages"]["processes"] == 2
    assert workload["bulk_messages"]["waiting"] == 0
    assert status["campaigns"] == []  # finished campaigns are not "running"
    text = run_cli("status").stdout
    assert "sent, last hour" in text
    assert "119" in text
    assert "delivered, last hour" in text
    assert "reports waiting" in text
