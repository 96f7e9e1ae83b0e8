"""`relaydesk db prune` and `relaydesk db vacuum` as an operator runs them: real processes,
a terminal to answer on or none, real files; SQLite and, when a server is given,
PostgreSQL."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from engine.config.settings import Settings
from engine.store.db import Database, open_database
from engine.store.models import (
    Campaign,
    CampaignStatus,
    FailedJob,
    MessageStatus,
    OutgoingMessage,
    utcnow,
)
from tests.support import RELAYDESK, run_cli, run_cli_json

SETTLED = 4  # what a prune --older-than 30d removes from the campaign below


def campaign_to_prune(db: Database) -> int:
    """A campaign with 4 messages settled 60 days ago and 3 that must stay: one delivered
    yesterday, one dead with its failed job waiting, one still queued."""
    now = utcnow()
    long_ago, yesterday = now - timedelta(days=60), now - timedelta(days=1)
    with db.session() as session:
        campaign = Campaign(name="Pledges", template="Hi", route="individual",
                            queue="messages", status=CampaignStatus.SENDING, recipients=7,
                            created_at=long_ago)
        session.add(campaign)
        session.flush()

        def message(i: int, status: MessageStatus, at: object, **columns: object) -> int:
            row = OutgoingMessage(campaign_id=campaign.id, phone=f"+2547130000{i}5",
                                  body="Hi", encoding="GSM-7", segments=1, status=status,
                                  attempts=1, created_at=long_ago, updated_at=at, **columns)
            session.add(row)
            session.flush()
            return row.id

        for i in range(3):
            message(i, MessageStatus.SENT, long_ago, sent_at=long_ago, delivery="delivered",
                    delivery_at=long_ago)
        message(3, MessageStatus.CANCELLED, long_ago)
        message(4, MessageStatus.SENT, yesterday, sent_at=long_ago, delivery="undelivered",
                delivery_at=yesterday)
        dead = message(5, MessageStatus.DEAD, long_ago)
        session.add(FailedJob(message_id=dead, campaign_id=campaign.id,
                              recipient="+254713000055", queue="messages", task_name="send",
                              payload="{}", attempts=3, exception_type="Timeout",
                              first_error="t", last_error="t", failed_at=long_ago))
        message(6, MessageStatus.QUEUED, long_ago)
        return campaign.id


def messages(db: Database) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(OutgoingMessage)) or 0


def relaydesk(*args: str, answer: str | None = None) -> subprocess.CompletedProcess[str]:
    """The command with no terminal (stdin from /dev/null, as from cron or a script), or,
    with ``answer``, on a terminal where the operator types it."""
    if answer is None:
        return subprocess.run([RELAYDESK, *args], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=300, check=False)
    controller, terminal = os.openpty()
    try:
        process = subprocess.Popen([RELAYDESK, *args], stdin=terminal, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        os.close(terminal)
        os.write(controller, answer.encode())
        out, err = process.communicate(timeout=300)
    finally:
        os.close(controller)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def test_prune_with_yes_archives_and_keeps_the_campaigns_totals(
        db: Database, tmp_path: Path) -> None:
    campaign = str(campaign_to_prune(db))
    before = run_cli_json("campaign", "status", campaign)
    archive = tmp_path / "pruned.jsonl.gz"

    done = relaydesk("db", "prune", "--older-than", "30d", "--archive", str(archive),
                     "--yes", "--json")

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert {k: result[k] for k in ("messages", "failed_jobs", "archive")} == {
        "messages": SETTLED, "failed_jobs": 0, "archive": str(archive)}
    assert messages(db) == 7 - SETTLED
    assert run_cli_json("campaign", "status", campaign) == before
    with gzip.open(archive, "rt") as lines:
        assert sum(json.loads(line)["type"] == "message" for line in lines) == SETTLED
    shown = run_cli("campaign", "status", campaign)
    assert f"pruned        {SETTLED} settled message(s) removed" in shown.stdout

    again = relaydesk("db", "prune", "--older-than", "30d", "--yes")
    assert again.returncode == 0
    assert "nothing removed" in again.stdout


def test_prune_asks_on_a_terminal_and_refuses_without_one(db: Database) -> None:
    campaign_to_prune(db)

    unattended = relaydesk("db", "prune", "--older-than", "30d")
    assert unattended.returncode == 1
    assert "pass --yes" in unattended.stderr
    assert f"{SETTLED} message(s)" in unattended.stderr  # it says what it would remove
    assert messages(db) == 7

    declined = relaydesk("db", "prune", "--older-than", "30d", answer="n\n")
    assert declined.returncode == 1
    assert "Remove them?" in declined.stderr
    assert "nothing was changed" in declined.stderr
    assert messages(db) == 7

    accepted = relaydesk("db", "prune", "--older-than", "30d", answer="y\n")
    assert accepted.returncode == 0, accepted.stderr
    assert accepted.stdout.startswith(f"Removed {SETTLED} message(s)")
    assert messages(db) == 7 - SETTLED


@pytest.mark.parametrize("duration", ["30x", "-5d", "soon", "0"])
def test_prune_refuses_a_bad_duration(duration: str, settings: Settings) -> None:
    result = relaydesk("db", "prune", "--older-than", duration, "--yes")
    assert result.returncode == 2
    assert "--older-than" in result.stderr
    assert "e.g." in result.stderr  # says how to write one
    assert "Traceback" not in result.stderr


def test_prune_never_overwrites_an_archive(db: Database, tmp_path: Path) -> None:
    campaign_to_prune(db)
    archive = tmp_path / "last-month.jsonl.gz"
    archive.write_bytes(b"kept")
    result = relaydesk("db", "prune", "--older-than", "30d", "--archive", str(archive),
                       "--yes")
    assert result.returncode == 1
    assert "already exists" in result.stderr
    assert "Traceback" not in result.stderr
    assert archive.read_bytes() == b"kept"
    assert messages(db) == 7


def test_vacuum_on_sqlite_says_it_locks_and_gives_the_space_back(settings: Settings) -> None:
    db = open_database(settings)
    campaign_to_prune(db)
    with db.engine.connect() as connection:  # as a database from before: no auto-vacuum
        connection.exec_driver_sql("PRAGMA auto_vacuum=NONE")
        connection.exec_driver_sql("VACUUM")

    unattended = relaydesk("db", "vacuum")
    assert unattended.returncode == 1
    assert "locks the database" in unattended.stderr
    assert "nothing is sending" in unattended.stderr
    assert "pass --yes" in unattended.stderr

    done = relaydesk("db", "vacuum", "--yes", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["vacuumed"] is True
    assert result["auto_vacuum"] == "incremental"
    assert result["after_bytes"] == (settings.sqlite_path.stat().st_size)
    with db.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA auto_vacuum").scalar() == 2
    assert messages(db) == 7  # nothing deleted


@pytest.mark.postgres
def test_vacuum_on_postgresql_leaves_it_to_autovacuum(postgres_url: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYDESK_DATABASE_URL", postgres_url)
    result = relaydesk("db", "vacuum")  # nothing to ask: nothing is done
    assert result.returncode == 0, result.stderr
    assert "autovacuum" in result.stdout
    assert "does nothing" in result.stdout
