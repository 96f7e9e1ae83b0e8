"""Sending again to the undelivered: ``Audience(undelivered_of=ID)`` selects exactly the
contacts whose message in campaign ID ended undelivered (minus the opt-out list), alone;
the preview and ``resend_undelivered`` build on it; ``campaign preview|send
--undelivered-of``. On SQLite and, when a server is given, PostgreSQL."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from engine.config.settings import Settings
from engine.domain.audience import Audience, AudienceError
from engine.domain.delivery import DeliveryStatus
from engine.domain.planning import PlanError
from engine.infra import redis_keys, scheduler
from engine.infra.sandbox_gateway import GatewayServer
from engine.operations.campaigns import CampaignError, resend_audience, resend_undelivered
from engine.operations.preview import preview_campaign
from engine.store.audience_query import count_audience, iter_audience
from engine.store.campaign_state import campaign_counts, campaign_summary
from engine.store.db import Database, open_database
from engine.store.models import (
    Campaign,
    CampaignStatus,
    Contact,
    MessageStatus,
    OptOut,
    OptSource,
    OutgoingMessage,
    utcnow,
)
from engine.store.retention import prune
from tests.support import run_cli

TODAY = date(2027, 3, 10)
# name: how its message in the first campaign ended (None: no message)
FIRST = {"Amina": DeliveryStatus.DELIVERED, "Baraka": DeliveryStatus.UNDELIVERED,
         "Chege": DeliveryStatus.UNDELIVERED, "Dora": DeliveryStatus.EXPIRED,
         "Eli": DeliveryStatus.AWAITING_REPORT, "Faith": None, "Gitau": DeliveryStatus.DELIVERED}
OPTED_OUT = "Chege"  # undelivered, then opted out: not sent again


def phone_of(name: str) -> str:
    return f"+25471100000{list(FIRST).index(name)}"


def add_campaign(db: Database, name: str, messages: dict[int | None, str | None],
                 *, urgent: bool = False) -> int:
    """A sent campaign: contact id (None: a number that is no contact's) -> delivery."""
    with db.session() as session:
        campaign = Campaign(name=name, template="Dear #name, #balance to go",
                            route="individual", queue="messages", urgent=urgent,
                            status=CampaignStatus.COMPLETED, recipients=len(messages))
        session.add(campaign)
        session.flush()
        for n, (contact_id, delivery) in enumerate(messages.items()):
            session.add(OutgoingMessage(
                campaign_id=campaign.id, contact_id=contact_id, phone=f"+2547990000{n:02d}",
                body="old text", encoding="GSM7", segments=1, status=MessageStatus.SENT,
                attempts=1, sent_at=datetime(2027, 3, 1, tzinfo=UTC), delivery=delivery,
                delivery_error="30003" if delivery == DeliveryStatus.UNDELIVERED else None))
        return campaign.id


@pytest.fixture
def sent(db: Database) -> dict[str, int]:
    """The contacts, and campaign 'first' as FIRST says, plus 'other' (Eli undelivered
    there, which says nothing about 'first'); names -> ids, campaigns under their names."""
    with db.session() as session:
        contacts = {name: Contact(name=name, phone=phone_of(name), pledge_cents=1000_00,
                                  paid_cents=250_00, due_date=date(2027, 6, 1))
                    for name in FIRST}
        session.add_all(contacts.values())
        session.add(OptOut(phone=phone_of(OPTED_OUT), reason="STOP", source=OptSource.REPLY))
        session.flush()
        ids = {name: c.id for name, c in contacts.items()}
    first = add_campaign(db, "Pledge drive", {
        ids[name]: delivery for name, delivery in FIRST.items() if name != "Faith"}
        | {None: DeliveryStatus.UNDELIVERED})  # a test send's number: no contact to reach
    other = add_campaign(db, "Other", {ids["Eli"]: DeliveryStatus.UNDELIVERED})
    return {**ids, "first": first, "other": other}


def test_exactly_the_undelivered_contacts_minus_opt_outs(db: Database,
                                                         sent: dict[str, int]) -> None:
    audience = Audience(undelivered_of=sent["first"])
    with db.session() as session:
        counted = count_audience(session, audience, TODAY)
        assert (counted.matched, counted.suppressed) == (2, 1)  # Baraka; Chege opted out
        assert [id_ for id_, _, _ in iter_audience(session, audience, TODAY)] == [
            sent["Baraka"]]
        other = [id_ for id_, _, _ in iter_audience(
            session, Audience(undelivered_of=sent["other"]), TODAY)]
        assert other == [sent["Eli"]]
        none = count_audience(session, Audience(undelivered_of=9_999), TODAY)
        assert (none.matched, none.suppressed) == (0, 0)


def test_undelivered_of_stands_alone_and_says_what_it_is() -> None:
    audience = Audience(undelivered_of=12)
    assert audience.describe() == "undelivered in campaign 12"
    assert Audience.from_json(audience.to_json()) == audience
    assert not audience.is_everyone
    for other in ({"tags": ("choir",)}, {"owing": True}, {"ids": ()}, {"overdue": True},
                  {"min_balance_cents": 0}):
        with pytest.raises(AudienceError, match="without other filters"):
            Audience(undelivered_of=12, **other)  # type: ignore[arg-type]


def test_the_preview_shows_who_gets_it_again(db: Database, db_settings: Settings,
                                            sent: dict[str, int]) -> None:
    with db.session() as session:
        preview = preview_campaign(session, db_settings, "Dear #name, #balance to go",
                                   audience=Audience(undelivered_of=sent["first"]))
    assert [(m.phone, m.text) for m in preview.messages] == [
        (phone_of("Baraka"), "Dear Baraka, 750 to go")]
    assert (preview.recipients, preview.suppressed) == (1, 1)


def test_resend_is_a_new_campaign_to_exactly_those(db: Database, db_settings: Settings,
                                                   redis_client: Any,
                                                   sent: dict[str, int]) -> None:
    with db.session() as session:  # paid since the first campaign: today's figures go out
        baraka = session.get(Contact, sent["Baraka"])
        assert baraka is not None
        baraka.paid_cents = 900_00
    created = resend_undelivered(db, redis_client, db_settings, sent["first"])
    assert (created.plan.recipients, created.suppressed) == (1, 1)
    with db.session() as session:
        campaign = session.get(Campaign, created.id)
        assert campaign is not None
        assert (campaign.name, campaign.template, campaign.urgent) == (
            "Again: Pledge drive", "Dear #name, #balance to go", False)
        rows = session.execute(select(OutgoingMessage.contact_id, OutgoingMessage.body)
                               .where(OutgoingMessage.campaign_id == created.id)).all()
        assert rows == [(sent["Baraka"], "Dear Baraka, 100 to go")]
        summary = campaign_summary(session, created.id)
        assert summary is not None
        assert summary["audience"] == f"undelivered in campaign {sent['first']}"
    jobs = [scheduler.Job.decode(raw) for raw in redis_client.zrange(redis_keys.SCHEDULED,
                                                                     0, -1)]
    assert {job.args[0] for job in jobs} == {created.id}

    own = resend_undelivered(db, redis_client, db_settings, sent["other"],
                             "Hello #name, one more try", "Eli again")
    with db.session() as session:
        campaign = session.get(Campaign, own.id)
        assert campaign is not None
        assert (campaign.name, campaign.template) == ("Eli again", "Hello #name, one more try")


def test_resend_refuses_when_nobody_is_left(db: Database, db_settings: Settings,
                                           sent: dict[str, int]) -> None:
    delivered = add_campaign(db, "All good", {sent["Amina"]: DeliveryStatus.DELIVERED,
                                              sent["Eli"]: DeliveryStatus.AWAITING_REPORT})
    strangers = add_campaign(db, "Test sends", {None: DeliveryStatus.UNDELIVERED})
    stopped = add_campaign(db, "Chege only", {sent["Chege"]: DeliveryStatus.UNDELIVERED})
    refusals: list[tuple[int, type[Exception], str]] = [
        (delivered, CampaignError, f"campaign {delivered} has no undelivered message"),
        (strangers, CampaignError, "1 undelivered message(s) went to numbers that are no "
                                   "longer, or never were, contacts"),
        (9_999, CampaignError, "there is no campaign 9999"),
        (stopped, PlanError, "all 1 contact(s) the filter matches have opted out"),
    ]
    # No Redis is given: each is refused before anything would be queued.
    for campaign_id, error, says in refusals:
        with pytest.raises(error) as refused:
            resend_undelivered(db, None, db_settings, campaign_id)
        assert says in str(refused.value)
    with db.session() as session:
        assert session.scalar(select(func.count(Campaign.id))) == 5  # none was added


def test_cli_preview_and_send_undelivered_of(settings: Settings, redis_client: Any,
                                             gateway: GatewayServer) -> None:
    # SQLite only: the store is tested on both databases above; this is the command.
    db = open_database(settings)
    with db.session() as session:
        session.add_all(Contact(name=name, phone=phone_of(name), pledge_cents=1000_00,
                                paid_cents=250_00, due_date=date(2027, 6, 1))
                        for name in ("Amina", "Baraka"))
        session.flush()
        amina, baraka = session.scalars(select(Contact.id).order_by(Contact.id)).all()
    first = add_campaign(db, "Pledge drive", {amina: DeliveryStatus.DELIVERED,
                                              baraka: DeliveryStatus.UNDELIVERED})
    calls = [("campaign", "preview", "--undelivered-of", str(first), "--json"),
             ("campaign", "preview", "--undelivered-of", str(first), "--template", "Hi #name",
              "--json"),
             ("campaign", "preview", "--undelivered-of", str(first), "--tag", "choir"),
             ("campaign", "send", "--undelivered-of", "9999")]
    with ThreadPoolExecutor(len(calls)) as pool:  # independent processes: run together
        default, own, mixed, unknown = pool.map(lambda a: run_cli(*a), calls)
    assert default.returncode == 0, default.stderr
    assert [(m["recipient"], m["text"]) for m in json.loads(default.stdout)["messages"]] == [
        (phone_of("Baraka"), "Dear Baraka, 750 to go")]
    assert [m["text"] for m in json.loads(own.stdout)["messages"]] == ["Hi Baraka"]
    assert mixed.returncode == 2
    assert "give it without other filters" in mixed.stderr
    assert unknown.returncode == 1
    assert "there is no campaign 9999" in unknown.stderr
    assert "Traceback" not in unknown.stderr + mixed.stderr

    result = run_cli("campaign", "send", "--undelivered-of", str(first), "--json")
    assert result.returncode == 0, result.stderr
    again = json.loads(result.stdout)
    assert (again["recipients"], again["status"]) == (1, "sending")
    with db.session() as session:
        campaign = session.get(Campaign, again["campaign"])
        assert campaign is not None
        assert campaign.name == "Again: Pledge drive"
        assert session.scalars(select(OutgoingMessage.contact_id).where(
            OutgoingMessage.campaign_id == again["campaign"])).all() == [baraka]


def test_resend_says_when_retention_removed_the_undelivered(db: Database,
                                                            settings: Settings) -> None:
    """The campaign's totals keep its pruned undelivered messages, but nobody can be sent
    to again: the refusal names retention instead of blaming contacts."""
    long_ago = utcnow() - timedelta(days=60)
    with db.session() as session:
        campaign = Campaign(name="Old", template="Hi", route="individual", queue="messages",
                            status=CampaignStatus.COMPLETED, recipients=1, created_at=long_ago)
        session.add(campaign)
        session.flush()
        session.add(OutgoingMessage(
            campaign_id=campaign.id, phone="+254713000015", body="Hi", encoding="GSM-7",
            segments=1, status=MessageStatus.SENT, attempts=1, created_at=long_ago,
            updated_at=long_ago, sent_at=long_ago, delivery="undelivered",
            delivery_at=long_ago))
        campaign_id = campaign.id
    assert prune(db, timedelta(days=30)).messages == 1
    with db.session() as session:
        assert campaign_counts(session, campaign_id)["undelivered"] == 1  # the total stays
    with pytest.raises(CampaignError, match="removed by retention"):
        resend_audience(db, settings, campaign_id)
