"""The dead-letter store as the review panel and ``relaydesk failed`` use it: filters, sort,
retry and forget of everything that matches (history kept and linked), every attempt
recorded, CSV export; on SQLite and, when a server is given, PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import select

from engine.config.settings import Settings
from engine.domain.sending import Outcome, SendResult
from engine.infra import redis_keys, scheduler
from engine.infra.embedded_redis import free_port
from engine.operations import failed_jobs
from engine.pipeline.sender import SEND_MESSAGE
from engine.store.db import Database, open_database
from engine.store.dead_letters import forget_failed, forget_matching, retry_matching
from engine.store.delivery_state import claim, mark_dead, mark_retry, mark_sent
from engine.store.failed_export import export_csv
from engine.store.failed_query import (
    FailedQuery,
    campaign_choices,
    count_and_first_page,
    count_matching,
    distinct_values,
    failed_detail,
    failed_page,
    ids_in_rows,
    matching,
)
from engine.store.models import Campaign, CampaignStatus, FailedJob, MessageStatus, OutgoingMessage
from tests.failed_seed import CAMPAIGNS, FIRST_FAILURE, STEP, rows, seed_failed
from tests.support import RELAYDESK

COUNT = 600


def expected(count: int, **where: Any) -> int:
    return sum(1 for r in rows(count) if all(r[k] == v for k, v in where.items()))


def all_ids(db: Database, query: FailedQuery) -> list[int]:
    with db.session() as session:
        return [r.id for r in failed_page(session, query, 0, 10_000)]


def test_filters_count_what_they_show(db: Database) -> None:
    campaigns = seed_failed(db, COUNT)
    with db.session() as session:
        def count(**filters: Any) -> int:
            query = FailedQuery(**filters)
            shown = failed_page(session, query, 0, 10_000)
            assert len(shown) == count_matching(session, query)
            return len(shown)

        assert count() == COUNT
        assert count(error_type="timeout") == expected(COUNT, error_type="timeout")
        assert count(queue="bulk_messages") == expected(COUNT, queue="bulk_messages")
        assert count(campaign_id=campaigns[2]) == expected(COUNT, campaign=2)
        assert count(queue="messages", error_type="blocked") == expected(
            COUNT, queue="messages", error_type="blocked")
        # Search: the error text (any case), the campaign name, a phone fragment, an id.
        assert count(search="QUOTA exceeded") == 1  # row 7 only
        assert count(search="choir") == expected(COUNT, campaign=1)
        assert count(search="00001235") == 1  # +2547 0000123 5: row 123's phone
        assert count(search="ref 5") == 111
        assert count(search="ref 5%") == 0  # % is text to find, not a pattern
        with_id = failed_page(session, FailedQuery(search="#5"), 0, 100)
        assert 5 in {r.id for r in with_id}
        # A date range: [since, until)
        since, until = FIRST_FAILURE + 100 * STEP, FIRST_FAILURE + 150 * STEP
        assert count(since=since, until=until) == 50
        assert count(since=since, until=until, error_type="timeout") == sum(
            1 for r in rows(COUNT) if 100 <= r["i"] < 150 and r["error_type"] == "timeout")
        assert count(search="no such text anywhere") == 0
        for text in ("quota", "choir", "", "ref 12"):  # one scan or two: the same answer
            query = FailedQuery(search=text, sort="attempts")
            assert count_and_first_page(session, query, 50) == (
                count_matching(session, query), failed_page(session, query, 0, 50))
        assert campaign_choices(session) == [(c, n) for c, n in zip(campaigns, CAMPAIGNS,
                                                                     strict=True)][::-1]
        assert distinct_values(session, "queue") == ["bulk_messages", "high_priority",
                                                      "messages"]


def test_search_finds_wildcard_characters_as_text(db: Database) -> None:
    """``_`` and ``%`` are what the operator typed: ``q3_reminder`` finds that campaign,
    not ``q3xreminder``; on SQLite and PostgreSQL alike (LIKE ... ESCAPE)."""
    campaigns = seed_failed(db, 60)
    names = ["q3_reminder", "q3xreminder", "Back to 100% pledged"]
    with db.session() as session:
        for campaign_id, name in zip(campaigns, names, strict=True):
            session.get_one(Campaign, campaign_id).name = name
    with db.session() as session:
        def count(search: str) -> int:
            query = FailedQuery(search=search)
            assert count_and_first_page(session, query, 100)[0] == count_matching(
                session, query)
            return count_matching(session, query)

        assert count("q3_reminder") == expected(60, campaign=0)
        assert count("q3_") == expected(60, campaign=0)
        assert count("100%") == expected(60, campaign=2)  # not "ref 100", not all
        assert count("%") == expected(60, campaign=2)
        assert count("_") == sum(1 for r in rows(60)  # "invalid_number: ..." has one too
                                 if r["campaign"] == 0 or "_" in r["error"])
        assert count("\\") == 0  # the escape character itself is text too


def test_sort_orders_and_selected_rows(db: Database) -> None:
    seed_failed(db, COUNT)
    newest_first = all_ids(db, FailedQuery())
    assert newest_first == sorted(newest_first, reverse=True)  # seeded in time order
    with db.session() as session:
        by_attempts = failed_page(session, FailedQuery(sort="attempts", descending=False),
                                  0, COUNT)
        assert [r.attempts for r in by_attempts] == sorted(r.attempts for r in by_attempts)
        ties = [r.id for r in by_attempts if r.attempts == 1]
        assert ties == sorted(ties)  # the tie-break keeps pages stable
        by_type = failed_page(session, FailedQuery(sort="error_type", descending=True), 0, 3)
        assert by_type[0].error_type == "timeout"
        # Rows 10-14 and 100 of the table as sorted, even though never loaded as pages.
        query = FailedQuery(sort="recipient")
        ranked = [r.id for r in failed_page(session, query, 0, COUNT)]
        assert ids_in_rows(session, query, [(10, 14), (100, 100)]) == [*ranked[10:15], ranked[100]]
        phones = [r.recipient for r in failed_page(session, query, 0, 5)]
        assert all("*" in p for p in phones)  # masked in every row


def failure(kind: str = "timeout") -> SendResult:
    return SendResult(Outcome.TRANSIENT, error_type=kind, error="the provider timed out",
                      response='{"error": "timeout"}')


def test_retry_matching_keeps_history_and_shows_outcome(db: Database) -> None:
    campaigns = seed_failed(db, 40)
    with db.session() as session:
        jobs = retry_matching(session, FailedQuery(error_type="timeout"))
    retried = expected(40, error_type="timeout")
    assert len(jobs) == retried
    with db.session() as session:
        assert {j.campaign_id for j in jobs} <= set(campaigns)
        message_ids = [j.message_id for j in jobs]
        statuses = set(session.scalars(select(OutgoingMessage.status)
                                       .where(OutgoingMessage.id.in_(message_ids))))
        assert statuses == {MessageStatus.QUEUED}
        assert set(session.scalars(select(Campaign.status))) == {CampaignStatus.SENDING}
        # Retried records leave the default view, stay in the history, are not retried twice.
        assert count_matching(session, FailedQuery()) == 40 - retried
        assert count_matching(session, FailedQuery(include_retried=True)) == 40
        assert retry_matching(session, FailedQuery(error_type="timeout")) == []

    first, second = message_ids[0], message_ids[1]
    with db.session() as session:  # the first dies again after two attempts
        claimed = claim(session, first, [MessageStatus.QUEUED], "messages")
        assert claimed is not None
        mark_retry(session, first, failure())
        claimed = claim(session, first, [MessageStatus.FAILED], "messages")
        assert claimed is not None
        new_record = mark_dead(session, claimed, failure("invalid_number"), "send")
        session.flush()
        new_id = new_record.id
        # the second is delivered
        assert claim(session, second, [MessageStatus.QUEUED], "messages") is not None
        mark_sent(session, second, SendResult(Outcome.SENT, provider_message_id="p1"),
                  provider="sandbox")

    with db.session() as session:
        history = {r.message_id: r for r in failed_page(
            session, FailedQuery(include_retried=True), 0, 100) if r.retried_at}
        old = history[first]
        assert old.next_id == new_id
        assert old.retry_state == f"retried, failed again (#{new_id})"
        assert history[second].retry_state == "retried, sent"
        assert history[message_ids[2]].retry_state == "retried, sending"
        detail = failed_detail(session, new_id)
        assert detail is not None
        assert detail.row.retry_of_id == old.id
        assert detail.row.retry_state == f"retry of #{old.id}"
        # Every attempt of this record, none of the earlier one's.
        assert [(a.number, a.error) for a in detail.attempts] == [
            (1, "timeout: the provider timed out"),
            (2, "invalid_number: the provider timed out")]
        assert detail.provider_response == '{"error": "timeout"}'
        assert "+2547" in json.loads(detail.payload)["to"]
        assert "*" in json.loads(detail.payload)["to"]
        assert detail.body.startswith("Dear member")


def test_actions_are_pinned_to_what_was_counted(db: Database) -> None:
    seed_failed(db, 30)
    query = FailedQuery(error_type="blocked")
    with db.session() as session:
        found = matching(session, query)
    seed_failed(db, 30)  # more failures arrive while the operator reads the question
    with db.session() as session:
        assert count_matching(session, query) == 2 * found.count
        jobs = retry_matching(session, FailedQuery(error_type="blocked",
                                                   through_id=found.last_id))
    assert len(jobs) == found.count


def test_retry_operation_schedules_what_it_marks_in_one_transaction(
        db: Database, redis_client: Any) -> None:
    seed_failed(db, 30)
    nowhere = redis.Redis(port=free_port(), socket_connect_timeout=2)  # nothing listens
    with pytest.raises(redis.ConnectionError):
        failed_jobs.retry(db, nowhere, FailedQuery(error_type="timeout"))
    with db.session() as session:  # Redis refused: nothing was marked retried
        assert count_matching(session, FailedQuery()) == 30
        assert not list(session.scalars(select(OutgoingMessage.id).where(
            OutgoingMessage.status == MessageStatus.QUEUED)))

    assert failed_jobs.retry(db, redis_client, [1, 2]) == failed_jobs.Retried(2, 0)
    retried = failed_jobs.retry(db, redis_client, FailedQuery(error_type="timeout")).retried
    assert retried == expected(30, error_type="timeout") - sum(
        1 for r in rows(2) if r["error_type"] == "timeout")  # records 1 and 2 are rows 0, 1
    due = [scheduler.Job.decode(raw) for raw in redis_client.zrange(redis_keys.SCHEDULED, 0, -1)]
    assert len(due) == 2 + retried
    with db.session() as session:
        queues = dict(session.execute(select(Campaign.id, Campaign.queue)).all())
        message_campaign = dict(session.execute(
            select(OutgoingMessage.id, OutgoingMessage.campaign_id)).all())
        assert count_matching(session, FailedQuery()) == 30 - len(due)
    for job in due:
        campaign_id, message_id, retry = job.args
        assert job.task == SEND_MESSAGE
        assert (campaign_id, retry) == (message_campaign[message_id], False)
        assert job.queue == queues[campaign_id]
    assert failed_jobs.retry(db, redis_client, FailedQuery()).retried == 30 - len(due)
    assert failed_jobs.retry(db, redis_client, FailedQuery()).retried == 0  # each record once
    assert failed_jobs.forget(db, [1, 2]) == 2
    assert failed_jobs.forget(db, FailedQuery(include_retried=True)) == 28


def test_forget_matching_and_selected(db: Database) -> None:
    seed_failed(db, 50)
    with db.session() as session:
        [job] = retry_matching(session, FailedQuery(search="#3"))
        claimed = claim(session, job.message_id, [MessageStatus.QUEUED], "high_priority")
        assert claimed is not None
        successor = mark_dead(session, claimed, failure(), "send")
        session.flush()
        successor_id = successor.id
    with db.session() as session:
        removed = forget_matching(session, FailedQuery(queue="messages", include_retried=True))
    # row i is record i + 1: record 3 (row 2) and its successor are on high_priority
    assert removed == expected(50, queue="messages")
    with db.session() as session:
        assert count_matching(session, FailedQuery(queue="messages")) == 0
        kept = session.get(FailedJob, successor_id)
        assert kept is not None
        assert kept.retry_of_id == 3
        assert forget_failed(session, [3]) == 1
    with db.session() as session:
        kept = session.get(FailedJob, successor_id)
        assert kept is not None
        assert kept.retry_of_id is None
        left = count_matching(session, FailedQuery(include_retried=True))
        assert left == 51 - removed - 1


def test_export_streams_matching_rows_masked(db: Database) -> None:
    seed_failed(db, 120)
    out = io.StringIO()
    with db.session() as session:
        written = export_csv(session, FailedQuery(error_type="http_500"), out)
    lines = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert written == len(lines) == expected(120, error_type="http_500")
    assert {r["error_type"] for r in lines} == {"http_500"}
    assert all("*" in r["recipient"] for r in lines)
    assert [int(r["id"]) for r in lines] == sorted((int(r["id"]) for r in lines),
                                                   reverse=True)
    assert lines[0]["campaign"] in CAMPAIGNS
    full = io.StringIO()
    with db.session() as session:
        export_csv(session, FailedQuery(search="#1"), full, full_phones=True)
    assert "+254700000005" in full.getvalue()  # row 0's phone, whole


# --- the command line ----------------------------------------------------------------------


def cli(*args: str, answer: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RELAYDESK, "failed", *args], capture_output=True, text=True,
                          input=answer, timeout=120, check=False)


def test_cli_filters_actions_and_export(settings: Settings, tmp_path: Path,
                                        redis_client: Any) -> None:
    seed_failed(open_database(settings), 90)
    listed = cli("list", "--error-type", "timeout", "--queue", "messages", "--json")
    assert listed.returncode == 0, listed.stderr
    shown = json.loads(listed.stdout)
    assert len(shown) == expected(90, error_type="timeout", queue="messages")
    assert {j["error_type"] for j in shown} == {"timeout"}
    day = (FIRST_FAILURE + 45 * STEP).astimezone().date().isoformat()
    dated = json.loads(cli("list", "--since", day, "--until", day, "--json").stdout)
    assert len(dated) == 90  # 90 rows 20 s apart: all on that day (local time)
    bad = cli("list", "--since", "28/11/2026")
    assert bad.returncode == 2
    assert "write it as YYYY-MM-DD" in bad.stderr

    refused = cli("retry", "--matching", "--search", "quota", answer="n\n")
    assert refused.returncode == 1
    assert "Retry 1 failed job(s)?" in refused.stderr
    assert scheduler.pending(redis_client) == 0
    retried = cli("retry", "--matching", "--error-type", "blocked", answer="y\n")
    assert retried.returncode == 0, retried.stderr
    blocked = expected(90, error_type="blocked")
    assert f"{blocked} job(s) queued again" in retried.stdout
    assert scheduler.pending(redis_client) == blocked  # the jobs are due in Redis

    forgot = cli("forget", "--matching", "--queue", "high_priority", "--yes", "--json")
    assert json.loads(forgot.stdout) == {"forgotten": sum(
        1 for r in rows(90) if r["queue"] == "high_priority" and r["error_type"] != "blocked")}
    out = tmp_path / "failed.csv"
    exported = cli("export", "--out", str(out), "--error-type", "timeout")
    assert exported.returncode == 0, exported.stderr
    lines = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert len(lines) == sum(1 for r in rows(90) if r["error_type"] == "timeout"
                             and r["queue"] != "high_priority")
    assert lines
    assert all("*" in r["recipient"] for r in lines)
    assert cli("retry").returncode == 2  # nothing named: a usage error, nothing done


def test_cli_include_retried_and_its_old_spelling(settings: Settings, tmp_path: Path,
                                                   redis_client: Any) -> None:
    seed_failed(open_database(settings), 12)
    retried = cli("retry", "--all", "--error-type", "timeout", "--json")
    assert retried.returncode == 0, retried.stderr
    assert json.loads(retried.stdout) == {"retried": expected(12, error_type="timeout"),
                                          "skipped_opted_out": 0}
    assert "deprecated" not in retried.stderr  # on retry, --all is not the old spelling
    default = json.loads(cli("list", "--json").stdout)
    new = cli("list", "--include-retried", "--json")
    assert new.returncode == 0, new.stderr
    assert "deprecated" not in new.stderr
    everything = json.loads(new.stdout)
    assert len(everything) == 12 > len(default)
    old = cli("list", "--all", "--json")
    assert old.returncode == 0, old.stderr
    assert json.loads(old.stdout) == everything  # stdout is the JSON alone
    assert "--all on 'relaydesk failed list' is deprecated: write --include-retried" \
        in old.stderr
    exported = cli("export", "--out", str(tmp_path / "all.csv"), "--all")
    assert "write --include-retried" in exported.stderr
    assert "12 failed job(s) written" in exported.stdout
    listed = cli("list", "--help").stdout
    assert "--include-retried" in listed
    assert "--all" not in listed


def test_cli_since_is_local_time() -> None:
    from engine.cli.failed import parse_when

    start = parse_when("2026-11-28", end=False)
    end = parse_when("2026-11-28", end=True)
    assert end - start == timedelta(days=1)
    assert start.tzinfo is not None
    assert start.astimezone(UTC) == datetime(2026, 11, 28).astimezone().astimezone(UTC)


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01"])
def test_cli_bad_dates_say_how_to_write_them(text: str) -> None:
    import click

    from engine.cli.failed import parse_when

    with pytest.raises(click.BadParameter, match="YYYY-MM-DD"):
        parse_when(text, end=False)


def test_phone_numbers_in_error_texts_are_masked(db: Database) -> None:
    seed_failed(db, 3)
    refused = SendResult(Outcome.PERMANENT, error_type="invalid_number",
                         error="+254700000015 is not a valid number",
                         response='{"to": "+254700000015"}')
    with db.session() as session:
        [job] = retry_matching(session, FailedQuery(search="#1"))
        claimed = claim(session, job.message_id, [MessageStatus.QUEUED], "messages")
        assert claimed is not None
        record = mark_dead(session, claimed, refused, "send")
        session.flush()
        record_id = record.id
    with db.session() as session:
        [row] = failed_page(session, FailedQuery(search="not a valid"), 0, 10)
        detail = failed_detail(session, record_id)
        masked = io.StringIO()
        export_csv(session, FailedQuery(search="not a valid"), masked)
        whole = io.StringIO()
        export_csv(session, FailedQuery(search="not a valid"), whole, full_phones=True)
    assert row.last_error == "invalid_number: +2547******15 is not a valid number"
    assert detail is not None
    assert detail.attempts[-1].error == row.last_error
    assert detail.provider_response == '{"to": "+2547******15"}'
    assert "+254700000015" not in masked.getvalue()
    assert "+254700000015 is not a valid number" in whole.getvalue()
