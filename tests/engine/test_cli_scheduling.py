"""``relaydesk campaign list / status / reschedule / send-now / cancel`` on scheduled
campaigns, as an operator runs them: real processes, times shown and read in the zone each
campaign recorded."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from engine.config.settings import load_settings
from engine.infra.sandbox_gateway import GatewayServer
from engine.operations.campaigns import create_campaign
from engine.pipeline.campaign_start import start_due_campaigns
from engine.store.db import open_database
from tests.support import run_cli, run_cli_json, write_contacts

NAIROBI = {"RELAYDESK_TIMEZONE": "Africa/Nairobi"}


def refused(*args: str) -> str:
    result = run_cli("campaign", *args)
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr
    return result.stderr


def test_scheduled_campaigns_from_the_command_line(tmp_path: Path, redis_client: Any,
                                                   gateway: GatewayServer) -> None:
    due = (date.today() + timedelta(days=30)).isoformat()
    write_contacts(tmp_path / "c.csv", [(f"M{i}", f"0713{i:04d}55", "1000", "0", due, "")
                                        for i in range(3)])
    assert run_cli("contacts", "import", str(tmp_path / "c.csv")).returncode == 0

    # Scheduled in Nairobi's time by an operator whose zone that is.
    later = run_cli_json("campaign", "send", "--template", "Hi #name", "--at",
                         "2099-03-05 09:00", env=NAIROBI)
    # One missed: its time passed by more than RELAYDESK_SCHEDULE_MAX_LATE with no worker.
    settings = load_settings()
    db = open_database(settings)
    yesterday = datetime.now(UTC) - timedelta(days=1)
    missed = create_campaign(db, settings, "Hi #name", at=yesterday, name="Thursday reminder",
                             now=yesterday - timedelta(hours=1)).id
    assert start_due_campaigns(db, redis_client, settings) == []

    looks = [("list", "--status", "scheduled", "--json"), ("list",),
             ("status", str(missed)), ("status", str(later["campaign"])),
             ("preview", "--campaign", str(later["campaign"]), "--json")]
    with ThreadPoolExecutor(len(looks)) as pool:  # independent processes: run together
        as_json, table, missed_status, later_status, preview = [
            r.stdout for r in pool.map(lambda a: run_cli("campaign", *a), looks)]
    # Its messages as they will go out: the figures of its own send day.
    assert json.loads(preview)["send_day"] == "2099-03-05"
    assert json.loads(preview)["messages"][0]["text"] == "Hi M0"
    listed = {c["campaign"]: c for c in json.loads(as_json)}
    assert set(listed) == {later["campaign"], missed}
    assert (listed[missed]["missed"], listed[later["campaign"]]["missed"]) == (True, False)
    assert listed[later["campaign"]]["scheduled_at"] == "2099-03-05T06:00:00+00:00"
    assert "2099-03-05 09:00 Africa/Nairobi" in table
    assert "MISSED" in table
    assert "Thursday reminder" in table
    assert "missed        yes: 'relaydesk campaign send-now" in missed_status
    assert "scheduled_at  2099-03-05 09:00 Africa/Nairobi (2099-03-05T06:00:00+00:00)" in \
        later_status

    # WHEN is read in the campaign's zone, whatever the operator's is now (UTC here).
    moved = run_cli_json("campaign", "reschedule", str(later["campaign"]), "--at",
                         "2099-03-06 10:00")
    assert moved["scheduled_at"] == "2099-03-06T07:00:00+00:00"
    with ThreadPoolExecutor(2) as pool:
        past, pause = pool.map(lambda a: refused(*a), [
            ("reschedule", str(missed), "--at", "2001-01-01 10:00"), ("pause", str(missed))])
    assert "already past" in past
    assert f"cannot pause campaign {missed}: it is scheduled" in pause
    assert f"'relaydesk campaign send-now {missed}' starts it at once" in pause

    rescheduled = run_cli_json("campaign", "reschedule", str(missed), "--at",
                               "2099-01-01T10:00+00:00")
    assert (rescheduled["missed"], rescheduled["pause_reason"]) == (False, None)

    started = run_cli_json("campaign", "send-now", str(missed))
    assert (started["status"], started["recipients"], started["pending"]) == ("sending", 3, 3)
    assert "it is sending" in refused("send-now", str(missed))

    cancelled = run_cli_json("campaign", "cancel", str(later["campaign"]))
    assert (cancelled["status"], cancelled["sent"]) == ("cancelled", 0)
    assert json.loads(run_cli("campaign", "list", "--status", "scheduled",
                              "--json").stdout) == []
