"""Retention in the store (engine.store.retention): what is settled and when, what is never
pruned, campaign totals before and after, the archive, batches beside a writer, and the
0005 migration; on SQLite and, when a server is given, PostgreSQL."""

from __future__ import annotations

import gzip
import json
import os
import stat
import subprocess
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import create_engine, func, inspect, select, text
from sqlalchemy.orm import Session

from engine.config.settings import Settings
from engine.domain.delivery import DeliveryStatus, Report, ReportKind
from engine.domain.sending import Outcome, SendResult
from engine.store.campaign_browser import campaign_page
from engine.store.campaign_state import campaign_summary, pruned_counts
from engine.store.db import (
    Database,
    _alembic_config,
    create_db_engine,
    database_url,
    head_revision,
    open_database,
)
from engine.store.dead_letters import forget_failed
from engine.store.delivery_reports import apply_reports, expire_overdue
from engine.store.delivery_state import claim, mark_sent
from engine.store.models import (
    Campaign,
    CampaignStatus,
    DeliveryAttempt,
    DeliveryReport,
    FailedJob,
    MessageStatus,
    OutgoingMessage,
    PrunedCount,
    utcnow,
)
from engine.store.retention import KINDS, PruneResult, count_prunable, prune
from engine.store.retention_archive import ArchiveError

NOW = datetime(2027, 6, 1, 12, 0, tzinfo=UTC)
KEEP = timedelta(days=30)  # the cutoff is 2027-05-02 12:00
OLD = NOW - timedelta(days=90)  # settled long before the cutoff
RECENT = NOW - timedelta(days=2)  # settled after it
CREATED = NOW - timedelta(days=400)  # every message was created before either
S = MessageStatus
D = DeliveryStatus


@dataclass(frozen=True)
class State:
    """One state a message can be in, with the failed jobs it has, and whether a prune at
    NOW keeping KEEP removes it."""

    name: str
    status: MessageStatus
    delivery: DeliveryStatus | None = None
    settled: datetime = OLD  # when it got into this state
    jobs: tuple[str, ...] = ()  # its failed jobs: "waiting" (retried_at NULL) or "retried"
    pruned: bool = False


STATES = [
    # Not settled, however old: never pruned.
    State("queued", S.QUEUED),
    State("sending", S.SENDING),
    State("failed, retry due", S.FAILED),
    State("sent, awaiting its report", S.SENT, D.AWAITING_REPORT),
    # Sent with a final delivery status: settled when that came.
    State("delivered", S.SENT, D.DELIVERED, pruned=True),
    State("undelivered", S.SENT, D.UNDELIVERED, pruned=True),
    State("expired", S.SENT, D.EXPIRED, pruned=True),
    State("delivered lately", S.SENT, D.DELIVERED, settled=RECENT),
    State("sent before delivery status", S.SENT, None, pruned=True),
    State("sent lately, before delivery status", S.SENT, None, settled=RECENT),
    State("cancelled", S.CANCELLED, pruned=True),
    State("cancelled lately", S.CANCELLED, settled=RECENT),
    State("suppressed", S.SUPPRESSED, pruned=True),
    # Dead: settled once no failed job waits for review.
    State("dead, its job waiting", S.DEAD, jobs=("waiting",)),
    State("dead again, its new job waiting", S.DEAD, jobs=("retried", "waiting")),
    State("dead, its job forgotten", S.DEAD, pruned=True),
    State("dead, its jobs retried or forgotten", S.DEAD, jobs=("retried",), pruned=True),
    State("dead lately, its job forgotten", S.DEAD, settled=RECENT),
    # Retried, then sent: the job goes with its message.
    State("delivered after a retry", S.SENT, D.DELIVERED, jobs=("retried",), pruned=True),
    State("delivered, a job still waiting", S.SENT, D.DELIVERED, jobs=("waiting",)),
]


def phone(i: int) -> str:
    return f"+2547123{i:04d}"


def add_campaign(session: Session, name: str = "Reminder") -> int:
    campaign = Campaign(name=name, template="Hi", route="individual", queue="messages",
                        status=CampaignStatus.COMPLETED, recipients=len(STATES),
                        created_at=CREATED)
    session.add(campaign)
    session.flush()
    return campaign.id


