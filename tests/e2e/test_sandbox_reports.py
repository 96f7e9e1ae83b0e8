"""The demo out of the box: `relaydesk supervise` on the embedded defaults runs the receiver
and the sandbox gateway reporting to it, so a campaign ends with exact delivered and
undelivered counts from the gateway's reports (0006 undelivered, 0007 never reported), and
a reply posted to the gateway reaches the inbox, a STOP the opt-out list."""

from __future__ import annotations

import signal
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import urllib3

from engine.infra.local_gateway import LocalGateway
from engine.infra.local_receiver import LocalReceiver
from tests.support import run_cli, run_cli_json, wait_for, write_contacts

DELIVERED = ["+254720000155", "+254720000255"]
UNDELIVERED = "+254700000006"
SILENT = "+254700000007"


def test_a_sandbox_campaign_ends_with_its_reports_and_a_reply_stops_a_number(
        isolated_env: Path, tmp_path: Path, fast_pipeline: None) -> None:
    due = (date.today() + timedelta(days=20)).isoformat()
    phones = [*DELIVERED, UNDELIVERED, SILENT]
    rows = [(f"Member {i}", phone, "1000", "250", due, "") for i, phone in enumerate(phones)]
    imported = run_cli("contacts", "import", str(write_contacts(tmp_path / "c.csv", rows)))
    assert imported.returncode == 0, imported.stderr
    supervise = subprocess.Popen([sys.executable, "-m", "engine", "supervise", "--workers",
                                  "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        gateway = LocalGateway(isolated_env / "gateway")
        wait_for(gateway.ping, timeout=90, message="the supervised gateway")
        assert gateway.reports_url() == LocalReceiver(isolated_env / "receiver").url()
        campaign = run_cli_json("campaign", "send", "--template", "Dear #name", "--wait")
        campaign_id = str(campaign["campaign"])

        def delivery() -> dict[str, Any]:
            status = run_cli_json("campaign", "status", campaign_id)
            return {k: status[k] for k in ("sent", "delivered", "undelivered",
                                           "awaiting_report")}

        wait_for(lambda: delivery()["delivered"] == 2 and delivery()["undelivered"] == 1,
                 timeout=60, message="the delivery reports to be applied")
        assert delivery() == {"sent": 4, "delivered": 2, "undelivered": 1,
                              "awaiting_report": 1}  # 0007 never reports

        answer = urllib3.request("POST", f"{gateway.url()}/inbound",
                                 json={"from": DELIVERED[0], "text": " stop "}, timeout=10.0)
        assert answer.status == 202, answer.data
        inbox = wait_for(lambda: run_cli_json("inbox"), timeout=60, message="the reply")
        assert [(m["phone"], m["text"]) for m in inbox] == [(DELIVERED[0], " stop ")]
        optouts = wait_for(lambda: run_cli_json("optouts", "list"), timeout=60,
                           message="the opt-out")
        assert [(o["phone"], o["source"]) for o in optouts] == [(DELIVERED[0], "reply")]
    finally:
        supervise.send_signal(signal.SIGTERM)
        assert supervise.wait(90) == 0
