"""Engine calls heavy enough in CPU to stall the window if run on a thread of its process
(Python threads share one interpreter lock): importing a contacts file, rendering and
storing a whole campaign, which run in the console's helper process, and Compose's totals
over every recipient, which run in a helper process of their own where typing on stops
them (desktop.background.LatestInProcess). Each function here is self-contained and
takes only plain, picklable arguments (compose_totals' first, ``stale``, is handed to it by
that process)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from desktop.helper_lane import Stale, Superseded
from engine.config.settings import Settings
from engine.domain.audience import Audience
from engine.infra.connections import WORK, celery_for, redis_for
from engine.infra.embedded_redis import redis_url
from engine.operations.campaigns import CreatedCampaign, send_campaign
from engine.operations.preview import ComposeSummary, summarise
from engine.store.contacts_import import ImportResult, import_contacts
from engine.store.db import open_database
from engine.store.optouts import OptOutImport, import_optouts


def import_file(settings: Settings, path: Path) -> ImportResult:
    return import_contacts(open_database(settings), path, settings.default_region)


def import_optouts_file(settings: Settings, path: Path) -> OptOutImport:
    return import_optouts(open_database(settings), path, region=settings.default_region)


def send(settings: Settings, template: str, audience: Audience, urgent: bool,
         name: str | None, at: datetime | None = None) -> CreatedCampaign:
    if at is not None:  # stored for the workers to find when it is due: Redis not needed now
        return send_campaign(open_database(settings), None, settings, template,
                             audience=audience, urgent=urgent, name=name, at=at)
    url = redis_url(settings, start=False)
    client = redis_for(url, WORK)
    try:
        celery_for(url)
        return send_campaign(open_database(settings), client, settings, template,
                             audience=audience, urgent=urgent, name=name, at=at)
    finally:
        client.close()


def compose_totals(stale: Stale, settings: Settings, template: str, audience: Audience,
                   urgent: bool) -> ComposeSummary:
    """Compose's totals: every recipient's message rendered, as the send will render it.
    Raises Superseded within a batch of recipients once ``stale()``: the operator typed on.
    """
    def checkpoint() -> None:
        if stale():
            raise Superseded

    with open_database(settings).session() as session:
        return summarise(session, settings, template, audience, urgent=urgent,
                         checkpoint=checkpoint)


def warm_up_totals(settings: Settings) -> None:
    """Open the database (its connection, and the imports the totals need) before the first
    totals are asked for."""
    open_database(settings).engine.connect().close()


def warm_up() -> None:
    """Nothing: the first call pays the process start and the imports, so make it early."""
