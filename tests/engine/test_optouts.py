"""The opt-out list: the store (add, remove, list, import, export), the send-time check in
the claim, the provider's opt-out verdict, contacts marked, and ``relaydesk optouts``; on
SQLite and, when a server is given, PostgreSQL."""

from __future__ import annotations

import csv
import json
import stat
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from engine.config.settings import Settings, load_settings
from engine.domain.sending import Outcome, SendResult, Verdict
from engine.infra import redis_keys, scheduler
from engine.operations import failed_jobs
from engine.operations.campaign_control import send_test_message
from engine.operations.campaigns import CampaignError
from engine.pipeline.send_decision import BreakerNote, RetryPolicy, decide
from engine.store.campaign_state import campaign_summary, finish_campaign_if_done
from engine.store.contact_browser import ContactQuery, contact_page
from engine.store.contacts_import import ImportFileError
from engine.store.db import Database, open_database
from engine.store.delivery_state import CLAIM_LEASE_S, claim, mark_dead
from engine.store.failed_query import FailedQuery
from engine.store.models import (
    Campaign,
    CampaignStatus,
    Contact,
    FailedJob,
    MessageStatus,
    OptAction,
    OptOut,
    OptOutEvent,
    OptSource,
    OutgoingMessage,
)
from engine.store.optouts import (
    add_optouts,
    count_optouts,
    export_optouts,
    import_optouts,
    is_opted_out,
    list_optouts,
    opted_out_phones,
    remove_optouts,
)
from tests.support import run_cli, run_cli_json

ANN, BEN, CAROL = "+254712345678", "+254722000111", "+254733000222"


def test_add_keeps_the_first_record_and_reports_what_it_did(db: Database) -> None:
    with db.session() as session:
        change = add_optouts(session, ["0712 345 678", ANN, "07x", ""], region="KE",
                             reason="asked by phone")
        assert (change.added, change.already) == (1, 0)  # two spellings of one number
        assert [text for text, _ in change.invalid] == ["07x", ""]
        assert "not a phone number" in change.invalid[0][1]
    with db.session() as session:
        again = add_optouts(session, [ANN, BEN], region="KE", reason="later",
                            source=OptSource.PROVIDER)
        assert (again.added, again.already, again.invalid) == (1, 1, [])
        ann = session.get(OptOut, ANN)
        assert ann is not None
        assert (ann.reason, ann.source) == ("asked by phone", "manual")  # the first record
        assert is_opted_out(session, ANN)
        assert not is_opted_out(session, CAROL)
        assert opted_out_phones(session, [ANN, CAROL, BEN, ANN]) == {ANN, BEN}


def test_remove_list_search_and_count(db: Database) -> None:
    start = datetime(2026, 12, 1, 9, tzinfo=UTC)
    with db.session() as session:
        session.add_all([
            OptOut(phone=ANN, reason="STOP by SMS", source="reply", created_at=start),
            OptOut(phone=BEN, reason="Twilio 21610: unsubscribed", source="provider",
                   created_at=start + timedelta(minutes=1)),
            OptOut(phone=CAROL, reason="100%_sure", source="manual",
                   created_at=start + timedelta(minutes=2))])
    with db.session() as session:
        assert [o.phone for o in list_optouts(session)] == [CAROL, BEN, ANN]  # newest first
        assert [o.phone for o in list_optouts(session, offset=1, limit=1)] == [BEN]
        assert count_optouts(session) == 3
        assert [o.phone for o in list_optouts(session, search="21610")] == [BEN]
        assert [o.phone for o in list_optouts(session, search="0712 345")] == [ANN]  # local
        assert count_optouts(session, "%_") == 1  # found as typed, not as wildcards
        change = remove_optouts(session, ["0712345678", CAROL, "+254799999999", "nope"],
                                region="KE")
        assert (change.removed, change.not_listed, len(change.invalid)) == (2, 1, 1)
    with db.session() as session:
        assert [o.phone for o in list_optouts(session)] == [BEN]


def test_import_csv_reports_each_bad_line_and_adds_the_good_ones(db: Database,
                                                                  tmp_path: Path) -> None:
    with db.session() as session:
        add_optouts(session, [CAROL], region="KE", reason="earlier")
    path = tmp_path / "stop.csv"
    path.write_text("name;Phone;reason\nAnn;0712345678;\nBad;12;x\n\nBen;+254 722 000 111;"
                    "own reason\nAnn again;+254712345678;\nCarol;0733000222;\n",
                    encoding="utf-8-sig")
    result = import_optouts(db, path, region="KE", reason="paper list")
    assert (result.imported, result.already, result.rejected_count) == (2, 2, 1)
    assert [(r.line, r.reason[:9]) for r in result.rejected] == [(3, "bad phone")]
    with db.session() as session:
        found = {o.phone: (o.reason, o.source) for o in list_optouts(session)}
    assert found == {ANN: ("paper list", "import"), BEN: ("own reason", "import"),
                     CAROL: ("earlier", "manual")}