def add_job(session: Session, message_id: int | None, campaign_id: int, kind: str,
            at: datetime) -> int:
    job = FailedJob(message_id=message_id, campaign_id=campaign_id, recipient="+254700000001",
                    queue="messages", task_name="send", payload="{}", attempts=3,
                    exception_type="Timeout", first_error="t", last_error="t",
                    failed_at=at - timedelta(hours=1),
                    retried_at=at if kind == "retried" else None)
    session.add(job)
    session.flush()
    return job.id


def add_message(session: Session, campaign_id: int, number: str, state: State) -> int:
    """A message in ``state``, with its columns as the transitions into it write them, an
    attempt, a report when sent, and its failed jobs."""
    sent = state.status is S.SENT
    message = OutgoingMessage(
        campaign_id=campaign_id, phone=number, body=f"Hi {state.name}", encoding="GSM-7",
        segments=1, status=state.status, attempts=2, created_at=CREATED,
        updated_at=state.settled, delivery=state.delivery,
        sent_at=(OLD - timedelta(days=1) if state.delivery else state.settled) if sent
        else None,
        delivery_at=state.settled if state.delivery not in (None, D.AWAITING_REPORT) else None,
        provider="sandbox" if sent else None,
        provider_message_id=f"sbx-{number}" if sent else None)
    session.add(message)
    session.flush()
    session.add(DeliveryAttempt(message_id=message.id, attempt=1, at=CREATED, error="t"))
    if sent:
        session.add(DeliveryReport(receipt=f"r{message.id}", provider="sandbox",
                                   provider_message_id=f"sbx-{number}", message_id=message.id,
                                   status=state.delivery, provider_status="x",
                                   received_at=state.settled))
    for i, kind in enumerate(state.jobs):
        add_job(session, message.id, campaign_id, kind, state.settled - timedelta(hours=i))
    return message.id


def fill(db: Database, campaigns: int = 1) -> dict[int, State]:
    """Every state in each of ``campaigns`` campaigns; the messages' states by id."""
    made: dict[int, State] = {}
    with db.session() as session:
        for c in range(campaigns):
            campaign_id = add_campaign(session, f"Campaign {c}")
            for i, state in enumerate(STATES):
                made[add_message(session, campaign_id, phone(c * 100 + i), state)] = state
    return made


def orphan_jobs(db: Database) -> dict[int, bool]:
    """Failed jobs whose message is gone (deleted with its campaign): whether each goes."""
    with db.session() as session:
        campaign_id = add_campaign(session, "Orphans")
        return {add_job(session, None, campaign_id, "retried", OLD): True,
                add_job(session, None, campaign_id, "waiting", OLD): False,
                add_job(session, None, campaign_id, "retried", RECENT): False}


def table_ids(db: Database, model: Any) -> set[int]:
    with db.session() as session:
        return set(session.scalars(select(model.id)))


def test_only_settled_messages_and_resolved_jobs_go(db: Database) -> None:
    made = fill(db)
    orphans = orphan_jobs(db)
    jobs_before = table_ids(db, FailedJob)
    with db.session() as session:
        jobs_of = {m: set(session.scalars(select(FailedJob.id).where(FailedJob.message_id == m)))
                   for m in made}
    expected = count_prunable(db, KEEP, now=NOW)

    result = prune(db, KEEP, now=NOW, batch=2)  # many batches: every kind, keyset passes

    kept = {state.name for state in made.values() if not state.pruned}
    with db.session() as session:
        left = {made[m].name for m in session.scalars(select(OutgoingMessage.id))}
    assert left == kept
    gone_messages = [m for m, state in made.items() if state.pruned]
    gone_jobs = {j for m in gone_messages for j in jobs_of[m]} | {
        j for j, goes in orphans.items() if goes}
    assert table_ids(db, FailedJob) == jobs_before - gone_jobs
    # Reports and attempts went with their messages, and only those.
    with db.session() as session:
        assert set(session.scalars(select(DeliveryAttempt.message_id))) == set(made) - set(
            gone_messages)
        assert not set(session.scalars(select(DeliveryReport.message_id))) & set(gone_messages)
    assert (result.messages, result.failed_jobs) == (len(gone_messages), len(gone_jobs))
    assert (expected.messages, expected.failed_jobs) == (result.messages, result.failed_jobs)
    assert result.delivery_attempts == len(gone_messages)
    assert result.delivery_reports == sum(made[m].status is S.SENT for m in gone_messages)
    assert result.archive is None

    # Nothing left to prune: a second run removes nothing.
    again = prune(db, KEEP, now=NOW)
    assert (again.messages, again.failed_jobs, again.batches) == (0, 0, 0)


