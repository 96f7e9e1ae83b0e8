"""Whole campaigns through real Redis, real worker processes and the sandbox gateway."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from engine.infra.sandbox_gateway import GatewayServer
from tests.conftest import Workers
from tests.support import http_json, run_cli, run_cli_json, wait_for, write_contacts

# The sandbox's deterministic test numbers (see engine/infra/sandbox_gateway.py).
PERMANENT, TWICE_TRANSIENT, ALWAYS_TRANSIENT = "0700000001", "0700000002", "0700000003"
TEMPLATE = "Dear #name, #balance of your #pledge pledge remains, #days_remain days to go."


def phone(prefix: str, i: int) -> str:
    return f"07{prefix}{i:04d}55"  # never ends like a sandbox test number


def contacts() -> list[tuple[str, str, str, str, str, str]]:
    """247 + 3 test numbers tagged bulk, 27 + the same 3 tagged few."""
    due = (date.today() + timedelta(days=20)).isoformat()
    rows = [(f"Bulk {i}", phone("10", i), "1000", "250", due, "bulk") for i in range(247)]
    rows += [(f"Few {i}", phone("20", i), "1000", "250", due, "few") for i in range(27)]
    rows += [("Perm", PERMANENT, "1", "0", due, "bulk;few"),
             ("Twice", TWICE_TRANSIENT, "1", "0", due, "bulk;few"),
             ("Always", ALWAYS_TRANSIENT, "1", "0", due, "bulk;few")]
    return rows


def delivered_by_phone(gateway: GatewayServer, campaign: int) -> dict[str, list[str]]:
    bodies: dict[str, list[str]] = {}
    for m in http_json(gateway.url + "/messages"):
        if m["campaign"] == str(campaign):
            bodies.setdefault(m["to"], []).append(m["body"])
    return bodies


def check_campaign(gateway: GatewayServer, result: dict[str, Any], tag: str, count: int,
                   prefix: str) -> None:
    campaign = result["campaign"]
    assert result["recipients"] == count
    assert (result["sent"], result["dead"]) == (count - 2, 2)
    bodies = delivered_by_phone(gateway, campaign)
    assert len(bodies) == count - 2  # every good recipient, and the twice-failing one
    assert all(len(b) == 1 for b in bodies.values()), "someone got a message twice"
    assert bodies["+254" + phone(prefix, 5)[1:]] == [
        f"Dear {tag.title()} 5, 750 of your 1,000 pledge remains, 20 days to go."]
    assert "+254700000002" in bodies
    failed = {j["recipient"][-2:]: j for j in run_cli_json("failed", "list", "--campaign",
                                                            str(campaign))}
    assert failed["01"]["attempts"] == 1
    assert failed["01"]["error_type"] == "invalid_number"
    assert failed["03"]["attempts"] == 3
    assert set(failed) == {"01", "03"}


def test_bulk_and_individual_campaigns(tmp_path: Path, gateway: GatewayServer,
                                       workers: Workers) -> None:
    write_contacts(tmp_path / "contacts.csv", contacts())
    assert run_cli("contacts", "import", str(tmp_path / "contacts.csv")).returncode == 0
    workers.start()

    bulk = run_cli_json("campaign", "send", "--tag", "bulk", "--template", TEMPLATE, "--wait")
    few = run_cli_json("campaign", "send", "--tag", "few", "--template", TEMPLATE, "--wait")
    check_campaign(gateway, bulk, "bulk", 250, "10")
    check_campaign(gateway, few, "few", 30, "20")
    assert run_cli_json("campaign", "status", str(bulk["campaign"]))["route"] == "bulk"
    assert run_cli_json("campaign", "status", str(few["campaign"]))["route"] == "individual"
    stats = http_json(gateway.url + "/stats")
    assert stats["duplicates"] == 0

    # Retrying from the dead-letter store: a fresh budget, history kept and linked.
    retried = run_cli_json("failed", "retry", "--all", "--campaign", str(few["campaign"]))
    assert retried == {"retried": 2, "skipped_opted_out": 0}

    def settled() -> Any:
        status = run_cli_json("campaign", "status", str(few["campaign"]))
        return status if status["status"] == "completed" else None

    status = wait_for(settled, message="the retried messages to die again")
    assert status["dead"] == 2
    history = run_cli_json("failed", "list", "--campaign", str(few["campaign"]), "--all")
    assert len(history) == 4
    new = [j for j in history if j["retried_at"] is None]
    old_ids = {j["id"] for j in history if j["retried_at"] is not None}
    assert {j["retry_of"] for j in new} == old_ids
    assert Counter(j["attempts"] for j in new) == Counter({1: 1, 3: 1})
    assert http_json(gateway.url + "/stats")["duplicates"] == 0
