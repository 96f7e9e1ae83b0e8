"""Answering a member from the inbox: a one-off message to the number that wrote, sent as a
1-recipient campaign through the normal send path (plan, queue, pacing, opt-out check at
send time, delivery report), so it shows up and is followed like any campaign."""

from __future__ import annotations

from datetime import date
from typing import Any

from engine.config.settings import Settings
from engine.domain.personalize import Recipient
from engine.domain.phones import mask_phone
from engine.operations.campaigns import (
    MAX_CAMPAIGN_NAME,
    CampaignError,
    CreatedCampaign,
    send_campaign_to,
)
from engine.store.db import Database
from engine.store.inbox import get_inbound, mark_handled
from engine.store.models import Contact
from engine.store.optouts import is_opted_out

REPLY_PREFIX = "Reply to "


def as_template(text: str) -> str:
    """The reply's text as a template that renders to exactly that text: the operator
    writes a message, not a template, so "#GivingDay" is sent as typed."""
    return text.replace("#", "##")


def reply_to(db: Database, client: Any, settings: Settings, inbound_id: int,
             text: str) -> CreatedCampaign:
    """Send ``text`` to the number inbound message ``inbound_id`` came from, then mark that
    message handled. CampaignError (nothing is created) for an empty text, an unknown id,
    or a number on the opt-out list."""
    if not text.strip():
        raise CampaignError("the reply is empty: write the text to send, then send it "
                            "again; nothing was created.")
    with db.session() as session:
        inbound = get_inbound(session, inbound_id)
        if inbound is None:
            raise CampaignError(f"there is no received message {inbound_id}: see "
                                "'relaydesk inbox' (or the Inbox page) for the ids")
        if is_opted_out(session, inbound.phone):
            # It would only end 'suppressed' at send time, which looks like a silent failure.
            raise CampaignError(
                f"{mask_phone(inbound.phone)} is on the opt-out list, so nothing is sent to "
                "it (a STOP reply puts a number there). If the member asked to hear from "
                "you again, take it off the list first ('relaydesk optouts remove NUMBER', "
                "or the Opt-outs page); nothing was created.")
        contact = session.get(Contact, inbound.contact_id) \
            if inbound.contact_id is not None else None
        # The row carries the contact when the number is still theirs, so the reply is in
        # their history; the text has no tag, so these values only fill the row.
        contact_id = contact.id if contact is not None and contact.phone == inbound.phone \
            else None
        values = Recipient(contact.name if contact else "", 0, 0, date.today())
    name = f"{REPLY_PREFIX}{mask_phone(inbound.phone)}"[:MAX_CAMPAIGN_NAME]
    created = send_campaign_to(db, client, settings, as_template(text),
                               [(contact_id, inbound.phone, values)], urgent=False, name=name)
    with db.session() as session:
        mark_handled(session, [inbound_id])
    return created
