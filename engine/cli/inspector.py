"""``relaydesk inspector``: what the development inspector recorded (infra/inspector_store)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

import click

from engine.cli.common import AppContext, duration, json_option, pass_app, print_json
from engine.domain.formatting import format_duration
from engine.infra.inspector_store import (
    KINDS,
    Entry,
    InspectorStore,
    Kind,
    Query,
    inspector_off_reason,
)


def _line(entry: Entry) -> str:
    stamp = datetime.fromtimestamp(entry.time).strftime("%H:%M:%S.%f")[:-3]
    duration = "" if entry.duration_ms is None else f"{entry.duration_ms:,.1f} ms"
    campaign = "" if entry.campaign is None else f"#{entry.campaign}"
    return (f"{stamp}  {entry.kind:<4}  {entry.event:<9}  {duration:>10}  {campaign:>6}  "
            f"{entry.summary}")


@click.command("inspector")
@click.option("--kind", type=click.Choice(KINDS), help="Only job events, SQL statements or "
              "provider HTTP calls.")
@click.option("--campaign", "campaign_id", type=int, help="Only this campaign.")
@click.option("--task", help="Only tasks whose name contains this, e.g. send_chunk.")
@click.option("--since", callback=duration, metavar="AGE",
              help="Only entries at most this old, e.g. 90s, 10m or 1h.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--clear", is_flag=True, help="Delete every recorded entry.")
@json_option
@pass_app
def inspector_cmd(app: AppContext, kind: Kind | None, campaign_id: int | None,
                  task: str | None, since: int | None, limit: int, clear: bool,
                  as_json: bool) -> None:
    """Recent job events, SQL statements and provider calls, newest first (development
    only; phone numbers masked, SQL parameters never kept)."""
    reason = inspector_off_reason(app.settings)
    if reason:
        raise click.ClickException(reason)
    store = InspectorStore.for_settings(app.settings, app.redis)
    if clear:
        store.clear()
        if as_json:
            print_json({"cleared": True})
        else:
            click.echo("inspector entries cleared")
        return
    query = Query(kinds=(kind,) if kind else KINDS, campaign=campaign_id, task=task,
                  since_s=since, limit=limit)
    entries = store.entries(query)
    if as_json:
        shown: list[dict[str, Any]] = [asdict(e) for e in entries]
        print_json(shown)
        return
    for entry in entries:
        click.echo(_line(entry))
    click.echo(f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'} "
               f"(kept for {format_duration(app.settings.inspector_max_age_s)}, at most "
               f"{app.settings.inspector_max_entries:,} of each kind)")