def test_campaign_totals_read_the_same_after_their_messages_are_pruned(db: Database) -> None:
    fill(db, campaigns=2)
    with db.session() as session:
        ids = list(session.scalars(select(Campaign.id).order_by(Campaign.id)))
        before = [campaign_summary(session, i, now=NOW) for i in ids]
        page_before = [(r.counts, r.delivery_counts) for r in campaign_page(session, 0, 10)]

    first = prune(db, KEEP, now=NOW, batch=3)
    # Later, the ones that settled lately go too: their counts add to the first ones'.
    second = prune(db, KEEP, now=NOW + timedelta(days=60), batch=3)
    settled = [s for s in STATES if s.pruned or s.settled == RECENT]
    assert first.messages == 2 * sum(s.pruned for s in STATES)
    assert second.messages == 2 * (len(settled) - sum(s.pruned for s in STATES))

    with db.session() as session:
        after = [campaign_summary(session, i, now=NOW) for i in ids]
        page_after = [(r.counts, r.delivery_counts) for r in campaign_page(session, 0, 10)]
        pruned = pruned_counts(session, ids[0])
        assert [r.pruned for r in campaign_page(session, 0, 10)] == [len(settled)] * 2
        assert session.scalar(select(func.count()).select_from(OutgoingMessage)) == 2 * (
            len(STATES) - len(settled))
    assert after == before
    assert page_after == page_before
    assert before[0]["delivered"] == 4  # not a vacuous check
    assert before[0]["dead"] == 5
    assert pruned["messages"] == len(settled)
    assert pruned["undelivered"] == 1  # what "send again to the undelivered" no longer finds


def read_archive(path: Path) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def test_the_archive_holds_every_pruned_row_once_and_is_readable_with_jq(
        db: Database, tmp_path: Path) -> None:
    made = fill(db)
    orphans = orphan_jobs(db)
    messages_before = table_ids(db, OutgoingMessage)
    jobs_before = table_ids(db, FailedJob)
    reports_before = table_ids(db, DeliveryReport)
    archive = tmp_path / "archive" / "pruned.jsonl.gz"

    result = prune(db, KEEP, now=NOW, archive=archive, batch=4)

    assert result.archive == archive
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600  # phone numbers and texts
    lines = read_archive(archive)
    header, records = lines[0], lines[1:]
    assert header == {"type": "prune", "format": 1, "created_at": NOW.isoformat(),
                      "cutoff": (NOW - KEEP).isoformat(), "older_than_s": 30 * 86400}
    kinds = Counter(r["type"] for r in records)
    assert kinds == {"message": result.messages, "failed_job": result.failed_jobs}
    messages = [r for r in records if r["type"] == "message"]
    archived_ids = [m["id"] for m in messages]
    assert sorted(archived_ids) == sorted(messages_before - table_ids(db, OutgoingMessage))
    assert len(set(archived_ids)) == len(archived_ids)
    job_ids = [r["id"] for r in records if r["type"] == "failed_job"]
    assert sorted(job_ids) == sorted(jobs_before - table_ids(db, FailedJob))
    assert set(job_ids) >= {j for j, goes in orphans.items() if goes}
    report_ids = [r["id"] for m in messages for r in m["delivery_reports"]]
    assert sorted(report_ids) == sorted(reports_before - table_ids(db, DeliveryReport))
    # A message line is the whole row, its attempts and reports inside it.
    delivered = next(m for m in messages if made[m["id"]].name == "delivered")
    assert delivered["phone"].startswith("+2547123")
    assert delivered["body"] == "Hi delivered"
    assert delivered["delivery"] == "delivered"
    assert delivered["delivery_at"] == OLD.isoformat()
    assert [a["attempt"] for a in delivered["delivery_attempts"]] == [1]
    assert [r["status"] for r in delivered["delivery_reports"]] == ["delivered"]

    # The operator's way to read it.
    shown = subprocess.run(f"gzip -dc '{archive}' | jq -c 'select(.type==\"message\") | .id'",
                           shell=True, capture_output=True, text=True, check=True)
    assert sorted(int(x) for x in shown.stdout.split()) == sorted(archived_ids)


