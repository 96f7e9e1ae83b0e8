"""The Unicode hints of a preview: which characters force UCS-2, where each comes from (the
template, a contact's data, the currency format), how often, and what they cost."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select

from engine.config.settings import Settings
from engine.domain.audience import EVERYONE
from engine.operations.preview import (
    CONTACTS_LISTED,
    Source,
    Ucs2Character,
    preview_campaign,
    summarise,
    unicode_hint,
)
from engine.store.contacts_import import import_contacts
from engine.store.db import Database
from engine.store.models import Contact
from tests.support import run_cli as run
from tests.support import write_contacts

TODAY = date(2026, 11, 27)
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
DUE = (TODAY + timedelta(days=20)).isoformat()


def seed(db: Database, settings: Settings, tmp_path: Path, names: list[str]) -> list[int]:
    """The contacts' ids, in the order of ``names``."""
    rows = [(name, f"07{n:08d}", "1000", "100", DUE, "") for n, name in enumerate(names, 1)]
    import_contacts(db, write_contacts(tmp_path / "contacts.csv", rows), settings.default_region)
    with db.session() as session:
        return list(session.scalars(select(Contact.id).order_by(Contact.id)))


def test_template_and_contact_characters_are_told_apart(db: Database, db_settings: Settings,
                                                        tmp_path: Path) -> None:
    names = ["Amina", "Zoé ✓", "Seán O’Brien", "Brian", "Wanjiru ✓✓"]
    ids = seed(db, db_settings, tmp_path, names)
    settings = replace(db_settings, price_per_segment=Decimal("0.80"))
    template = "Dear #name, it’s “#balance” left… thanks ✓"
    with db.session() as session:
        preview = preview_campaign(session, settings, template, limit=1, now=NOW)
    found = preview.as_dict()
    by_key = {(c["char"], c["source"]): c for c in found["ucs2_characters"]}
    # in the template: once per message, in each of the 5
    assert by_key["’", "template"] == {"char": "’", "name": "U+2019 RIGHT SINGLE QUOTATION MARK",
                                       "count": 5, "source": "template", "replacement": "'"}
    assert by_key["…", "template"]["replacement"] == "..."
    assert by_key["“", "template"]["count"] == by_key["”", "template"]["count"] == 5
    # ✓ has no GSM-7 equivalent: no replacement key
    assert by_key["✓", "template"] == {"char": "✓", "name": "U+2713 CHECK MARK", "count": 5,
                                       "source": "template"}
    # also in names: listed a second time, with the contacts it comes from
    assert by_key["✓", "contacts"] == {"char": "✓", "name": "U+2713 CHECK MARK", "count": 3,
                                       "source": "contacts", "contacts": [ids[1], ids[4]],
                                       "contacts_total": 2}
    assert by_key["’", "contacts"]["contacts"] == [ids[2]]
    assert by_key["’", "contacts"]["count"] == 1
    assert by_key["’", "contacts"]["replacement"] == "'"
    # a letter is never swapped for another: no replacement
    assert by_key["á", "contacts"] == {"char": "á", "name": "U+00E1 LATIN SMALL LETTER A WITH "
                                       "ACUTE", "count": 1, "source": "contacts",
                                       "contacts": [ids[2]], "contacts_total": 1}
    assert "é" not in {c["char"] for c in found["ucs2_characters"]}  # é is GSM-7
    assert len(by_key) == len(found["ucs2_characters"]) == 8
    counts = [c["count"] for c in found["ucs2_characters"]]
    assert counts == sorted(counts, reverse=True)
    # ✓ stays whatever is replaced: every message stays UCS-2, replacing saves nothing
    assert found["totals"]["unicode_extra_segments"] == 0
    assert found["totals"]["unicode_extra_cost"] == "0.00"


def test_what_the_unicode_costs(db: Database, db_settings: Settings, tmp_path: Path) -> None:
    ids = seed(db, db_settings, tmp_path, [f"Member {n}" for n in range(1, 5)] + ["Zoé ✓"])
    settings = replace(db_settings, price_per_segment=Decimal("0.80"))
    # 84 characters with a member's name: 2 UCS-2 segments, 1 in GSM-7
    template = "Dear #name, your pledge’s balance is #balance. Thank you for giving, see you!"
    with db.session() as session:
        summary = summarise(session, settings, template, EVERYONE, today=TODAY)
        preview = preview_campaign(session, settings, template, now=NOW)
    assert (summary.segments, summary.ucs2) == (10, 5)
    # the four members would take 1 each; Zoé's ✓ keeps hers UCS-2 (2 segments)
    assert summary.unicode_extra_segments == 4
    assert summary.unicode_extra_cost == Decimal("3.20")
    assert summary.ucs2_characters == (
        Ucs2Character("’", 5, Source.TEMPLATE, "'"),
        Ucs2Character("✓", 1, Source.CONTACTS, None, (ids[4],), 1),
    )
    totals = preview.as_dict()["totals"]
    assert (totals["unicode_extra_segments"], totals["unicode_extra_cost"]) == (4, "3.20")


