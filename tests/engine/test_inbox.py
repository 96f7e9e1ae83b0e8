"""The reply inbox: received messages listed newest first, searched, filtered by age and by
"handled", marked handled and back; a reply to one through the normal send path, and its
refusals; and ``relaydesk inbox`` as an operator runs it. On SQLite and, when a server is
given, PostgreSQL. The rows are written here as the report applier writes them."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from engine.config.settings import Settings
from engine.domain.delivery import ReplyKeyword
from engine.infra import redis_keys, scheduler
from engine.infra.sandbox_gateway import GatewayServer
from engine.operations.campaigns import CampaignError
from engine.operations.inbox import reply_to
from engine.store.db import Database, open_database
from engine.store.inbox import count_inbox, get_inbound, inbox_dict, list_inbox, mark_handled
from engine.store.models import (
    Campaign,
    CampaignStatus,
    Contact,
    InboundMessage,
    OptOut,
    OptSource,
    OutgoingMessage,
)
from tests.support import run_cli, run_cli_json

ANN, BEN, CAROL = "+254712345678", "+254722000111", "+254733000222"
T0 = datetime(2027, 3, 1, 9, tzinfo=UTC)


def _receipt(n: int) -> str:
    return f"{n:032x}"


def add_inbox(db: Database, now: datetime = T0) -> dict[str, int]:
    """Ann (a contact, answering 'Pledge drive'), Ben (no contact) and Carol write in;
    name -> inbound id."""
    with db.session() as session:
        ann = Contact(name="Ann Wanjiru", phone=ANN, pledge_cents=100_00, paid_cents=0,
                      due_date=date(2027, 6, 1))
        campaign = Campaign(name="Pledge drive", template="Hi #name", route="individual",
                            queue="messages", status=CampaignStatus.COMPLETED)
        session.add_all([ann, campaign])
        session.flush()
        rows = {
            "paid": InboundMessage(receipt=_receipt(1), provider="twilio", phone=ANN,
                                   text="Paid 100% today, thanks", contact_id=ann.id,
                                   campaign_id=campaign.id,
                                   received_at=now - timedelta(days=3)),
            "stop": InboundMessage(receipt=_receipt(2), provider="africastalking",
                                   phone=BEN, text="Stop.", keyword=ReplyKeyword.OPT_OUT,
                                   received_at=now - timedelta(hours=5)),
            "question": InboundMessage(receipt=_receipt(3), provider="twilio", phone=ANN,
                                       text="When is the HARAMBEE?", contact_id=ann.id,
                                       campaign_id=campaign.id,
                                       received_at=now - timedelta(hours=2),
                                       handled_at=now - timedelta(hours=1)),
            "start": InboundMessage(receipt=_receipt(4), provider="sandbox", phone=CAROL,
                                    text="start", keyword=ReplyKeyword.OPT_IN,
                                    received_at=now - timedelta(hours=2)),
        }
        session.add_all(rows.values())
        session.flush()
        return {name: row.id for name, row in rows.items()}


def test_newest_first_with_contact_and_campaign(db: Database) -> None:
    ids = add_inbox(db)
    with db.session() as session:
        entries = list_inbox(session)
        assert count_inbox(session) == 4
        # Two at the same moment: the later id first, so pages never overlap.
        assert [e.id for e in entries] == [ids["start"], ids["question"], ids["stop"],
                                           ids["paid"]]
        paid = entries[-1]
        assert (paid.phone, paid.contact_name, paid.campaign_name, paid.provider) == (
            ANN, "Ann Wanjiru", "Pledge drive", "twilio")
        assert (paid.keyword, paid.handled_at) == (None, None)
        stop = entries[2]
        assert (stop.contact_id, stop.contact_name, stop.campaign_id, stop.keyword) == (
            None, None, None, "optout")
        assert [e.id for e in list_inbox(session, offset=1, limit=2)] == [
            ids["question"], ids["stop"]]
        assert get_inbound(session, ids["stop"]) == stop
        assert get_inbound(session, 99_999) is None


@pytest.mark.parametrize(("search", "found"), [
    ("harambee", ["question"]),  # any case
    ("ANN wanj", ["question", "paid"]),  # the contact's name
    ("0722 000", ["stop"]),  # a number as written locally
    ("+25473", ["start"]),  # part of the E.164 number
    ("100%", ["paid"]),  # as typed, not a wildcard
    ("%", ["paid"]),
    ("_", []),
    ("nobody", []),
    ("", ["start", "question", "stop", "paid"]),  # no search
])
def test_search_finds_text_number_and_contact_name(db: Database, search: str,
                                                   found: list[str]) -> None:
    ids = add_inbox(db)
    with db.session() as session:
        entries = list_inbox(session, search=search)
        assert [e.id for e in entries] == [ids[name] for name in found]
        assert count_inbox(session, search=search) == len(found)


def test_since_and_unhandled(db: Database) -> None:
    ids = add_inbox(db)
    with db.session() as session:
        recent = list_inbox(session, since=T0 - timedelta(hours=6))
        assert [e.id for e in recent] == [ids["start"], ids["question"], ids["stop"]]
        assert count_inbox(session, since=T0 - timedelta(hours=6)) == 3
        open_ = list_inbox(session, unhandled_only=True, since=T0 - timedelta(hours=6))
        assert [e.id for e in open_] == [ids["start"], ids["stop"]]
        assert count_inbox(session, unhandled_only=True, search="t") == 3


def test_mark_handled_and_back(db: Database) -> None:
    ids = add_inbox(db)
    with db.session() as session:
        first_handled = session.get(InboundMessage, ids["question"])
        assert first_handled is not None
        kept = first_handled.handled_at
        # 'question' was handled already: it keeps its first time, and is not counted.
        assert mark_handled(session, [ids["stop"], ids["question"], 99_999]) == 1
        assert mark_handled(session, [ids["stop"]]) == 0
        assert mark_handled(session, []) == 0
    with db.session() as session:
        assert count_inbox(session, unhandled_only=True) == 2
        question = get_inbound(session, ids["question"])
        assert question is not None
        assert question.handled_at == kept
        assert mark_handled(session, [ids["stop"], ids["start"]], handled=False) == 1
    with db.session() as session:
        assert [e.id for e in list_inbox(session, unhandled_only=True)] == [
            ids["start"], ids["stop"], ids["paid"]]


def test_inbox_dict_is_json(db: Database) -> None:
    ids = add_inbox(db)
    with db.session() as session:
        entry = get_inbound(session, ids["question"])
    assert entry is not None
    data = json.loads(json.dumps(inbox_dict(entry)))
    assert data == {
        "id": ids["question"], "received_at": (T0 - timedelta(hours=2)).isoformat(),
        "phone": ANN, "contact_id": entry.contact_id, "contact_name": "Ann Wanjiru",
        "campaign_id": entry.campaign_id, "campaign_name": "Pledge drive",
        "text": "When is the HARAMBEE?", "keyword": None,
        "handled_at": (T0 - timedelta(hours=1)).isoformat(), "provider": "twilio"}


# --- replying ---------------------------------------------------------------------------

def test_a_reply_is_a_one_off_campaign_to_that_number(db: Database, db_settings: Settings,
                                                      redis_client: Any) -> None:
    ids = add_inbox(db)
    text = "Thanks Ann! See you at the #GivingDay ## 50% off"
    created = reply_to(db, redis_client, db_settings, ids["paid"], text)
    assert (created.plan.recipients, created.plan.queue) == (1, "messages")  # not urgent
    with db.session() as session:
        campaign = session.get(Campaign, created.id)
        assert campaign is not None
        assert campaign.name == "Reply to +2547******78"
        assert (campaign.urgent, campaign.status) == (False, "sending")
        message = session.scalars(select(OutgoingMessage)
                                  .where(OutgoingMessage.campaign_id == created.id)).one()
        ann = session.scalars(select(Contact).where(Contact.phone == ANN)).one()
        # Sent as written: '#' is text in a reply, not a tag.
        assert (message.phone, message.body, message.contact_id) == (ANN, text, ann.id)
        handled = get_inbound(session, ids["paid"])
        assert handled is not None
        assert handled.handled_at is not None
    jobs = [scheduler.Job.decode(raw)
            for raw in redis_client.zrange(redis_keys.SCHEDULED, 0, -1)]
    assert [(job.args[0], job.args[1]) for job in jobs] == [(created.id, message.id)]

    # A number that is no contact's gets its reply too, with no contact on the row.
    to_ben = reply_to(db, redis_client, db_settings, ids["stop"], "Noted, Ben")
    with db.session() as session:
        row = session.scalars(select(OutgoingMessage)
                              .where(OutgoingMessage.campaign_id == to_ben.id)).one()
        assert (row.phone, row.contact_id, row.body) == (BEN, None, "Noted, Ben")


@pytest.mark.parametrize(("which", "text", "says"), [
    ("paid", "  ", "the reply is empty"),
    (None, "Hello", "there is no received message 99999"),
    ("stop", "Hello", "+2547******11 is on the opt-out list"),
])
def test_a_reply_that_cannot_go_creates_nothing(db: Database, db_settings: Settings,
                                                which: str | None, text: str,
                                                says: str) -> None:
    ids = add_inbox(db)
    with db.session() as session:
        session.add(OptOut(phone=BEN, reason="STOP", source=OptSource.REPLY))
    inbound_id = ids[which] if which else 99_999
    # No Redis is given: the refusal comes first.
    with pytest.raises(CampaignError, match=re.escape(says)):
        reply_to(db, None, db_settings, inbound_id, text)
    with db.session() as session:
        assert session.scalar(select(func.count(Campaign.id))) == 1  # 'Pledge drive' only
        assert count_inbox(session, unhandled_only=True) == 3


# --- the command line -------------------------------------------------------------------

def test_cli_inbox_list_handled_and_reply(settings: Settings, redis_client: Any,
                                          gateway: GatewayServer) -> None:
    # SQLite only: the store is tested on both databases above; this is the command.
    db = open_database(settings)
    now = datetime.now(UTC)
    ids = add_inbox(db, now)
    reads = [("inbox", "--json"), ("inbox", "--since", "1d", "--unhandled", "--json"),
             ("inbox", "--search", "stop"), ("inbox",),
             ("inbox", "reply", "99999", "--text", "Hi")]
    with ThreadPoolExecutor(len(reads)) as pool:  # independent processes: run together
        listed, recent, table, full, unknown = pool.map(lambda a: run_cli(*a), reads)
    assert [e["id"] for e in json.loads(listed.stdout)] == [
        ids["start"], ids["question"], ids["stop"], ids["paid"]]
    assert json.loads(listed.stdout)[2]["phone"] == BEN  # in full: the operator's records
    assert [e["id"] for e in json.loads(recent.stdout)] == [ids["start"], ids["stop"]]
    assert table.returncode == 0, table.stderr
    rows = table.stdout.splitlines()
    assert rows[0].split() == ["ID", "RECEIVED", "FROM", "CONTACT", "CAMPAIGN", "MARK",
                               "HANDLED", "TEXT"]
    assert rows[1].split()[3:] == [BEN, "-", "-", "STOP", "Stop."]
    assert rows[-1] == "1 of 1 received message(s) matching 'stop'"
    assert f"{ANN} Ann Wanjiru" in " ".join(full.stdout.split())
    assert "Pledge drive" in full.stdout
    assert "handled" in full.stdout
    assert unknown.returncode == 1
    assert "there is no received message 99999" in unknown.stderr
    assert "Traceback" not in unknown.stderr

    marked = run_cli("inbox", "handled", str(ids["stop"]), str(ids["question"]))
    assert marked.returncode == 0, marked.stderr
    assert marked.stdout.strip() == ("Marked 1 message(s) handled; 1 already were, or do "
                                     "not exist.")
    assert run_cli_json("inbox", "handled", str(ids["question"]), "--undo") == {
        "changed": 1, "handled": False}
    reply = run_cli_json("inbox", "reply", str(ids["start"]), "--text", "Welcome back")
    with db.session() as session:
        row = session.scalars(select(OutgoingMessage)
                              .where(OutgoingMessage.campaign_id == reply["campaign"])).one()
        assert (row.phone, row.body) == (CAROL, "Welcome back")
    with db.session() as session:  # 'start' handled by its reply, 'question' undone
        assert [e.id for e in list_inbox(session, unhandled_only=True)] == [
            ids["question"], ids["paid"]]


def test_cli_inbox_shows_no_terminal_escapes_from_a_reply(settings: Settings) -> None:
    """A member's text is theirs to choose: escape sequences in it (retitle the window,
    hide text, write the clipboard) must not reach the operator's terminal."""
    hostile = "\x1b]0;owned\x07\x1b[8mhidden\x1b[0m\x9b2J ok"
    with open_database(settings).session() as session:
        session.add(InboundMessage(receipt=_receipt(9), provider="sandbox", phone=BEN,
                                   text=hostile, received_at=datetime.now(UTC)))
    table = run_cli("inbox")
    assert table.returncode == 0, table.stderr
    assert "\x1b" not in table.stdout
    assert "\x07" not in table.stdout
    assert "\x9b" not in table.stdout
    assert "?]0;owned??[8mhidden?[0m?2J ok" in table.stdout
    assert json.loads(run_cli("inbox", "--json").stdout)[0]["text"] == hostile  # kept whole


def test_cli_inbox_on_a_first_start_says_where_replies_come_from(settings: Settings) -> None:
    empty = run_cli("inbox")
    assert empty.returncode == 0, empty.stderr
    assert empty.stdout.startswith("No messages received yet.")
    assert "relaydesk receiver" in empty.stdout
    assert run_cli("inbox", "--search", "x").stdout.strip() == (
        "0 of 0 received message(s) matching 'x'")
