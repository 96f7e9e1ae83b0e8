"""The development inspector: refused in production; in development a real worker records
job events, SQL statements and provider calls into a bounded, pruned Redis store."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

from engine.config.settings import SettingsError, load_settings
from engine.config.settings_store import validate
from engine.domain.phones import mask_phones_in_text
from engine.domain.sending import Sms
from engine.infra.embedded_redis import free_port
from engine.infra.http_observers import HTTP_OBSERVERS
from engine.infra.inspector_store import (
    Entry,
    InspectorStore,
    Query,
    inspector_off_reason,
    safe_payload,
    safe_url,
    stream_key,
)
from engine.infra.sandbox_gateway import GatewayServer
from engine.monitoring import inspector
from engine.monitoring.inspector import Recorder
from engine.providers.factory import make_provider
from engine.providers.http_client import http_client
from engine.providers.sandbox import SandboxProvider
from engine.providers.twilio import TwilioProvider
from engine.store.db import open_database
from tests.conftest import Workers
from tests.support import run_cli, run_cli_json, wait_for, write_contacts

TEMPLATE = "Hello #name, #balance of your pledge remains."
# Never like the sandbox's failure numbers (…0001-0004) except the one that fails twice.
PHONES = ["0712345655", "0712345666", "0712345677"]
TWICE_TRANSIENT = "0700000002"


@pytest.fixture(autouse=True)
def no_recording_left() -> Iterator[None]:
    yield
    inspector.stop()  # what a test turned on in this process stays with it


@pytest.fixture
def development(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYDESK_ENV", "development")


def entry(kind: Any = "job", campaign: int | None = None, task: str | None = None,
          summary: str = "x") -> Entry:
    return Entry(kind, time.time(), "started", summary, "ok", campaign, task, 1.0)


# --- the settings -----------------------------------------------------------------------------

def test_production_refuses_the_inspector(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYDESK_INSPECTOR", "on")
    with pytest.raises(SettingsError, match=r"RELAYDESK_INSPECTOR=on \(from environment\) "
                                            r"cannot be used with RELAYDESK_ENV=production"):
        load_settings()
    errors = validate({"RELAYDESK_ENV": "production", "RELAYDESK_INSPECTOR": "on"})
    assert "cannot be on in production" in errors["RELAYDESK_INSPECTOR"]
    assert validate({"RELAYDESK_ENV": "development", "RELAYDESK_INSPECTOR": "on"}) == {}

    result = run_cli("inspector")
    assert result.returncode != 0
    assert "cannot be used with RELAYDESK_ENV=production" in result.stderr

    monkeypatch.delenv("RELAYDESK_INSPECTOR")
    settings = load_settings()  # auto: off in production, and nothing is installed
    assert not settings.inspector_on
    assert inspector.recorder(settings) is None
    engine = open_database(settings).engine
    assert not event.contains(engine, "before_cursor_execute", inspector._before_sql)
    make_provider(settings, "http://127.0.0.1:9")
    assert inspector._record_http not in HTTP_OBSERVERS
    result = run_cli("inspector")
    assert result.returncode == 1
    assert "off in production" in result.stderr
    assert "RELAYDESK_ENV=development" in result.stderr


def test_inspector_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYDESK_ENV", "development")
    settings = load_settings()
    assert settings.inspector_on
    assert (settings.inspector_max_age_s, settings.inspector_max_entries) == (3600, 5000)
    monkeypatch.setenv("RELAYDESK_INSPECTOR", "off")
    monkeypatch.setenv("RELAYDESK_INSPECTOR_MAX_AGE", "15m")
    monkeypatch.setenv("RELAYDESK_INSPECTOR_MAX_ENTRIES", "200")
    settings = load_settings()
    assert not settings.inspector_on
    assert (settings.inspector_max_age_s, settings.inspector_max_entries) == (900, 200)
    assert "turned off" in (inspector_off_reason(settings) or "")
    monkeypatch.setenv("RELAYDESK_INSPECTOR", "sometimes")
    with pytest.raises(SettingsError, match="must be on, off or auto"):
        load_settings()


def test_the_statements_of_every_database_a_process_opens_are_kept(
        development: None, redis_client: Any) -> None:
    settings = load_settings()
    with open_database(settings).session() as session:
        session.execute(text("SELECT 42 AS answer"))
    store = InspectorStore.for_settings(settings, redis_client)
    assert [e.summary for e in store.entries(Query(kinds=("sql",)))] == ["SELECT 42 AS answer"]
    # The store hands its engines to whoever registered, and the inspector registers when it
    # is imported: each way a process starts imports it before it opens a database.
    probe = ("import importlib, sys\n"
             "importlib.import_module(sys.argv[1])\n"
             "from engine.store.db import ENGINE_WATCHERS\n"
             "print([w.__module__ for w in ENGINE_WATCHERS])\n")
    for entry_point in ("engine.cli.main", "desktop.cli", "desktop.heavy_work"):
        result = subprocess.run([sys.executable, "-c", probe, entry_point], capture_output=True,
                                text=True, timeout=120, check=True)
        assert result.stdout.strip() == "['engine.monitoring.inspector']", entry_point


# --- what is kept ------------------------------------------------------------------------------

def test_phone_numbers_credentials_and_queries_are_not_kept() -> None:
    assert mask_phones_in_text('{"to": "+254712345655"}') == '{"to": "+2547******55"}'
    assert safe_url("https://AC:tok@api.example.com:8443/2010-04-01/Accounts/"
                              "AC0123456789abcdef0123456789abcdef/Messages.json?key=s3cret") \
        == "https://api.example.com:8443/2010-04-01/Accounts/AC01…/Messages.json"
    assert safe_payload([7, "+254 712 345 655"]) == '[7, "+2547******55"]'


def test_recording_never_fails_when_redis_is_gone(development: None,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYDESK_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    recorder = Recorder(load_settings())
    recorder.add(entry())  # refused connection: swallowed
    assert recorder._quiet_until > time.monotonic()


def test_provider_calls_are_kept_without_credentials(development: None, redis_client: Any,
                                                     gateway: GatewayServer) -> None:
    settings = load_settings()
    assert inspector.watch_http(settings)
    sid = "AC0123456789abcdef0123456789abcdef"
    twilio = TwilioProvider(sid, "auth-token-s3cret", "+14155550100", http_client(5.0, 2),
                            gateway.url)
    twilio.send(Sms(7, 3, "+254712345655", "Hello Amina"))
    refused = SandboxProvider(f"http://127.0.0.1:{free_port()}", http_client(5.0, 2))
    result = refused.send(Sms(8, 3, "+254712345666", "Hello Baraka"))
    store = InspectorStore.for_settings(settings, redis_client)
    failed, called = store.entries(Query(kinds=("http",)))
    assert called.campaign is None  # no task, no idempotency key: not guessed
    assert called.detail["url"] == f"{gateway.url}/2010-04-01/Accounts/AC01…/Messages.json"
    assert called.status == "404"
    assert "To=%2B2547******55" in called.detail["request_body"]
    assert "Body=Hello+Amina" in called.detail["request_body"]
    assert failed.status == result.error_type == "ConnectionError"  # refused: no answer
    assert failed.campaign == 3  # from the idempotency key
    assert '"to": "+2547******66"' in failed.detail["request_body"]
    everything = json.dumps([e.to_json() for e in store.entries()])
    for secret in ("auth-token-s3cret", sid, "712345655", "712345666"):
        assert secret not in everything


# --- the store: bounds and filters -------------------------------------------------------------

def test_store_keeps_at_most_max_entries_per_kind(redis_client: Any) -> None:
    store = InspectorStore(redis_client, max_entries=5, max_age_s=3600)
    for i in range(12):
        store.add(entry("sql", summary=f"statement {i}"))
    store.add(entry("http"))
    assert store.counts() == {"job": 0, "sql": 5, "http": 1}
    assert [e.summary for e in store.entries(Query(kinds=("sql",)))] == [
        f"statement {i}" for i in range(11, 6, -1)]


def test_store_prunes_entries_older_than_max_age(redis_client: Any) -> None:
    store = InspectorStore(redis_client, max_entries=100, max_age_s=600)
    old_ms = int((time.time() - 3600) * 1000)
    redis_client.xadd(stream_key("job"), {"e": entry(summary="an hour old").to_json()},
                      id=f"{old_ms}-0")
    store.add(entry(summary="new"))
    assert [e.summary for e in store.entries()] == ["new"]  # trimmed when "new" was added
    redis_client.xadd(stream_key("http"), {"e": entry("http").to_json()}, id=f"{old_ms}-0")
    assert store.prune() == 1
    assert store.counts() == {"job": 1, "sql": 0, "http": 0}
    assert store.prune(now=time.time() + 601) == 1  # ten minutes later "new" is gone too
    assert store.entries() == []


def test_store_filters_by_kind_campaign_task_and_age(redis_client: Any) -> None:
    store = InspectorStore(redis_client, max_entries=2000, max_age_s=3600)
    for i in range(1200):  # more than one read batch
        store.add(entry("sql", campaign=1 + i % 2, task="relaydesk.send_chunk",
                        summary=f"s{i}"))
    store.add(entry("job", campaign=2, task="relaydesk.process_bulk", summary="bulk"))
    store.add(entry("http", campaign=3, task=None, summary="call"))
    found = store.entries(Query(campaign=2, limit=1000))
    assert len(found) == 601
    assert found[0].summary == "bulk"
    assert all(e.campaign == 2 for e in found)
    assert [e.summary for e in store.entries(Query(task="PROCESS_bulk"))] == ["bulk"]
    assert [e.summary for e in store.entries(Query(kinds=("http",)))] == ["call"]
    assert len(store.entries(Query(since_s=3600, limit=5000))) == 1202
    assert store.clear() == 3
    assert store.counts() == {"job": 0, "sql": 0, "http": 0}


def test_a_live_view_reads_only_what_is_new(redis_client: Any) -> None:
    store = InspectorStore(redis_client, max_entries=2000, max_age_s=3600)
    for i in range(700):
        store.add(entry("sql", campaign=1, summary=f"old {i}"))
    first = store.read(Query(campaign=1, limit=10))
    assert [e.summary for e in first.entries][:2] == ["old 699", "old 698"]
    for i in range(3):
        store.add(entry("sql", campaign=2, summary=f"other {i}"))
        store.add(entry("sql", campaign=1, summary=f"new {i}"))
    store.add(entry("http", campaign=1, summary="call"))
    second = store.read(Query(campaign=1, after=first.cursors))
    assert [e.summary for e in second.entries] == ["call", "new 2", "new 1", "new 0"]
    assert store.read(Query(campaign=1, after=second.cursors)).entries == []


# --- the real pipeline -------------------------------------------------------------------------

def _settled(campaign: int) -> bool:
    status = run_cli_json("campaign", "status", str(campaign))
    return status["pending"] == 0 and status["retrying"] == 0


def test_worker_records_jobs_sql_and_http_with_phones_masked(
        development: None, tmp_path: Path, gateway: GatewayServer, workers: Workers,
        redis_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # The bulk route: the CLI publishes process_bulk, the worker's dispatcher two chunks.
    monkeypatch.setenv("RELAYDESK_BULK_THRESHOLD", "2")
    monkeypatch.setenv("RELAYDESK_CHUNK_SIZE", "2")
    rows = [(f"Donor {i}", phone, "1000", "250", "2027-01-01", "inspect")
            for i, phone in enumerate([*PHONES, TWICE_TRANSIENT])]
    assert run_cli("contacts", "import",
                   str(write_contacts(tmp_path / "c.csv", rows))).returncode == 0
    workers.start()
    campaign = run_cli_json("campaign", "send", "--tag", "inspect", "--template",
                            TEMPLATE)["campaign"]
    wait_for(lambda: _settled(campaign), message="the campaign to be delivered")
    store = InspectorStore.for_settings(load_settings(), redis_client)

    def events() -> set[str]:
        return {e.event for e in store.entries(Query(kinds=("job",), campaign=campaign))}

    # The last message's task ends just after its row is written: wait for its entry.
    wait_for(lambda: events() >= {"enqueued", "started", "succeeded", "sent", "retried"},
             message="every job event")
    jobs = store.entries(Query(kinds=("job",), campaign=campaign, limit=1000))
    enqueued = sorted(e.task or "" for e in jobs if e.event == "enqueued")
    assert enqueued == ["relaydesk.process_bulk", "relaydesk.send_chunk",
                        "relaydesk.send_chunk", "relaydesk.send_message",
                        "relaydesk.send_message"]  # and the two retries
    started = [e for e in jobs if e.event == "started"]
    assert sorted(e.task or "" for e in started) == enqueued
    assert all(e.detail["wait_ms"] >= 0 for e in started)  # timed from the publish
    chunks = [e for e in started if e.task == "relaydesk.send_chunk"]
    assert sorted(json.loads(e.detail["payload"])[1] for e in chunks) == [[1, 2], [3, 4]]
    assert all(e.duration_ms is not None for e in jobs if e.event == "succeeded")
    assert {e.detail["to"] for e in jobs if e.event == "sent"} == {
        "+2547******55", "+2547******66", "+2547******77", "+2547******02"}
    retried = [e for e in jobs if e.event == "retried"]
    assert [e.detail["attempt"] for e in retried] == [2, 1]  # newest first

    http = store.entries(Query(kinds=("http",), campaign=campaign))
    assert sorted(e.status for e in http) == ["200"] * 4 + ["503"] * 2
    assert all(e.detail["url"] == f"{gateway.url}/messages" for e in http)
    assert all("Hello Donor" in e.detail["request_body"] for e in http)

    sql = store.entries(Query(kinds=("sql",), campaign=campaign, limit=5000))
    assert any(e.event == "UPDATE" and "outgoing_messages" in e.summary for e in sql)
    assert all(e.duration_ms is not None and e.duration_ms >= 0 for e in sql)
    everything = json.dumps([e.to_json() for e in store.entries(Query(limit=5000))])
    for phone in [*PHONES, TWICE_TRANSIENT]:
        assert phone[1:] not in everything  # no phone number, in any form
    # Parameters are never kept: no SQL entry holds a message text.
    assert not any("Hello" in e.to_json() for e in store.entries(Query(kinds=("sql",),
                                                                        limit=5000)))

    shown = run_cli_json("inspector", "--kind", "http", "--campaign", str(campaign),
                         "--since", "10m")
    assert len(shown) == 6
    assert {e["kind"] for e in shown} == {"http"}
    assert run_cli("inspector", "--clear").returncode == 0
    assert store.counts() == {"job": 0, "sql": 0, "http": 0}