def test_all_gsm7_has_no_hints_and_extension_characters_stay_exact(
        db: Database, db_settings: Settings, tmp_path: Path) -> None:
    seed(db, db_settings, tmp_path, ["Amina [east]", "Brian"])
    # 80 extension characters are 160 septets: one GSM-7 segment; with the name, two
    template = "#name " + "€" * 74
    with db.session() as session:
        preview = preview_campaign(session, db_settings, template, now=NOW)
    found = preview.as_dict()
    assert found["ucs2_characters"] == []
    assert [m["segments"] for m in found["messages"]] == [2, 1]  # 162 and 154 septets
    assert [m["encoding"] for m in found["messages"]] == ["GSM-7", "GSM-7"]
    assert found["totals"]["unicode_extra_segments"] == 0


def test_a_currency_format_outside_gsm7_is_a_setting(db: Database, db_settings: Settings,
                                                     tmp_path: Path) -> None:
    seed(db, db_settings, tmp_path, ["Amina", "Brian", "Chidi"])
    settings = replace(db_settings, currency_format="₦\u00a0{amount}")
    with db.session() as session:
        summary = summarise(session, settings, "#name: #balance of #pledge", EVERYONE,
                            today=TODAY)
        plain = summarise(session, settings, "#name, #days_remain days", EVERYONE,
                          today=TODAY)
    # twice a message (two amounts), three messages; not blamed on the contacts
    assert summary.ucs2_characters == (
        Ucs2Character("\u00a0", 6, Source.SETTINGS, " "),
        Ucs2Character("₦", 6, Source.SETTINGS, None),
    )
    assert plain.ucs2_characters == ()  # no amount in the message, no currency sign


def test_contacts_listed_are_capped_and_counted(db: Database, db_settings: Settings,
                                                tmp_path: Path) -> None:
    ids = seed(db, db_settings, tmp_path, [f"O’Member {n}" for n in range(CONTACTS_LISTED + 5)])
    with db.session() as session:
        summary = summarise(session, db_settings, "Hi #name", EVERYONE, today=TODAY)
    [apostrophe] = summary.ucs2_characters
    assert apostrophe.source is Source.CONTACTS
    assert apostrophe.contacts == tuple(ids[:CONTACTS_LISTED])
    assert apostrophe.contacts_total == apostrophe.count == CONTACTS_LISTED + 5
    assert summary.unicode_extra_segments == 0  # short messages: one segment either way


def test_unicode_hint_line() -> None:
    characters = (Ucs2Character("’", 130, Source.TEMPLATE, "'"),
                  Ucs2Character("\u00a0", 20, Source.SETTINGS, " "),
                  Ucs2Character("✓", 3, Source.CONTACTS, None, (4, 9), 2),
                  Ucs2Character("\u200b", 1, Source.CONTACTS, "", (7,), 1),
                  Ucs2Character("…", 1, Source.TEMPLATE, "..."))
    assert unicode_hint((), 0, Decimal(0)) == ""
    assert unicode_hint(characters, 130, Decimal("104.00")) == (
        "Unicode: ’ ×130 (template; use '), "
        "U+00A0 NO-BREAK SPACE ×20 (currency format; use a space), "
        "✓ ×3 (2 contact(s); no GSM-7 equivalent), "
        "U+200B ZERO WIDTH SPACE ×1 (1 contact(s); remove it) and 1 more; "
        "costs 130 extra segment(s) (104.00)")
    assert unicode_hint(characters[:1], 0, Decimal(0)) == \
        "Unicode: ’ ×130 (template; use '); costs no extra segment"


def test_cli_text_preview_prints_the_hint(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    rows = [(f"Member {n}", f"07{n:08d}", "1000", "100", DUE, "") for n in range(1, 4)]
    run("--data-dir", str(data_dir), "contacts", "import",
        str(write_contacts(tmp_path / "c.csv", rows)))
    # 75 characters: 2 UCS-2 segments, 1 GSM-7 one
    template = "Dear #name, it’s a reminder that #balance of your pledge is left. Thank you"
    result = run("--data-dir", str(data_dir), "campaign", "preview", "--template", template,
                 env={"RELAYDESK_PRICE_PER_SEGMENT": "0.80"})
    assert result.returncode == 0, result.stderr
    assert "Unicode: ’ ×3 (template; use '); costs 3 extra segment(s) (2.40)" in \
        result.stdout.splitlines()