def test_import_one_number_per_line(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "stop.txt"
    path.write_text("0712345678\r\n\r\n+254 722 000 111\r\nnot a number\r\n", encoding="utf-8")
    result = import_optouts(db, path, region="KE")
    assert (result.imported, result.rejected_count) == (2, 1)
    assert result.rejected[0].line == 4
    with db.session() as session:
        assert opted_out_phones(session, [ANN, BEN]) == {ANN, BEN}


@pytest.mark.parametrize(("content", "message"), [
    (b"name,number\nAnn,0712345678\n", "none is called 'phone'"),
    (b"phone\n0712345678\n\xff\xfe\n", "not UTF-8"),
    (b"phone\n\"0712345678\n0722000111\n", "never closed"),
    (b"\n\n", "empty"),
    (b"phone\n\n", "no phone numbers"),
])
def test_a_file_that_cannot_be_read_adds_nothing(db: Database, tmp_path: Path, content: bytes,
                                                  message: str) -> None:
    path = tmp_path / "stop.csv"
    path.write_bytes(content)
    with pytest.raises(ImportFileError, match=message):
        import_optouts(db, path, region="KE")
    with db.session() as session:
        assert count_optouts(session) == 0


def test_export_is_formula_safe_private_and_imports_back(db: Database, tmp_path: Path) -> None:
    with db.session() as session:
        add_optouts(session, [ANN], region="KE", reason='=HYPERLINK("http://x","y")')
        add_optouts(session, [BEN], region="KE", source=OptSource.PROVIDER,
                    reason="AT 406 UserInBlacklist: UserInBlacklist")
    out = tmp_path / "optouts.csv"
    with db.session() as session:
        assert export_optouts(session, out) == 2
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert not out.with_name("optouts.csv.part").exists()
    with out.open(encoding="utf-8", newline="") as file:
        exported = list(csv.DictReader(file))
    assert {r["phone"]: (r["reason"], r["source"]) for r in exported} == {
        ANN: ("'=HYPERLINK(\"http://x\",\"y\")", "manual"),  # shown as text, never run
        BEN: ("AT 406 UserInBlacklist: UserInBlacklist", "provider")}
    assert all(datetime.fromisoformat(r["created_at"]).tzinfo for r in exported)
    with db.session() as session:
        remove_optouts(session, [ANN, BEN], region="KE")
    assert import_optouts(db, out, region="KE").imported == 2
    with db.session() as session:
        ben = session.get(OptOut, BEN)
        assert ben is not None
        assert ben.reason == "AT 406 UserInBlacklist: UserInBlacklist"


# --- send time --------------------------------------------------------------------------

def _campaign(db: Database, phones: list[str]) -> tuple[int, list[int]]:
    with db.session() as session:
        campaign = Campaign(name="Reminder", template="Hi", route="individual",
                            queue="messages", status=CampaignStatus.SENDING)
        session.add(campaign)
        session.flush()
        messages = [OutgoingMessage(campaign_id=campaign.id, phone=p, body="Hi",
                                    encoding="GSM-7", segments=1) for p in phones]
        session.add_all(messages)
        session.flush()
        return campaign.id, [m.id for m in messages]


def test_the_claim_suppresses_a_listed_number_without_spending_an_attempt(
        db: Database) -> None:
    campaign_id, (queued, failed, stale, fine) = _campaign(db, [ANN, BEN, CAROL,
                                                                 "+254744000333"])
    now = datetime.now(UTC)
    with db.session() as session:
        session.execute(update(OutgoingMessage).where(OutgoingMessage.id == failed)
                        .values(status=MessageStatus.FAILED, attempts=1))
        # Left 'sending' by a worker that died: taken over, and suppressed.
        session.execute(update(OutgoingMessage).where(OutgoingMessage.id == stale)
                        .values(status=MessageStatus.SENDING, attempts=2,
                                claimed_at=now - timedelta(seconds=CLAIM_LEASE_S + 1)))
        add_optouts(session, [ANN, BEN, CAROL], region="KE")
    with db.session() as session:
        results = {
            queued: claim(session, queued, [MessageStatus.QUEUED], "messages", now),
            failed: claim(session, failed, [MessageStatus.FAILED], "messages", now),
            stale: claim(session, stale, [MessageStatus.QUEUED], "messages", now),
            fine: claim(session, fine, [MessageStatus.QUEUED], "messages", now)}
    assert {mid: (c.suppressed, c.attempts) for mid, c in results.items() if c} == {
        queued: (True, 0), failed: (True, 1), stale: (True, 2), fine: (False, 1)}
    with db.session() as session:
        rows = dict(session.execute(select(OutgoingMessage.id, OutgoingMessage.status)).all())
        assert rows == {queued: "suppressed", failed: "suppressed", stale: "suppressed",
                        fine: "sending"}
        assert session.scalar(select(OutgoingMessage.claimed_at)
                              .where(OutgoingMessage.id == queued)) is None
        # Suppressed is settled: a second claim finds nothing, the campaign can finish.
        assert claim(session, queued, [MessageStatus.QUEUED], "messages", now) is None
        assert not finish_campaign_if_done(session, campaign_id)  # 'fine' is still sending
        session.execute(update(OutgoingMessage).where(OutgoingMessage.id == fine)
                        .values(status=MessageStatus.SENT))
        assert finish_campaign_if_done(session, campaign_id)
        summary = campaign_summary(session, campaign_id)
        assert summary is not None
        assert (summary["status"], summary["sent"], summary["suppressed"]) == (
            "completed", 1, 3)


def test_a_provider_opt_out_is_suppressed_not_retried_nor_a_breaker_failure() -> None:
    policy = RetryPolicy(max_attempts=5, backoff_s=1, backoff_max_s=10)
    result = SendResult(Outcome.OPTED_OUT, error_type="Twilio 21610",
                        error="Attempt to send to unsubscribed recipient")
    decision = decide(result, 1, policy)
    assert (decision.verdict, decision.breaker) == (Verdict.SUPPRESSED, BreakerNote.NONE)


def test_dead_letter_retry_skips_a_listed_number_and_says_so(db: Database,
                                                             redis_client: Any) -> None:
    _, (listed, other) = _campaign(db, [ANN, BEN])
    refused = SendResult(Outcome.PERMANENT, error_type="invalid_number", error="refused")
    with db.session() as session:
        for message_id in (listed, other):
            claimed = claim(session, message_id, [MessageStatus.QUEUED], "messages")
            assert claimed is not None
            mark_dead(session, claimed, refused, "relaydesk.send_message")
    with db.session() as session:
        add_optouts(session, [ANN], region="KE")
        records = dict(session.execute(select(FailedJob.recipient, FailedJob.id)).all())

    assert failed_jobs.retry(db, redis_client, FailedQuery()) == failed_jobs.Retried(1, 1)
    assert failed_jobs.Retried(1, 1).describe() == (
        "1 failed job(s) queued again; 1 skipped: the number is on the opt-out list")
    due = [scheduler.Job.decode(raw) for raw in redis_client.zrange(redis_keys.SCHEDULED, 0, -1)]
    assert [job.args[1] for job in due] == [other]  # only the other one will be sent
    with db.session() as session:
        status = dict(session.execute(select(OutgoingMessage.id, OutgoingMessage.status)).all())
        retried = dict(session.execute(select(FailedJob.id, FailedJob.retried_at)).all())
    assert status == {listed: "dead", other: "queued"}
    assert retried[records[ANN]] is None  # kept as it was, for the operator to see
    assert retried[records[BEN]] is not None
    # By id too; asked again, it is skipped again.
    assert failed_jobs.retry(db, redis_client, [records[ANN]]) == failed_jobs.Retried(0, 1)


# --- contacts marked --------------------------------------------------------------------

def test_contacts_are_marked_opted_out(db: Database) -> None:
    with db.session() as session:
        session.add_all(Contact(name=n, phone=p, pledge_cents=100, paid_cents=0,
                                due_date=date(2027, 1, 1))
                        for n, p in (("Ann", ANN), ("Ben", BEN)))
        add_optouts(session, [BEN], region="KE")
    with db.session() as session:
        page = contact_page(session, ContactQuery(sort="name"), 0, 10)
    assert [(c.name, c.opted_out) for c in page] == [("Ann", False), ("Ben", True)]


# --- the command line -------------------------------------------------------------------

def test_cli_add_list_remove_import_export(tmp_path: Path) -> None:
    added = run_cli("optouts", "add", ANN, "0722000111", "0712", "--reason", "asked")
    assert added.returncode == 1  # one argument is not a number: said, and the rest added
    assert "Added 2 number(s)" in added.stdout
    assert "not a phone number, skipped: '0712'" in added.stderr
    assert run_cli_json("optouts", "add", ANN) == {
        "added": 0, "already": 1, "removed": 0, "not_listed": 0, "invalid": []}
    assert run_cli("optouts", "add", "nope").returncode == 1

    listed = run_cli_json("optouts", "list", "--search", "0722")
    assert [(o["phone"], o["reason"], o["source"]) for o in listed] == [
        (BEN, "asked", "manual")]  # the whole number: the operator's own list
    text = run_cli("optouts", "list")
    assert ANN in text.stdout
    assert "2 of 2 opted-out number(s)" in text.stdout

    contacts = tmp_path / "contacts.csv"
    contacts.write_text("name,phone,pledge,paid_amount,due_date\n"
                        f"Ann,{ANN},100,0,2027-01-01\nCarol,{CAROL},100,0,2027-01-01\n")
    assert run_cli("contacts", "import", str(contacts)).returncode == 0
    assert {c["phone"]: c["opted_out"] for c in run_cli_json("contacts", "list")} == {
        ANN: True, CAROL: False}

    out = tmp_path / "export.csv"
    assert json.loads(run_cli("optouts", "export", "--out", str(out), "--json").stdout) == {
        "exported": 2, "file": str(out)}
    removed = run_cli("optouts", "remove", ANN, CAROL)
    assert removed.returncode == 0
    assert "Removed 1 number(s) from the opt-out list; 1 were not on it." in removed.stdout
    imported = run_cli_json("optouts", "import", str(out))
    assert (imported["imported"], imported["already"]) == (1, 1)

    bad = tmp_path / "bad.csv"
    bad.write_text("phone\n0712345678\nnonsense\n")
    refused = run_cli("optouts", "import", str(bad), "--reason", "paper")
    assert refused.returncode == 1
    assert "line 3: bad phone" in refused.stdout
    missing = run_cli("optouts", "import", str(tmp_path / "none.csv"))
    assert missing.returncode == 1
    assert "cannot read" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_a_test_send_to_an_opted_out_number_is_refused_before_anything_is_created(
        db: Database, db_settings: Settings) -> None:
    with db.session() as session:
        add_optouts(session, ["+254712000111"], region="KE", reason="asked")
    # No Redis is given: the refusal comes first, and nothing is created.
    with pytest.raises(CampaignError, match="opt-out list"):
        send_test_message(db, None, db_settings, "Hello #name", "0712000111")
    with db.session() as session:
        assert session.scalar(select(func.count(Campaign.id))) == 0


def test_cli_history_of_the_list_and_of_one_number() -> None:
    # Written as the opt-out writers keep the history (engine.store.optouts).
    start = datetime(2026, 12, 1, 9, tzinfo=UTC)
    db = open_database(load_settings())
    with db.session() as session:
        session.add_all([
            OptOutEvent(phone=ANN, action=OptAction.ADDED, source=OptSource.REPLY,
                        reason="STOP", at=start),
            OptOutEvent(phone=BEN, action=OptAction.ADDED, source=OptSource.MANUAL,
                        reason="asked by phone", at=start + timedelta(minutes=1)),
            OptOutEvent(phone=ANN, action=OptAction.REMOVED, source=OptSource.REPLY,
                        reason="START", at=start + timedelta(minutes=2)),
            OptOutEvent(phone=BEN, action=OptAction.KEPT, source=OptSource.REPLY,
                        reason="START: entered by hand, only the operator lifts it",
                        at=start + timedelta(minutes=3))])
    calls = [("optouts", "history", "--json"), ("optouts", "history", "0712 345 678"),
             ("optouts", "history", BEN, "--json"), ("optouts", "history", "07x")]
    with ThreadPoolExecutor(len(calls)) as pool:  # independent processes: run together
        everything, ann, ben, bad = pool.map(lambda a: run_cli(*a), calls)
    assert [(e["phone"], e["action"], e["source"]) for e in json.loads(everything.stdout)] \
        == [(BEN, "kept", "reply"), (ANN, "removed", "reply"), (BEN, "added", "manual"),
            (ANN, "added", "reply")]  # newest first, numbers in full
    assert ann.returncode == 0, ann.stderr
    lines = [" ".join(line.split()[2:]) for line in ann.stdout.splitlines()]
    assert lines == [f"{ANN} removed reply START", f"{ANN} added reply STOP",
                     f"2 change(s) of {ANN}"]
    assert [e["action"] for e in json.loads(ben.stdout)] == ["kept", "added"]
    assert bad.returncode == 2
    assert "Invalid value for 'PHONE'" in bad.stderr
