"""Retention end to end: `relaydesk supervise` (real workers, the receiver, the sandbox
gateway posting delivery reports) sends a campaign; a failed job is retried and delivered,
another forgotten, another left for review; then `relaydesk db prune --archive` removes
exactly the settled messages, the campaign's totals read the same, the archive holds every
removed row once, and `relaydesk db vacuum` gives the space back (SQLite) or leaves it to
autovacuum (PostgreSQL)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from engine.config.settings import Settings, load_settings
from engine.infra.local_gateway import LocalGateway
from engine.store.campaign_browser import campaign_page
from engine.store.db import open_database
from engine.store.models import FailedJob, OutgoingMessage
from engine.store.retention import count_prunable
from tests.support import run_cli, run_cli_json, wait_for, write_contacts

DELIVERED = [f"+2547210{i:02d}155" for i in range(5)]
UNDELIVERED = "+254700000006"  # the sandbox reports it undelivered
SILENT = "+254700000007"  # never reported: awaits its report, never pruned
OPTED_OUT = "+254700000008"  # the provider says it opted out: suppressed
TWICE = "+254700000002"  # fails twice: dead after 2 attempts, delivered when retried
FORGOTTEN = "+254700000001"  # invalid: dead, its failed job forgotten
FOR_REVIEW = "+254711110001"  # invalid: dead, its failed job waiting for review
PRUNED = {*DELIVERED, UNDELIVERED, OPTED_OUT, TWICE, FORGOTTEN}
KEPT = {SILENT, FOR_REVIEW}


def jq(archive: Path, program: str) -> list[Any]:
    """What the operator reads from the archive: ``gzip -dc FILE | jq -c PROGRAM``."""
    shown = subprocess.run(f"gzip -dc '{archive}' | jq -c '{program}'", shell=True,
                           capture_output=True, text=True, check=True)
    return [json.loads(line) for line in shown.stdout.splitlines()]


def failed_job_of(phone: str) -> int:
    with open_database(load_settings()).session() as session:
        return session.scalars(select(FailedJob.id).where(FailedJob.recipient == phone)
                               .order_by(FailedJob.id)).first() or 0


def test_a_sent_campaign_is_pruned_to_an_archive_with_its_totals_kept(
        db_settings: Settings, isolated_env: Path, tmp_path: Path, fast_pipeline: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYDESK_MAX_ATTEMPTS", "2")
    due = (date.today() + timedelta(days=20)).isoformat()
    phones = sorted(PRUNED | KEPT)
    rows = [(f"Member {i}", phone, "1000", "250", due, "") for i, phone in enumerate(phones)]
    imported = run_cli("contacts", "import", str(write_contacts(tmp_path / "c.csv", rows)))
    assert imported.returncode == 0, imported.stderr
    supervise = subprocess.Popen([sys.executable, "-m", "engine", "supervise", "--workers",
                                  "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(LocalGateway(isolated_env / "gateway").ping, timeout=90,
                 message="the supervised gateway")
        campaign = str(run_cli_json("campaign", "send", "--template", "Dear #name",
                                    "--wait")["campaign"])
        retried = run_cli_json("failed", "retry", str(failed_job_of(TWICE)))
        assert retried["retried"] == 1
        assert run_cli_json("failed", "forget", str(failed_job_of(FORGOTTEN))) == {
            "forgotten": 1}

        def settled() -> dict[str, Any] | None:
            status = run_cli_json("campaign", "status", campaign)
            done = (status["delivered"], status["undelivered"], status["dead"],
                    status["pending"] + status["retrying"]) == (6, 1, 2, 0)
            return status if done else None

        before = wait_for(settled, timeout=90, message="the retry and the reports")
        assert before["awaiting_report"] == 1  # the silent one
        assert before["suppressed"] == 1
        db = open_database(load_settings())
        with db.session() as session:
            page_before = [(r.counts, r.delivery_counts) for r in campaign_page(session, 0, 5)]
        # Age counts from settling: wait until the last of them is a second old.
        wait_for(lambda: count_prunable(db, timedelta(seconds=1)).messages == len(PRUNED),
                 message="the messages to have settled a second ago")

        archive = tmp_path / "pruned.jsonl.gz"
        result = run_cli_json("db", "prune", "--older-than", "1s", "--archive", str(archive),
                              "--yes")

        assert {k: result[k] for k in ("messages", "failed_jobs", "archive")} == {
            "messages": len(PRUNED), "failed_jobs": 1, "archive": str(archive)}
        assert run_cli_json("campaign", "status", campaign) == before
        with db.session() as session:
            assert [(r.counts, r.delivery_counts)
                    for r in campaign_page(session, 0, 5)] == page_before
            left = set(session.scalars(select(OutgoingMessage.phone)))
        assert left == KEPT
        [waiting] = run_cli_json("failed", "list", "--campaign", campaign)
        assert waiting["message"] is not None  # still there for review, with its message

        messages = jq(archive, 'select(.type=="message") | {phone, delivery, '
                               'reports: [.delivery_reports[].status]}')
        assert sorted(m["phone"] for m in messages) == sorted(PRUNED)  # each once
        reported = {m["phone"]: m["reports"] for m in messages}
        assert all("delivered" in reported[p] for p in [*DELIVERED, TWICE])
        assert "undelivered" in reported[UNDELIVERED]
        assert jq(archive, 'select(.type=="failed_job") | .recipient') == [TWICE]
    finally:
        supervise.send_signal(signal.SIGTERM)
        assert supervise.wait(90) == 0

    vacuumed = run_cli_json("db", "vacuum", "--yes")
    assert vacuumed["vacuumed"] is (db_settings.database_url is None)  # SQLite only
