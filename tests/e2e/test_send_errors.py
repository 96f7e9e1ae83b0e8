"""Bad input to 'campaign send': one clear error, and no campaign left behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from engine.config.settings import load_settings
from engine.infra.embedded_redis import EmbeddedRedis, free_port
from engine.infra.sandbox_gateway import GatewayServer
from engine.store.db import open_database
from engine.store.models import Campaign, OutgoingMessage
from tests.support import run_cli, write_contacts


def nothing_created() -> bool:
    db = open_database(load_settings())
    with db.session() as session:
        return (session.scalar(select(func.count(Campaign.id))) == 0
                and session.scalar(select(func.count(OutgoingMessage.id))) == 0)


@pytest.fixture
def some_contacts(tmp_path: Path) -> None:
    path = write_contacts(tmp_path / "c.csv", [("Ann", "0712345678", "10", "0", "2027-01-01",
                                                "choir")])
    assert run_cli("contacts", "import", str(path)).returncode == 0


def send(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = run_cli("campaign", "send", *args, env=env)
    assert "Traceback" not in result.stderr
    return result.returncode, result.stderr


@pytest.mark.usefixtures("some_contacts")
def test_unknown_tag(embedded_redis: EmbeddedRedis, gateway: GatewayServer) -> None:
    code, err = send("--template", "Hi #nmae")
    assert code == 1
    assert 'unknown tag "#nmae"' in err
    assert 'did you mean "#name"' in err
    assert nothing_created()


@pytest.mark.usefixtures("some_contacts")
def test_no_recipients(embedded_redis: EmbeddedRedis, gateway: GatewayServer) -> None:
    code, err = send("--template", "Hi #name", "--tag", "nobody-has-this")
    assert code == 1
    assert "no recipients" in err
    assert nothing_created()


@pytest.mark.usefixtures("some_contacts")
def test_unreachable_redis(gateway: GatewayServer) -> None:
    url = f"redis://:pw-never-shown@127.0.0.1:{free_port()}/0"
    code, err = send("--template", "Hi #name", env={"RELAYDESK_REDIS_URL": url})
    assert code == 1
    assert "Redis is unreachable" in err
    assert "pw-never-shown" not in err
    assert nothing_created()


@pytest.mark.usefixtures("some_contacts")
def test_gateway_down(embedded_redis: EmbeddedRedis) -> None:
    code, err = send("--template", "Hi #name",
                     env={"RELAYDESK_SMS_GATEWAY_URL": f"http://127.0.0.1:{free_port()}"})
    assert code == 1
    assert "is not reachable" in err
    assert nothing_created()
