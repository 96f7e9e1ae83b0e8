"""Demo data for ``gui --screenshot-dir --demo``: the sample contacts and the local pipeline
with a worker online, so the campaign the tour then sends from Compose has somewhere to go."""

from __future__ import annotations

import time

from desktop.context import ConsoleContext
from desktop.resources import resource
from engine.contacts_import import import_contacts
from engine.worker_registry import live_workers

WORKER_START_TIMEOUT_S = 60.0


def seed_demo(ctx: ConsoleContext) -> None:
    """Import the sample contacts, start Redis, the gateway and the workers, and wait until
    a worker is online. ``ctx.services.stop_local_services()`` stops what it started."""
    settings = ctx.settings
    import_contacts(ctx.services.db(), resource("sample_contacts.csv"), settings.default_region)
    ctx.services.start_local_pipeline()
    deadline = time.monotonic() + WORKER_START_TIMEOUT_S
    while not live_workers(ctx.services.redis()):
        if time.monotonic() > deadline:
            raise TimeoutError("the demo's worker did not come online; see the logs folder")
        time.sleep(0.2)
