"""The opt-out list's history (every change kept with its source and time), replies
(the inbox row, STOP / START) and provider opt-out notices applied from reports; on SQLite
and, when a server is given, PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from engine.domain.delivery import (
    DEFAULT_OPTIN_KEYWORDS,
    DEFAULT_OPTOUT_KEYWORDS,
    Report,
    ReportKind,
)
from engine.store.db import Database
from engine.store.delivery_reports import OPTOUT_NOTICE_TEXT, Applied, apply_reports
from engine.store.delivery_state import claim
from engine.store.models import (
    Campaign,
    CampaignStatus,
    Contact,
    InboundMessage,
    MessageStatus,
    OptOut,
    OptSource,
    OutgoingMessage,
    utcnow,
)
from engine.store.optouts import (
    add_optouts,
    count_history,
    import_optouts,
    list_number,
    opt_out_history,
    remove_optouts,
)

ANN, BEN, CAROL = "+254712345678", "+254722000111", "+254733000222"
KEYWORDS: dict[str, Any] = {"optout_keywords": DEFAULT_OPTOUT_KEYWORDS,
                            "optin_keywords": DEFAULT_OPTIN_KEYWORDS}


def reply(phone: str, text: str, *, ref: str = "", provider: str = "twilio",
          at: datetime | None = None) -> Report:
    return Report(ReportKind.INBOUND, provider, message_id=ref, phone=phone, to="+15005550006",
                  text=text, received_at=(at or utcnow()).timestamp())


def apply(db: Database, *reports: Report) -> Applied:
    with db.session() as session:
        return apply_reports(session, list(reports), **KEYWORDS)


def history(db: Database, phone: str | None = None) -> list[tuple[str, str, str, str]]:
    """(phone, action, source, reason) newest first."""
    with db.session() as session:
        return [(e["phone"], e["action"], e["source"], e["reason"])
                for e in opt_out_history(session, phone)]


def listed(db: Database) -> dict[str, str]:
    """Listed number -> its source."""
    with db.session() as session:
        return dict(session.execute(select(OptOut.phone, OptOut.source)).all())


# --- the list's own changes ---------------------------------------------------------------

def test_every_change_to_the_list_is_kept_and_a_listed_number_is_never_overwritten(
        db: Database, tmp_path: Path) -> None:
    with db.session() as session:
        add_optouts(session, [ANN], region="KE", reason="asked by phone")
        list_number(session, BEN, reason="Twilio 21610: unsubscribed", source=OptSource.PROVIDER)
    with db.session() as session:
        # Listed already, by someone else: the entry and its source stay, nothing is written.
        assert add_optouts(session, [BEN], region="KE", reason="again").already == 1
        assert not list_number(session, ANN, reason="STOP", source=OptSource.REPLY)
    path = tmp_path / "paper.csv"
    path.write_text(f"phone\n{CAROL}\n{ANN}\n")
    assert import_optouts(db, path, region="KE", reason="paper list").imported == 1
    with db.session() as session:
        assert remove_optouts(session, [ANN, "+254799999999"], region="KE",
                              reason="asked to come back").removed == 1
    assert listed(db) == {BEN: "provider", CAROL: "import"}
    assert sorted(history(db)) == sorted([
        (ANN, "added", "manual", "asked by phone"),
        (BEN, "added", "provider", "Twilio 21610: unsubscribed"),
        (CAROL, "added", "import", "paper list"),
        (ANN, "removed", "manual", "asked to come back")])
    assert history(db, ANN)[0] == (ANN, "removed", "manual", "asked to come back")
    with db.session() as session:
        assert (count_history(session), count_history(session, ANN)) == (4, 2)


def test_history_is_newest_first_and_pages(db: Database) -> None:
    start = datetime(2027, 1, 1, tzinfo=UTC)
    with db.session() as session:
        for i in range(5):
            list_number(session, f"+25471200000{i}", reason=f"n{i}", source=OptSource.REPLY,
                        at=start + timedelta(minutes=i))
    with db.session() as session:
        page = opt_out_history(session, offset=1, limit=2)
        assert [e["reason"] for e in page] == ["n3", "n2"]
        assert page[0]["at"] == (start + timedelta(minutes=3)).isoformat()
        assert set(page[0]) == {"id", "phone", "action", "source", "reason", "at"}
        assert count_history(session) == 5


# --- replies ----------------------------------------------------------------------------------

def _sent_to(db: Database, phone: str, *, sent: bool) -> int:
    with db.session() as session:
        campaign = Campaign(name="Reminder", template="Hi", route="individual",
                            queue="messages", status=CampaignStatus.COMPLETED)
        session.add(campaign)
        session.flush()
        session.add(OutgoingMessage(campaign_id=campaign.id, phone=phone, body="Hi",
                                    encoding="GSM-7", segments=1,
                                    status=MessageStatus.SENT if sent else MessageStatus.QUEUED,
                                    sent_at=utcnow() if sent else None))
        return campaign.id


def test_a_reply_is_stored_with_its_contact_and_the_campaign_last_sent_to_it(
        db: Database) -> None:
    with db.session() as session:
        session.add(Contact(name="Ann", phone=ANN, pledge_cents=100, paid_cents=0,
                            due_date=date(2027, 1, 1)))
    first = _sent_to(db, ANN, sent=True)
    second = _sent_to(db, ANN, sent=True)
    _sent_to(db, ANN, sent=False)  # queued, not sent yet: not what she answers
    at = datetime(2027, 2, 3, 4, 5, 6, tzinfo=UTC)
    applied = apply(db, reply(ANN, "Please stop texting me", ref="SM1", at=at),
                    reply(BEN, "Who is this?", provider="africastalking"))
    assert (applied.reports, applied.inbound, applied.opted_out_by_reply) == (2, 2, [])
    assert applied.by_provider["twilio"].inbound == 1
    with db.session() as session:
        rows = [(m.phone, m.text, m.contact_id is not None, m.campaign_id, m.keyword,
                 m.provider, m.provider_ref, m.received_at)
                for m in session.scalars(select(InboundMessage).order_by(InboundMessage.id))]
    assert first < second
    assert rows[0] == (ANN, "Please stop texting me", True, second, None, "twilio", "SM1", at)
    assert rows[1][:5] == (BEN, "Who is this?", False, None, None)
    assert listed(db) == {}  # a keyword inside a longer message is no keyword


def test_the_same_reply_posted_twice_is_stored_once(db: Database) -> None:
    same = reply(ANN, " stop! ", ref="SM9")
    first = apply(db, same, reply(ANN, " stop! ", ref="SM9"))  # the provider's retry
    again = apply(db, same)  # the applier's retry
    assert (first.inbound, first.duplicates, again.inbound, again.duplicates) == (1, 1, 0, 1)
    assert first.opted_out_by_reply == [ANN]
    with db.session() as session:
        assert session.scalar(select(InboundMessage.keyword)) == "optout"
    assert history(db) == [(ANN, "added", "reply", "replied STOP")]


def test_stop_and_start_round_trip(db: Database) -> None:
    now = utcnow()
    stop = apply(db, reply(ANN, "Stop", at=now))
    assert stop.opted_out_by_reply == [ANN]
    assert listed(db) == {ANN: "reply"}
    again = apply(db, reply(ANN, "UNSUBSCRIBE", at=now + timedelta(seconds=1)))
    assert again.opted_out_by_reply == []  # listed already: kept as it was, no confirmation
    apply(db, reply(ANN, "start", at=now + timedelta(seconds=2)))
    assert listed(db) == {}
    apply(db, reply(ANN, "START", at=now + timedelta(seconds=3)))  # not listed: no change
    assert history(db) == [(ANN, "removed", "reply", "replied START"),
                           (ANN, "added", "reply", "replied STOP")]
    with db.session() as session:
        keywords = list(session.scalars(select(InboundMessage.keyword)
                                        .order_by(InboundMessage.id)))
    assert keywords == ["optout", "optout", "optin", "optin"]


def test_stop_then_start_in_one_batch_ends_off_the_list_with_no_confirmation(
        db: Database) -> None:
    now = utcnow()
    applied = apply(db, reply(ANN, "STOP", at=now), reply(ANN, "START", at=now))
    assert applied.opted_out_by_reply == []
    assert listed(db) == {}
    assert [a for _, a, _, _ in history(db)] == ["removed", "added"]


@pytest.mark.parametrize("source", [OptSource.MANUAL, OptSource.IMPORT])
def test_start_does_not_lift_what_the_operator_listed_and_says_so(
        db: Database, source: OptSource) -> None:
    with db.session() as session:
        add_optouts(session, [ANN], region="KE", reason="asked in person", source=source)
    stop = apply(db, reply(ANN, "STOP"))
    assert stop.opted_out_by_reply == []
    assert listed(db) == {ANN: str(source)}  # the operator's entry stays as it was
    apply(db, reply(ANN, "START"))
    assert listed(db) == {ANN: str(source)}
    kept, added = history(db)
    assert added == (ANN, "added", str(source), "asked in person")
    assert kept[:3] == (ANN, "kept", "reply")
    assert kept[3].startswith("replied START; kept: listed by the operator")
    with db.session() as session:  # the operator lifts it
        remove_optouts(session, [ANN], region="KE")
    assert listed(db) == {}


def test_start_lifts_a_provider_or_reply_opt_out(db: Database) -> None:
    with db.session() as session:
        list_number(session, ANN, reason="21610", source=OptSource.PROVIDER)
    apply(db, reply(ANN, "UNSTOP"))
    assert listed(db) == {}


def notice(phone: str, at: datetime | None = None) -> Report:
    """Africa's Talking's opt-out notification (phoneNumber, senderId)."""
    return Report(ReportKind.OPTOUT, "africastalking", phone=phone, to="RELAYDESK",
                  received_at=(at or utcnow()).timestamp())


def test_a_provider_opt_out_notice_lists_the_number_and_shows_in_the_inbox(
        db: Database) -> None:
    with db.session() as session:
        session.add(Contact(name="Ben", phone=BEN, pledge_cents=100, paid_cents=0,
                            due_date=date(2027, 1, 1)))
    campaign = _sent_to(db, BEN, sent=True)
    at = datetime(2027, 1, 2, tzinfo=UTC)
    applied = apply(db, notice(BEN, at))
    assert (applied.reports, applied.inbound, applied.opted_out_by_reply) == (1, 0, [])
    assert applied.by_provider["africastalking"].reports == 1
    assert listed(db) == {BEN: "provider"}
    with db.session() as session:
        [event] = opt_out_history(session)
        row = session.scalars(select(InboundMessage)).one()
    assert (event["action"], event["source"], event["reason"], event["at"]) == (
        "added", "provider", "opt-out notice from africastalking", at.isoformat())
    assert (row.phone, row.keyword, row.text, row.provider, row.to, row.received_at,
            row.campaign_id, row.contact_id is not None) == (
        BEN, "optout", OPTOUT_NOTICE_TEXT, "africastalking", "RELAYDESK", at, campaign, True)
    assert apply(db, notice(BEN)).reports == 1  # posted again: already listed, no change
    assert len(history(db)) == 1


def test_an_opt_out_notice_then_a_later_start_in_one_batch_ends_off_the_list(
        db: Database) -> None:
    now = utcnow()
    apply(db, notice(ANN, now), reply(ANN, "START", at=now + timedelta(seconds=1)),
          reply(BEN, "START", at=now), notice(BEN, now + timedelta(seconds=1)))
    assert listed(db) == {BEN: "provider"}  # each in the order it came
    assert [a for _, a, _, _ in history(db, ANN)] == ["removed", "added"]


def test_an_opt_out_notice_applied_again_does_not_list_what_a_later_start_lifted(
        db: Database) -> None:
    # The applier died after its commit, before trimming the inbox: it applies the same
    # reports (same receipts) again, after a newer START took the number off.
    now = utcnow()
    first = notice(ANN, now)
    apply(db, first)
    apply(db, reply(ANN, "START", at=now + timedelta(seconds=1)))
    assert listed(db) == {}
    again = apply(db, first)
    assert (again.reports, again.duplicates) == (0, 1)
    assert listed(db) == {}
    assert [a for _, a, _, _ in history(db, ANN)] == ["removed", "added"]


def test_a_stop_reply_suppresses_the_next_campaigns_message(db: Database) -> None:
    apply(db, reply(CAROL, "quit"))
    campaign = _sent_to(db, CAROL, sent=False)
    with db.session() as session:
        message_id = session.scalar(select(OutgoingMessage.id)
                                    .where(OutgoingMessage.campaign_id == campaign))
        assert message_id is not None
        claimed = claim(session, message_id, [MessageStatus.QUEUED], "messages")
        assert claimed is not None
        assert claimed.suppressed


def test_a_reply_with_characters_no_database_takes_is_stored_cleaned(db: Database) -> None:
    # JSON carries a lone surrogate and NUL as escapes; neither driver stores them.
    applied = apply(db, reply(ANN, "Asante \ud800 sana\x00 \U0001f600", ref="SM\x007"),
                    Report(ReportKind.STATUS, "sandbox", message_id="x\x00", error="\ud83d"))
    assert (applied.reports, applied.inbound) == (2, 1)
    with db.session() as session:
        inbound = session.scalars(select(InboundMessage)).one()
    assert (inbound.text, inbound.provider_ref) == ("Asante ? sana \U0001f600", "SM7")
