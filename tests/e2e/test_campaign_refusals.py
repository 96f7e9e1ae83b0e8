"""An empty message or an over-long campaign name is refused by the engine, on the CLI and
through the console's send path alike, before anything is created: no campaign row, no
messages, nothing in Redis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from desktop.heavy_work import send as console_send
from engine.config.settings import load_settings
from engine.domain.audience import Audience
from engine.infra.embedded_redis import EmbeddedRedis
from engine.infra.sandbox_gateway import GatewayServer
from engine.operations.campaigns import (
    MAX_CAMPAIGN_NAME,
    CampaignError,
    create_campaign,
    send_campaign,
)
from engine.store.db import open_database
from engine.store.models import Campaign, OutgoingMessage
from tests.support import run_cli, write_contacts

LONG_NAME = "n" * (MAX_CAMPAIGN_NAME + 1)
REFUSALS = [("", None, "the message is empty"),
            (" \n\t ", None, "the message is empty"),
            ("Hi #name", LONG_NAME, f"the campaign name is {MAX_CAMPAIGN_NAME + 1} characters "
                                    f"long; at most {MAX_CAMPAIGN_NAME} fit")]


@pytest.fixture
def some_contacts(tmp_path: Path) -> None:
    path = write_contacts(tmp_path / "c.csv", [("Ann", "0712345678", "10", "0", "2027-01-01",
                                                "choir")])
    assert run_cli("contacts", "import", str(path)).returncode == 0


def nothing_created(client: Any) -> bool:
    db = open_database(load_settings())
    with db.session() as session:
        rows = (session.scalar(select(func.count(Campaign.id))),
                session.scalar(select(func.count(OutgoingMessage.id))))
    return rows == (0, 0) and client.dbsize() == 0


@pytest.mark.usefixtures("some_contacts")
@pytest.mark.parametrize(("template", "name", "reason"), REFUSALS)
def test_engine_and_console_refuse(redis_client: Any, template: str, name: str | None,
                                   reason: str) -> None:
    settings = load_settings()
    db = open_database(settings)
    with pytest.raises(CampaignError, match=reason):
        create_campaign(db, settings, template, name=name)
    with pytest.raises(CampaignError, match=reason):
        send_campaign(db, redis_client, settings, template, name=name)
    with pytest.raises(CampaignError, match=reason):  # what the Compose page runs
        console_send(settings, template, Audience(), False, name)
    assert nothing_created(redis_client)


@pytest.mark.usefixtures("some_contacts")
@pytest.mark.parametrize(("template", "name", "reason"), REFUSALS)
def test_cli_refuses(embedded_redis: EmbeddedRedis, gateway: GatewayServer, redis_client: Any,
                     template: str, name: str | None, reason: str) -> None:
    result = run_cli("campaign", "send", "--template", template,
                     *(["--name", name] if name else []))
    assert result.returncode == 1
    assert reason in result.stderr
    assert "nothing was created" in result.stderr
    assert "Traceback" not in result.stderr
    assert nothing_created(redis_client)


@pytest.mark.usefixtures("some_contacts")
def test_name_at_the_limit_and_blank_name_are_fine() -> None:
    settings = load_settings()
    db = open_database(settings)
    exact = create_campaign(db, settings, "Hi #name", name="x" * MAX_CAMPAIGN_NAME)
    blank = create_campaign(db, settings, "Hi #name", name="   ")
    with db.session() as session:
        names = dict(session.execute(select(Campaign.id, Campaign.name)).all())
    assert names[exact.id] == "x" * MAX_CAMPAIGN_NAME
    assert names[blank.id].startswith("Campaign ")
