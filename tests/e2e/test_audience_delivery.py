"""A filtered campaign through real Redis, real worker processes and the sandbox gateway:
exactly the contacts the filter selects are messaged, once each, and the campaign keeps the
filter it was sent with."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from engine.config.settings import load_settings
from engine.domain.audience import Audience
from engine.infra.sandbox_gateway import GatewayServer
from engine.store.db import open_database
from engine.store.models import Campaign, OptOut, OptSource
from tests.conftest import Workers
from tests.support import http_json, run_cli, run_cli_json, write_contacts

TEMPLATE = "Dear #name, #balance remains, #days_remain days to go."
TAG_SETS = ["choir", "youth", "choir;elders", "Youth;building", "", "building"]
OPTED_OUT = {3, 30}  # matched by the filter (see expected()), then opted out
OPTED_OUT_UNMATCHED = 4  # opted out too, but the filter leaves it out anyway: not counted


def phone(i: int) -> str:
    return f"+25472{i:05d}55"  # never ends like a sandbox test number


def rows(now: datetime) -> list[tuple[str, str, str, str, str, str]]:
    """Contact i: every 4th paid up, due from 2 days ago to 9 days ahead, tags cycling."""
    return [(f"Member {i}", "0" + phone(i)[4:], "1000", "1000" if i % 4 == 0 else "250",
             (now.date() + timedelta(days=i % 12 - 2)).isoformat(), TAG_SETS[i % 6])
            for i in range(72)]


def expected(i: int) -> bool:
    """The filter below, written out: choir or youth, not elders, owing, due 0-7 days."""
    tags = set(TAG_SETS[i % 6].lower().split(";"))
    return bool(tags & {"choir", "youth"}) and "elders" not in tags and i % 4 != 0 \
        and 0 <= i % 12 - 2 <= 7


def test_a_filtered_campaign_reaches_exactly_the_filtered_contacts(
        tmp_path: Path, gateway: GatewayServer, workers: Workers) -> None:
    now = datetime.now(UTC)  # the CLI's today is now in RELAYDESK_TIMEZONE (UTC)
    contacts = tmp_path / "contacts.csv"
    assert run_cli("contacts", "import", str(write_contacts(contacts, rows(now)))).returncode == 0
    assert all(expected(i) for i in OPTED_OUT)
    assert not expected(OPTED_OUT_UNMATCHED)
    with open_database(load_settings()).session() as session:
        session.add_all([OptOut(phone=phone(i), reason="asked", source=OptSource.MANUAL)
                         for i in OPTED_OUT | {OPTED_OUT_UNMATCHED}])
    workers.start()

    result = run_cli_json("campaign", "send", "--template", TEMPLATE,
                          "--tag", "choir", "--tag", "youth", "--exclude-tag", "Elders",
                          "--owing", "--due-within", "7", "--wait")

    wanted = {phone(i): i for i in range(72) if expected(i) and i not in OPTED_OUT}
    assert len(wanted) == 22
    assert result["recipients"] == result["sent"] == len(wanted)
    assert (result["dead"], result["suppressed"]) == (0, len(OPTED_OUT))

    def received() -> dict[str, list[str]]:
        bodies: dict[str, list[str]] = {}
        for m in http_json(gateway.url + "/messages"):
            if m["campaign"] == str(result["campaign"]):
                bodies.setdefault(m["to"], []).append(m["body"])
        return bodies

    bodies = received()  # --wait returned: every message was accepted by the gateway
    assert set(bodies) == set(wanted)  # no one else, and none of the opted-out
    assert bodies == {p: [f"Dear Member {i}, 750 remains, {i % 12 - 2} days to go."]
                      for p, i in wanted.items()}  # once each, figures of today
    assert http_json(gateway.url + "/stats")["duplicates"] == 0

    status = run_cli_json("campaign", "status", str(result["campaign"]))
    assert status["audience"] == ("tagged choir or youth, not tagged elders, owing, "
                                  "due within 7 day(s)")
    assert status["suppressed"] == len(OPTED_OUT)
    with open_database(load_settings()).session() as session:
        stored = session.scalar(select(Campaign.audience).where(
            Campaign.id == result["campaign"]))
    assert Audience.from_json(stored) == Audience(
        tags=("choir", "youth"), exclude_tags=("elders",), owing=True, due_within_days=7)