def test_an_existing_archive_is_never_overwritten_and_nothing_is_pruned(
        db: Database, tmp_path: Path) -> None:
    fill(db)
    archive = tmp_path / "taken.jsonl.gz"
    archive.write_bytes(b"earlier")
    before = table_ids(db, OutgoingMessage)
    with pytest.raises(ArchiveError, match="already exists"):
        prune(db, KEEP, now=NOW, archive=archive)
    assert archive.read_bytes() == b"earlier"
    assert table_ids(db, OutgoingMessage) == before


def test_a_prune_stopped_between_batches_archived_exactly_what_it_deleted(
        db: Database, tmp_path: Path) -> None:
    fill(db)
    before = table_ids(db, OutgoingMessage)
    archive = tmp_path / "stopped.jsonl.gz"

    def stop_after_two(result: PruneResult) -> bool:
        if result.batches == 2:
            raise RuntimeError("the worker is going away")
        return True

    with pytest.raises(RuntimeError):
        prune(db, KEEP, now=NOW, archive=archive, batch=2, on_batch=stop_after_two)
    deleted = before - table_ids(db, OutgoingMessage)
    assert 0 < len(deleted) < sum(s.pruned for s in STATES)  # two batches' worth
    archived = [r["id"] for r in read_archive(archive)[1:] if r["type"] == "message"]
    assert sorted(archived) == sorted(deleted)


def report(provider_id: str, status: DeliveryStatus, at: datetime) -> Report:
    return Report(ReportKind.STATUS, "sandbox", message_id=provider_id, status=status,
                  provider_status=str(status), received_at=at.timestamp())


def test_age_counts_from_when_a_message_settled_not_when_it_was_created(
        db: Database) -> None:
    """Through the real transitions: a report, the expiry sweep, forgetting a failed job."""
    now = utcnow()
    long_ago = now - timedelta(days=200)
    with db.session() as session:
        campaign_id = add_campaign(session)
        ids = []
        for i in range(4):
            message = OutgoingMessage(campaign_id=campaign_id, phone=phone(i), body="Hi",
                                      encoding="GSM-7", segments=1, created_at=long_ago,
                                      updated_at=long_ago)
            session.add(message)
            session.flush()
            ids.append(message.id)
        late_report, old_report, expiring, forgotten = ids
    for message_id in (late_report, old_report, expiring):  # all sent 200 days ago
        with db.session() as session:
            assert claim(session, message_id, [S.QUEUED], "messages", now=long_ago)
            mark_sent(session, message_id, SendResult(Outcome.SENT,
                                                      provider_message_id=f"p{message_id}"),
                      provider="sandbox", now=long_ago)
    with db.session() as session:
        apply_reports(session, [report(f"p{late_report}", D.DELIVERED, now),
                                report(f"p{old_report}", D.DELIVERED,
                                       long_ago + timedelta(hours=1))],
                      optout_keywords=("STOP",), optin_keywords=("START",))
        # The expiry sweep ran 100 days ago for the one never reported.
        assert expire_overdue(session, 48 * 3600, now=now - timedelta(days=100)) == 1
        session.execute(OutgoingMessage.__table__.update()
                        .where(OutgoingMessage.id == forgotten)
                        .values(status=S.DEAD, updated_at=long_ago))
        job = add_job(session, forgotten, campaign_id, "waiting", long_ago)
    with db.session() as session:  # dead 200 days ago, its record forgotten now
        assert forget_failed(session, [job]) == 1

    def left_after(days: int) -> set[int]:
        prune(db, timedelta(days=30), now=now + timedelta(days=days))
        return table_ids(db, OutgoingMessage)

    assert left_after(0) == {late_report, forgotten}  # the two that settled just now
    assert left_after(29) == {late_report, forgotten}
    assert left_after(31) == set()


