"""One rendering for every front end: what ``campaign preview`` and the Compose page show is,
message for message, what a campaign send stores and the workers deliver."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from engine.config.settings import Settings
from engine.domain.audience import Audience
from engine.domain.personalize import Recipient, Template
from engine.domain.rendering import render_messages
from engine.domain.sms_encoding import Encoding
from engine.operations.campaigns import create_campaign
from engine.operations.preview import preview_campaign, preview_one, summarise
from engine.store.contacts_import import import_contacts
from engine.store.db import Database
from engine.store.models import OutgoingMessage
from tests.support import write_contacts

TODAY = date(2026, 11, 27)
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)  # TODAY in the tests' time zone, UTC
TEMPLATE = "Dear #name, #balance of your #pledge pledge remains, #days_remain days to go."


def test_render_messages_counts_places_and_segments() -> None:
    due = TODAY + timedelta(days=3)
    recipients = [(7, "+254700000001", Recipient("Amina", 100_000, 25_000, due)),
                  (None, "+254700000002", Recipient("Zoë ✓", 100_000, 0, due))]
    one, two = render_messages(Template.parse("Hi #name: #balance"), recipients,
                               today=TODAY, currency_format="KES {amount}", first_index=4)
    assert (one.index, one.contact_id, one.name, one.text) == (4, 7, "Amina", "Hi Amina: KES 750")
    assert (one.encoding, one.characters, one.segments) == (Encoding.GSM7, 17, 1)
    assert (two.index, two.contact_id, two.phone) == (5, None, "+254700000002")
    assert two.encoding is Encoding.UCS2  # the tick is not GSM-7


def test_previews_show_what_the_send_stores(db: Database, db_settings: Settings,
                                            tmp_path: Path) -> None:
    due = (TODAY + timedelta(days=20)).isoformat()
    rows = [(f"Member {n}", f"07{n:08d}", "1000", str(n * 10), due, "choir" if n % 2 else "")
            for n in range(1, 9)]
    rows.append(("Wanjiru ✓", "0712999999", "5000", "0", due, "choir"))  # one UCS-2 message
    import_contacts(db, write_contacts(tmp_path / "contacts.csv", rows),
                    db_settings.default_region)
    choir = Audience(tags=("choir",))

    created = create_campaign(db, db_settings, TEMPLATE, audience=choir, now=NOW)
    with db.session() as session:
        stored = [(m.phone, m.body, m.encoding, m.segments) for m in session.scalars(
            select(OutgoingMessage).where(OutgoingMessage.campaign_id == created.id)
            .order_by(OutgoingMessage.contact_id))]
        preview = preview_campaign(session, db_settings, TEMPLATE, audience=choir, limit=100,
                                   now=NOW)
        summary = summarise(session, db_settings, TEMPLATE, choir, today=TODAY)
        third = preview_one(session, db_settings, TEMPLATE, choir, 2, today=TODAY)

    shown = [(m.phone, m.text, str(m.encoding), m.segments) for m in preview.messages]
    assert shown == stored
    assert len(stored) == 5
    assert [m.index for m in preview.messages] == list(range(5))
    assert preview.segments == summary.segments == created.segments
    assert summary.recipients == preview.recipients == created.plan.recipients == 5
    assert summary.ucs2 == 1
    assert third == preview.messages[2]
