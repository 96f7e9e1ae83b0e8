"""The ``relaydesk`` command as an operator runs it: a real process, real files."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest

from tests.support import run_cli as run


def write_contacts(path: Path, rows: list[str]) -> Path:
    path.write_text("Name,Phone,Pledge,Paid_Amount,Due_Date,Tags\n" + "\n".join(rows) + "\n",
                    encoding="utf-8")
    return path


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "explicit-data"


def test_import_json_and_exit_status(tmp_path: Path, data_dir: Path) -> None:
    csv_file = write_contacts(tmp_path / "c.csv", [
        "Amina,0722111222,20000,5000,2027-03-01,east",
        "Bad,not-a-phone,1,0,2027-03-01,",
    ])
    first = run("--data-dir", str(data_dir), "contacts", "import", str(csv_file), "--json")
    assert first.returncode == 1, first.stderr
    assert json.loads(first.stdout) == {
        "imported": 1, "updated": 0, "rejected_count": 1,
        "rejected": [{"line": 3, "reason": "bad phone: 'not-a-phone' is not a phone number"}],
        "rejected_not_listed": 0,
    }
    assert (data_dir / "relaydesk.db").exists()  # --data-dir holds the state

    good = write_contacts(tmp_path / "good.csv", ["Amina,0722111222,20000,6000,2027-03-01,"])
    second = run("--data-dir", str(data_dir), "contacts", "import", str(good), "--json")
    assert second.returncode == 0
    assert json.loads(second.stdout)["updated"] == 1

    listed = run("--data-dir", str(data_dir), "contacts", "list", "--json")
    [amina] = json.loads(listed.stdout)
    assert amina["paid_amount"] == "6000.00"
    assert amina["phone"] == "+254722111222"


def test_unreadable_file_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "notes.csv"
    bad.write_text("just some notes\n")
    result = run("contacts", "import", str(bad))
    assert result.returncode == 1
    assert "lacks required column(s)" in result.stderr
    assert "Traceback" not in result.stderr


def test_preview_json(tmp_path: Path, data_dir: Path) -> None:
    due = (date.today() + timedelta(days=10)).isoformat()
    rows = [f"Member {i},07{i:08d},1000,250.5,{due},{'youth' if i % 2 else 'elders'}"
            for i in range(12_000_000, 12_000_000 + 130)]
    run("--data-dir", str(data_dir), "contacts", "import",
        str(write_contacts(tmp_path / "many.csv", rows)))
    template = "Dear #name, #balance of #pledge remains, #days_remain days to go"
    result = run("--data-dir", str(data_dir), "campaign", "preview", "--template", template,
                 "--limit", "2", "--json")
    assert result.returncode == 0, result.stderr
    preview = json.loads(result.stdout)
    assert preview["messages"][0] == {
        "contact_id": 1, "recipient": "+254712000000",
        "text": "Dear Member 12000000, 749.50 of 1,000 remains, 10 days to go",
        "encoding": "GSM-7", "segments": 1, "characters": 60,
    }
    assert len(preview["messages"]) == 2
    assert preview["totals"] == {"recipients": 130, "suppressed": 0, "segments": 130,
                                 "unicode_extra_segments": 0, "unicode_extra_cost": "0.00"}
    assert preview["ucs2_characters"] == []
    assert preview["plan"] == {"route": "bulk", "queue": "bulk_messages", "jobs": 1,
                               "chunks": 3, "chunk_size": 50, "estimated_duration_s": 20.0}

    youth = run("--data-dir", str(data_dir), "campaign", "preview", "--template", template,
                "--tag", "youth", "--urgent", "--json")
    plan = json.loads(youth.stdout)["plan"]
    assert (plan["route"], plan["queue"], plan["jobs"]) == ("individual", "high_priority", 65)


def test_preview_errors(tmp_path: Path) -> None:
    result = run("campaign", "preview", "--template", "Hi #nmae")
    assert result.returncode == 1
    assert 'did you mean "#name"' in result.stderr
    empty = run("campaign", "preview", "--template", "Hi #name")
    assert empty.returncode == 1
    assert "no recipients" in empty.stderr


def test_settings_never_print_secrets() -> None:
    env = {"RELAYDESK_SENTRY_DSN": "https://0123456789abcdef0123@sentry.example/7",
           "RELAYDESK_REDIS_URL": "redis://:topsecretpw@127.0.0.1:6390/0"}
    result = run("settings", "--json", env=env)
    assert result.returncode == 0
    assert "topsecretpw" not in result.stdout
    assert "0123456789abcdef" not in result.stdout
    assert json.loads(result.stdout)["RELAYDESK_REDIS_URL"] == "redis://:****@127.0.0.1:6390/0"


def test_bad_setting_is_reported_plainly() -> None:
    result = run("settings", env={"RELAYDESK_RATE_LIMIT": "fast"})
    assert result.returncode == 1
    assert "RELAYDESK_RATE_LIMIT" in result.stderr
    assert "Traceback" not in result.stderr


def test_version_and_db_upgrade(data_dir: Path) -> None:
    from engine import __version__
    from engine.store.db import head_revision

    assert __version__ in run("--version").stdout
    upgraded = run("--data-dir", str(data_dir), "db", "upgrade")
    assert upgraded.returncode == 0
    assert f"revision {head_revision()}" in upgraded.stdout