def test_sending_goes_on_while_a_prune_runs_in_batches(db: Database) -> None:
    """A writer claiming and sending messages beside a prune of thousands: both finish,
    neither fails on the other's lock."""
    with db.session() as session:
        campaign_id = add_campaign(session)
        session.execute(OutgoingMessage.__table__.insert(), [
            {"campaign_id": campaign_id, "phone": phone(i), "body": "Hi", "encoding": "GSM-7",
             "segments": 1, "status": S.SENT, "attempts": 1,
             "delivery": D.DELIVERED, "sent_at": OLD, "delivery_at": OLD,
             "created_at": CREATED, "updated_at": OLD} for i in range(3000)])
        fresh = add_campaign(session, "Sending now")
        session.execute(OutgoingMessage.__table__.insert(), [
            {"campaign_id": fresh, "phone": phone(5000 + i), "body": "Hi",
             "encoding": "GSM-7", "segments": 1, "status": S.QUEUED, "attempts": 0,
             "created_at": CREATED, "updated_at": CREATED} for i in range(150)])
        queued = list(session.scalars(select(OutgoingMessage.id)
                                      .where(OutgoingMessage.campaign_id == fresh)))
    errors: list[BaseException] = []
    done: list[PruneResult] = []

    def pruning() -> None:
        try:
            done.append(prune(db, KEEP, now=NOW, batch=100))
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=pruning)
    thread.start()
    for message_id in queued:
        with db.session() as session:
            assert claim(session, message_id, [S.QUEUED], "messages") is not None
        with db.session() as session:
            mark_sent(session, message_id, SendResult(Outcome.SENT, provider_message_id="x"),
                      provider="sandbox")
    thread.join()
    assert errors == []
    assert done[0].messages == 3000
    assert done[0].batches == 30
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(OutgoingMessage)
                              .where(OutgoingMessage.status == S.SENT)) == 150


def test_sqlite_finds_the_settled_messages_through_their_partial_indexes(
        settings: Settings) -> None:
    db = open_database(settings)
    expected = {"sent, delivered": "ix_outgoing_messages_reported_at",
                "sent before delivery status": "ix_outgoing_messages_sent_unreported",
                "dead": "ix_outgoing_messages_ended_at"}
    with db.engine.connect() as connection:
        for kind in KINDS:
            stmt = (select(OutgoingMessage.id).where(kind.condition(), kind.settled_at < NOW)
                    .order_by(kind.settled_at, OutgoingMessage.id).limit(10))
            sql = str(stmt.compile(db.engine, compile_kwargs={"literal_binds": True}))
            plan = " ".join(row[3] for row in connection.exec_driver_sql(
                f"EXPLAIN QUERY PLAN {sql}"))
            index = expected.get(kind.name, "ix_outgoing_messages_reported_at"
                                 if kind.name.startswith("sent") else
                                 "ix_outgoing_messages_ended_at")
            assert f"USING INDEX {index}" in plan or f"COVERING INDEX {index}" in plan, plan
            assert "TEMP B-TREE" not in plan, plan  # no sort of everything settled


