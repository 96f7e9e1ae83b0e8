"""Demo data for ``gui --screenshot-dir --demo``: the sample contacts, the local pipeline,
and a small campaign on its way, so every page has something real to show."""

from __future__ import annotations

from desktop.context import ConsoleContext
from desktop.resources import resource
from engine.campaigns import CreatedCampaign, send_campaign
from engine.contacts_import import import_contacts


def seed_demo(ctx: ConsoleContext, template: str) -> CreatedCampaign:
    """Import the sample contacts, start Redis, the gateway and the workers, and send a
    campaign to everyone. ``ctx.services.stop_local_services()`` stops what it started."""
    settings = ctx.settings
    import_contacts(ctx.services.db(), resource("sample_contacts.csv"), settings.default_region)
    ctx.services.start_local_pipeline()
    return send_campaign(ctx.services.db(), ctx.services.redis(), settings, template,
                         name="Demo: pledge reminder")
