"""Audience filters: who each filter and combination selects, evaluated in SQLite and
PostgreSQL with "today" injected; what a campaign stores; and ``campaign preview``/``status``
as an operator runs them."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text

from engine.config.settings import Settings, load_settings
from engine.domain.audience import Audience, AudienceError
from engine.domain.personalize import Template
from engine.operations.campaigns import create_campaign
from engine.operations.preview import preview_campaign
from engine.store.audience_query import (
    count_audience,
    iter_audience,
    matching,
    render_audience,
)
from engine.store.campaign_state import campaign_summary
from engine.store.contacts_import import import_contacts
from engine.store.db import Database
from engine.store.models import Campaign, Contact, ContactTag, OptOut, OptSource, OutgoingMessage
from tests.support import run_cli, write_contacts

TODAY = date(2027, 3, 10)

# name: (pledge, paid, due date in days from TODAY, tags); phones follow the order.
PEOPLE = {
    "Amina": (500_00, 0, 0, ("choir",)),  # due today
    "Baraka": (800_00, 800_00, 7, ("choir", "youth")),  # paid in full
    "Chege": (300_00, 200_00, 8, ("youth",)),  # owes exactly 100.00
    "Dora": (100_00, 150_00, -1, ("elders",)),  # overpaid, due yesterday
    "Eli": (2_000_00, 1_000_00, -30, ("choir", "elders")),
    "Faith": (99_99, 0, 30, ()),  # owes 99.99
    "Gitau": (2_000_00, 0, 7, ("youth",)),  # opted out
}
OPTED_OUT = {"Gitau"}


def phone_of(name: str) -> str:
    return f"+25471100000{list(PEOPLE).index(name)}"


@pytest.fixture
def people(db: Database) -> dict[str, int]:
    """PEOPLE in the database (Gitau's number opted out, plus a stranger's); name -> id."""
    with db.session() as session:
        for name, (pledge, paid, due_in, tags) in PEOPLE.items():
            contact = Contact(name=name, phone=phone_of(name), pledge_cents=pledge,
                              paid_cents=paid, due_date=TODAY + timedelta(days=due_in))
            contact.tags = [ContactTag(tag=t) for t in tags]
            session.add(contact)
        session.add_all([OptOut(phone=phone_of(n), reason="asked", source=OptSource.MANUAL)
                         for n in OPTED_OUT])
        session.add(OptOut(phone="+254799999999", reason="", source=OptSource.IMPORT))
    with db.session() as session:
        return dict(session.execute(select(Contact.name, Contact.id)).all())


def check(db: Database, audience: Audience, matched: str, today: date = TODAY) -> None:
    """The audience matches ``matched`` (names, space-separated, in id order): its count
    says so, the opted-out ones are counted as suppressed and the rest are streamed."""
    expected = matched.split()
    recipients = [n for n in expected if n not in OPTED_OUT]
    with db.session() as session:
        names = dict(session.execute(select(Contact.id, Contact.name)).all())
        streamed = [(names[id_], phone) for id_, phone, _ in
                    iter_audience(session, audience, today)]
        counted = count_audience(session, audience, today)
    assert streamed == [(n, phone_of(n)) for n in recipients]
    assert (counted.matched, counted.suppressed, counted.recipients) == \
        (len(expected), len(expected) - len(recipients), len(recipients))


@pytest.mark.parametrize(("audience", "matched"), [
    (Audience(), "Amina Baraka Chege Dora Eli Faith Gitau"),
    (Audience(tags=("choir",)), "Amina Baraka Eli"),
    (Audience(tags=(" Choir ", "YOUTH")), "Amina Baraka Chege Eli Gitau"),  # any of; any case
    (Audience(tags=("nobody-has-it",)), ""),
    (Audience(exclude_tags=("elders",)), "Amina Baraka Chege Faith Gitau"),
    (Audience(exclude_tags=("elders", "youth")), "Amina Faith"),
    (Audience(tags=("choir",), exclude_tags=("Elders",)), "Amina Baraka"),  # exclude wins
    (Audience(tags=("elders",), exclude_tags=("elders",)), ""),
    (Audience(owing=True), "Amina Chege Eli Faith Gitau"),  # not 0, not overpaid
    (Audience(min_balance_cents=100_00), "Amina Chege Eli Gitau"),  # 100.00 in, 99.99 out
    (Audience(min_balance_cents=0), "Amina Baraka Chege Eli Faith Gitau"),
    (Audience(due_within_days=0), "Amina"),  # today only
    (Audience(due_within_days=7), "Amina Baraka Gitau"),  # both bounds inclusive
    (Audience(due_within_days=8), "Amina Baraka Chege Gitau"),
    (Audience(overdue=True), "Dora Eli"),  # yesterday and before, not today
    (Audience(overdue=True, owing=True), "Eli"),
    (Audience(tags=("choir", "youth"), exclude_tags=("elders",), owing=True,
              due_within_days=8), "Amina Chege Gitau"),
    (Audience(tags=("youth",), min_balance_cents=1_000_00, due_within_days=30), "Gitau"),
], ids=lambda v: v.to_json() if isinstance(v, Audience) else None)
def test_each_filter_and_combination(db: Database, people: dict[str, int],
                                     audience: Audience, matched: str) -> None:
    check(db, audience, matched)


def test_today_is_the_one_given(db: Database, people: dict[str, int]) -> None:
    """Due dates are judged from the day passed in (the campaign's), not this machine's."""
    check(db, Audience(due_within_days=0), "Baraka Gitau", today=TODAY + timedelta(days=7))
    check(db, Audience(overdue=True), "Amina Dora Eli", today=TODAY + timedelta(days=1))
    check(db, Audience(overdue=True), "Eli", today=TODAY - timedelta(days=1))


def test_selected_contacts(db: Database, people: dict[str, int]) -> None:
    picked = tuple(people[n] for n in ("Gitau", "Dora", "Amina"))
    check(db, Audience(ids=picked), "Amina Dora Gitau")
    check(db, Audience(ids=picked, owing=True), "Amina Gitau")
    check(db, Audience(ids=(max(people.values()) + 1,)), "")


def test_a_selection_larger_than_the_databases_parameter_limit(
        db: Database, people: dict[str, int]) -> None:
    """Selecting every row of a large table in Compose: more ids than SQLite (32,766) or
    PostgreSQL (65,535) take as bound parameters."""
    everyone = tuple(range(1, 70_001))
    check(db, Audience(ids=everyone), "Amina Baraka Chege Dora Eli Faith Gitau")
    check(db, Audience(ids=everyone, tags=("elders",)), "Dora Eli")


def test_overdue_is_counted_by_a_scan_on_sqlite(db: Database, people: dict[str, int]) -> None:
    """Overdue is often half the contacts: walking the due_date index for them, a row lookup
    each, took 3-6 times as long as a scan (benchmarks/audience_count.py)."""
    if db.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL chooses from its statistics")
    # Selecting the phone (as the count does, for the opt-out list) needs the row.
    stmt = matching(select(Contact.phone), Audience(overdue=True), TODAY)
    sql = stmt.compile(db.engine, compile_kwargs={"literal_binds": True})
    with db.session() as session:
        plan = [row[-1] for row in session.execute(text(f"EXPLAIN QUERY PLAN {sql}"))]
    assert not any("ix_contacts_due_date" in step for step in plan), plan
    narrow = matching(select(Contact.phone), Audience(due_within_days=7),
                      TODAY)  # a few days: the index helps
    sql = narrow.compile(db.engine, compile_kwargs={"literal_binds": True})
    with db.session() as session:
        plan = [row[-1] for row in session.execute(text(f"EXPLAIN QUERY PLAN {sql}"))]
    assert any("ix_contacts_due_date" in step for step in plan), plan


def test_rendered_with_the_day_given(db: Database, people: dict[str, int]) -> None:
    with db.session() as session:
        rendered = list(render_audience(session, Template.parse("#name #balance #days_remain"),
                                        Audience(due_within_days=8, owing=True), TODAY,
                                        "KES {amount}"))
    assert [m.text for m in rendered] == ["Amina KES 500 0", "Chege KES 100 8"]
    assert [m.contact_id for m in rendered] == [people["Amina"], people["Chege"]]


# --- the domain object ---------------------------------------------------------------------

@pytest.mark.parametrize("audience", [
    Audience(), Audience(tags=("b", "a")), Audience(exclude_tags=("x",), owing=True),
    Audience(min_balance_cents=0), Audience(min_balance_cents=12_345),
    Audience(due_within_days=0), Audience(overdue=True), Audience(ids=(3, 1, 2)),
    Audience(ids=()),  # a selection of nobody stays nobody, never everyone
    Audience(tags=("choir",), exclude_tags=("elders",), owing=True, min_balance_cents=500,
             due_within_days=7, ids=(9,)),
])
def test_stored_and_read_back_unchanged(audience: Audience) -> None:
    assert Audience.from_json(audience.to_json()) == audience
    assert Audience.from_json(None) == Audience.from_json("") == Audience()


def test_tags_and_ids_are_normalised() -> None:
    assert Audience(tags=(" Youth", "choir", "youth ")).tags == ("choir", "youth")
    assert Audience(ids=(3, 1, 3)).ids == (1, 3)
    assert Audience().is_everyone
    assert not Audience(ids=()).is_everyone


def test_description() -> None:
    assert Audience().describe() == "all contacts"
    assert Audience(tags=("choir", "youth"), exclude_tags=("elders",), owing=True,
                    min_balance_cents=1_250_050, due_within_days=7).describe("KES {amount}") \
        == ("tagged choir or youth, not tagged elders, owing, balance at least KES 12,500.50, "
            "due within 7 day(s)")
    assert Audience(overdue=True).describe() == "overdue"
    assert Audience(ids=(4, 5), owing=True).describe() == "2 selected contact(s), owing"


@pytest.mark.parametrize(("fields", "says"), [
    ({"min_balance_cents": -1}, "cannot be negative"),
    ({"due_within_days": -1}, "--due-within takes 0 to"),
    ({"due_within_days": 10**9}, "--due-within takes 0 to"),
    ({"overdue": True, "due_within_days": 3}, "give one of them"),
    ({"tags": ("choir", " ")}, "a tag cannot be empty"),
    ({"exclude_tags": ("",)}, "a tag cannot be empty"),
])
def test_nonsense_is_refused(fields: dict[str, object], says: str) -> None:
    with pytest.raises(AudienceError, match=says):
        Audience(**fields)  # type: ignore[arg-type]


# --- campaigns: the day in the campaign's zone, what is stored ----------------------------

def test_a_campaign_is_filtered_by_its_own_day_and_keeps_its_filter(
        db: Database, db_settings: Settings, people: dict[str, int]) -> None:
    """At 12:00 UTC on the 9th it is already the 10th (TODAY) in Kiritimati (UTC+14): a
    campaign in that zone sends to those due on the 10th."""
    now = datetime(2027, 3, 9, 12, 0, tzinfo=UTC)
    settings = load_settings({"RELAYDESK_TIMEZONE": "Pacific/Kiritimati"})
    due_today = Audience(due_within_days=0)
    with db.session() as session:
        preview = preview_campaign(session, settings, "Hi #name", audience=due_today, now=now)
    assert [m.phone for m in preview.messages] == [phone_of("Amina")]
    assert preview.send_day == TODAY

    owing_soon = Audience(tags=("youth", "choir"), owing=True, due_within_days=8)
    created = create_campaign(db, settings, "Hi #name", audience=owing_soon, now=now)
    assert created.suppressed == 1  # Gitau
    with db.session() as session:
        campaign = session.get(Campaign, created.id)
        assert campaign is not None
        assert Audience.from_json(campaign.audience) == owing_soon
        sent_to = list(session.scalars(select(OutgoingMessage.phone).where(
            OutgoingMessage.campaign_id == created.id).order_by(OutgoingMessage.id)))
        summary = campaign_summary(session, created.id)
    assert sent_to == [phone_of("Amina"), phone_of("Chege")]
    assert summary is not None
    assert (summary["recipients"], summary["suppressed"]) == (2, 1)
    assert summary["audience"] == "tagged choir or youth, owing, due within 8 day(s)"

    # A UTC campaign at the same instant is still on the 9th, when Dora is due.
    with db.session() as session:
        utc = preview_campaign(session, db_settings, "Hi #name", audience=due_today, now=now)
    assert utc.send_day == TODAY - timedelta(days=1)
    assert [m.phone for m in utc.messages] == [phone_of("Dora")]


# --- the CLI, as an operator runs it ---------------------------------------------------------

def test_preview_and_status_with_filters(db: Database, db_settings: Settings,
                                         tmp_path: Path) -> None:
    today = datetime.now(UTC).date()  # the CLI's "today": now, in RELAYDESK_TIMEZONE (UTC)

    def due(days: int) -> str:
        return (today + timedelta(days=days)).isoformat()

    rows = [("Amina", "0711000001", "500", "0", due(0), "Choir"),
            ("Baraka", "0711000002", "800", "800", due(3), "choir;youth"),  # paid up
            ("Chege", "0711000003", "300", "200", due(5), "youth"),
            ("Eli", "0711000004", "900", "0", due(2), "choir;elders"),  # excluded
            ("Faith", "0711000005", "900", "0", due(6), "youth"),  # due too late
            ("Gitau", "0711000006", "2000", "0", due(1), "youth"),  # opted out
            ("Hawa", "0711000007", "150", "0", due(4), "youth")]  # opted out
    import_contacts(db, write_contacts(tmp_path / "c.csv", rows), db_settings.default_region)
    with db.session() as session:
        session.add_all([OptOut(phone="+254711000006", reason="asked", source=OptSource.MANUAL),
                         OptOut(phone="+254711000007", reason="", source=OptSource.IMPORT),
                         OptOut(phone="+254711000009", reason="", source=OptSource.MANUAL)])
    filters = ["--tag", "choir", "--tag", "YOUTH", "--exclude-tag", "elders", "--owing",
               "--due-within", "5"]
    result = run_cli("campaign", "preview", "--template", "#name owes #balance", *filters,
                     "--json")
    assert result.returncode == 0, result.stderr
    preview = json.loads(result.stdout)
    assert [(m["recipient"], m["text"]) for m in preview["messages"]] == [
        ("+254711000001", "Amina owes 500"), ("+254711000003", "Chege owes 100")]
    assert preview["totals"]["recipients"] == 2
    assert preview["totals"]["suppressed"] == 2  # Gitau and Hawa matched, opted out

    # Only Gitau owes 1,000 or more, and he opted out: refused, and saying why.
    nobody = run_cli("campaign", "preview", "--template", "#name", "--min-balance", "1,000")
    assert nobody.returncode == 1
    assert "all 1 contact(s) the filter matches have opted out" in nobody.stderr

    audience = Audience(tags=("choir", "youth"), exclude_tags=("elders",), owing=True,
                        due_within_days=5)
    created = create_campaign(db, db_settings, "#name owes #balance", audience=audience)
    status = json.loads(run_cli("campaign", "status", str(created.id), "--json").stdout)
    assert status["audience"] == "tagged choir or youth, not tagged elders, owing, " \
                                 "due within 5 day(s)"
    assert (status["recipients"], status["suppressed"]) == (2, 2)


@pytest.mark.parametrize(("args", "says"), [
    (["--min-balance", "-5"], "Invalid value for '--min-balance': '-5' is negative"),
    (["--min-balance", "KES 500"], "'KES 500' is not a number; give an amount such as 500"),
    (["--min-balance", "1e30"], "above the largest amount accepted"),
    (["--due-within", "-1"], "--due-within takes 0 to 3660 days"),
    (["--due-within", "99999999999999999999"], "--due-within takes 0 to 3660 days"),
    (["--overdue", "--due-within", "3"], "select no one together: give one of them"),
    (["--tag", "choir", "--tag", " "], "a tag cannot be empty"),
])
def test_filter_usage_errors(args: list[str], says: str) -> None:
    result = run_cli("campaign", "preview", "--template", "Hi #name", *args)
    assert result.returncode == 2, result.stderr
    assert says in result.stderr
    assert "Traceback" not in result.stderr


def test_a_campaign_from_before_audiences_is_described_by_its_tag(db: Database) -> None:
    with db.session() as session:
        campaign = Campaign(name="Old", template="Hi #name", tag_filter="youth",
                            route="individual", queue="messages")
        session.add(campaign)
        session.flush()
        assert campaign_summary(session, campaign.id)["audience"] == "tagged youth"