def test_migration_0005_upgrades_a_0004_database_keeping_its_messages(
        db_settings: Settings) -> None:
    engine = create_db_engine(database_url(db_settings))
    with engine.begin() as connection:
        command.upgrade(_alembic_config(connection), "0004")
        connection.execute(text(
            "INSERT INTO campaigns (id, name, template, timezone, suppressed, urgent, status, "
            "route, queue, recipients, segments, created_at) VALUES (1, 'Old', 'Hi', 'UTC', "
            "0, false, 'completed', 'individual', 'messages', 2, 2, :at)"),
            {"at": CREATED.replace(tzinfo=None)})
        connection.execute(text(
            "INSERT INTO outgoing_messages (campaign_id, phone, body, encoding, segments, "
            "status, attempts, created_at, updated_at, sent_at, delivery, delivery_at, "
            "report_polls, opt_out_notice) VALUES "
            "(1, '+254712000001', 'Hi', 'GSM-7', 1, 'sent', 1, :at, :at, :at, 'delivered', "
            ":at, 0, false), "
            "(1, '+254712000002', 'Hi', 'GSM-7', 1, 'sent', 1, :at, :at, :at, NULL, NULL, 0, "
            "false)"), {"at": OLD.replace(tzinfo=None)})
    engine.dispose()

    db = open_database(db_settings)  # migrates to the head, as every process does
    with db.engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")
                                  ).scalar() == head_revision()
    inspector = inspect(db.engine)
    assert "campaign_pruned_counts" in inspector.get_table_names()
    names = {ix["name"] for ix in inspector.get_indexes("outgoing_messages")}
    assert {"ix_outgoing_messages_ended_at", "ix_outgoing_messages_reported_at"} <= names
    with db.session() as session:
        before = campaign_summary(session, 1, now=NOW)
    assert prune(db, KEEP, now=NOW).messages == 2  # the one from before 0004 too
    with db.session() as session:
        assert campaign_summary(session, 1, now=NOW) == before
        assert session.scalar(select(func.sum(PrunedCount.messages))) == 2


def test_a_new_sqlite_database_is_incremental_and_a_prune_gives_its_space_back(
        settings: Settings) -> None:
    db = open_database(settings)
    with db.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA auto_vacuum").scalar() == 2
    big = "x" * 600
    with db.session() as session:
        campaign_id = add_campaign(session)
        session.execute(OutgoingMessage.__table__.insert(), [
            {"campaign_id": campaign_id, "phone": phone(i), "body": big, "encoding": "GSM-7",
             "segments": 4, "status": S.CANCELLED, "attempts": 0, "created_at": CREATED,
             "updated_at": OLD} for i in range(3000)])
    pages = page_counts(db)
    assert prune(db, KEEP, now=NOW).messages == 3000
    after = page_counts(db)
    assert after["freelist_count"] == 0
    assert after["page_count"] < pages["page_count"] / 2


def page_counts(db: Database) -> dict[str, int]:
    with db.engine.connect() as connection:
        return {name: int(connection.exec_driver_sql(f"PRAGMA {name}").scalar() or 0)
                for name in ("page_count", "freelist_count", "auto_vacuum")}


def test_vacuum_converts_an_older_sqlite_database_and_frees_its_pages(
        settings: Settings) -> None:
    from engine.store.db import upgrade
    from engine.store.vacuum import sqlite_space, vacuum

    # A database made before incremental auto-vacuum: created without it.
    settings.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    plain = create_engine(f"sqlite:///{settings.sqlite_path}")
    upgrade(plain)
    plain.dispose()
    db = open_database(settings)
    assert page_counts(db)["auto_vacuum"] == 0
    with db.session() as session:
        campaign_id = add_campaign(session)
        session.execute(OutgoingMessage.__table__.insert(), [
            {"campaign_id": campaign_id, "phone": phone(i), "body": "y" * 600,
             "encoding": "GSM-7", "segments": 4, "status": S.SUPPRESSED, "attempts": 0,
             "created_at": CREATED, "updated_at": OLD} for i in range(3000)])
    prune(db, KEEP, now=NOW)
    pruned = page_counts(db)
    assert pruned["freelist_count"] > pruned["page_count"] / 2  # kept inside the file

    before, after = vacuum(db)

    now_counts = page_counts(db)
    assert now_counts["auto_vacuum"] == 2
    assert now_counts["freelist_count"] == 0
    assert now_counts["page_count"] < pruned["page_count"] / 2
    assert before.auto_vacuum == "none"
    assert after.auto_vacuum == "incremental"
    assert after.file_bytes < before.file_bytes / 2
    assert sqlite_space(db.engine).file_bytes == after.file_bytes
    assert os.path.getsize(settings.sqlite_path) == after.file_bytes  # the log is empty
