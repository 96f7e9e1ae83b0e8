"""``relaydesk campaign ...``: preview (and, with the send pipeline, send) campaigns."""

from __future__ import annotations

from pathlib import Path

import click

from engine.cli_common import AppContext, json_option, pass_app, print_json
from engine.preview import CampaignPreview, preview_campaign


def read_template(template: str | None, template_file: Path | None) -> str:
    if (template is None) == (template_file is None):
        raise click.UsageError("give the message as --template TEXT or --template-file FILE")
    if template_file is not None:
        return template_file.read_text(encoding="utf-8").rstrip("\n")
    assert template is not None
    return template


@click.group("campaign")
def campaign_group() -> None:
    """Preview and send campaigns."""


def _format_duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def _print_preview(preview: CampaignPreview) -> None:
    for m in preview.messages:
        click.echo(f"To {m.phone}  [{m.encoding}, {m.characters} chars, "
                   f"{m.segments} segment(s)]")
        click.echo(f"  {m.text}")
    plan = preview.plan
    click.echo("")
    click.echo(f"Recipients: {preview.recipients}    Segments: {preview.segments}")
    if plan.route == "bulk":
        route = f"bulk: 1 job on {plan.queue}, {plan.chunks} chunk(s) of up to {plan.chunk_size}"
    else:
        route = f"individual: {plan.jobs} job(s) on {plan.queue}"
    click.echo(f"Plan: {route}; estimated duration {_format_duration(plan.estimated_duration_s)}")


@campaign_group.command("preview")
@click.option("--template", help="The message, with #name, #pledge, #paid_amount, #balance, "
                                 "#days_remain.")
@click.option("--template-file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Read the message from FILE instead.")
@click.option("--tag", help="Only contacts with this tag.")
@click.option("--limit", type=click.IntRange(min=0), default=5, show_default=True,
              help="How many rendered messages to show.")
@click.option("--urgent", is_flag=True, help="Plan for the high_priority queue.")
@json_option
@pass_app
def preview_cmd(app: AppContext, template: str | None, template_file: Path | None,
                tag: str | None, limit: int, urgent: bool, as_json: bool) -> None:
    """Render the first messages and show totals and the send plan. Sends nothing."""
    text = read_template(template, template_file)
    with app.db.session() as session:
        preview = preview_campaign(session, app.settings, text, tag=tag, limit=limit,
                                   urgent=urgent)
    if as_json:
        print_json(preview.as_dict())
    else:
        _print_preview(preview)
