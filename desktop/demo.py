"""Demo data for ``gui --screenshot-dir --demo``: the sample contacts, a worker, and a small
campaign on its way, so every page has something real to show."""

from __future__ import annotations

from desktop.context import ConsoleContext
from desktop.resources import resource
from engine.campaigns import send_campaign
from engine.contacts_import import import_contacts
from engine.supervisor import Supervisor


def seed_demo(ctx: ConsoleContext, template: str) -> Supervisor:
    """Import the sample contacts, start a worker (and the services it needs), and send a
    campaign to everyone. The returned supervisor stops all of it."""
    settings = ctx.settings
    import_contacts(ctx.services.db(), resource("sample_contacts.csv"), settings.default_region)
    supervisor = Supervisor(settings, workers=1)
    supervisor.start()
    send_campaign(ctx.services.db(), ctx.services.redis(), settings, template,
                  name="Demo: pledge reminder")
    return supervisor
