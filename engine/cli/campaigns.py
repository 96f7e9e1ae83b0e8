"""``relaydesk campaign ...``: preview, send, follow, pause, resume and cancel campaigns."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from engine.cli.common import AppContext, json_option, pass_app, print_json
from engine.domain.formatting import format_duration
from engine.domain.planning import Route
from engine.operations.campaign_control import (
    OPERATOR_PAUSE,
    cancel_campaign,
    pause_campaign,
    resume_campaign,
    send_test_message,
)
from engine.operations.campaigns import send_campaign
from engine.operations.preview import CampaignPreview, preview_campaign
from engine.providers.reachability import require_provider
from engine.store.campaign_state import campaign_summary, is_settled

WAIT_POLL_S = 0.5


def read_template(template: str | None, template_file: Path | None) -> str:
    if (template is None) == (template_file is None):
        raise click.UsageError("give the message as --template TEXT or --template-file FILE")
    if template_file is not None:
        return template_file.read_text(encoding="utf-8").rstrip("\n")
    assert template is not None
    return template


@click.group("campaign")
def campaign_group() -> None:
    """Preview, send and control campaigns."""


def _print_preview(preview: CampaignPreview) -> None:
    for m in preview.messages:
        click.echo(f"To {m.phone}  [{m.encoding}, {m.characters} chars, "
                   f"{m.segments} segment(s)]")
        click.echo(f"  {m.text}")
    plan = preview.plan
    click.echo("")
    click.echo(f"Recipients: {preview.recipients}    Segments: {preview.segments}")
    if plan.route is Route.BULK:
        route = f"bulk: 1 job on {plan.queue}, {plan.chunks} chunk(s) of up to {plan.chunk_size}"
    else:
        route = f"individual: {plan.jobs} job(s) on {plan.queue}"
    click.echo(f"Plan: {route}; estimated duration {format_duration(plan.estimated_duration_s)}")


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


@campaign_group.command("send")
@click.option("--template", help="The message (see 'campaign preview').")
@click.option("--template-file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--tag", help="Only contacts with this tag.")
@click.option("--name", help="A name for the campaign.")
@click.option("--urgent", is_flag=True, help="Individual sends go on the high_priority queue.")
@click.option("--wait", is_flag=True, help="Show progress and return when every message is "
                                           "sent or dead (or the campaign pauses).")
@json_option
@pass_app
def send_cmd(app: AppContext, template: str | None, template_file: Path | None,
             tag: str | None, name: str | None, urgent: bool, wait: bool,
             as_json: bool) -> None:
    """Create the campaign, plan it and queue it for the workers."""
    text = read_template(template, template_file)
    require_provider(app.settings, start_gateway=True)
    created = send_campaign(app.db, app.redis, app.settings, text, tag=tag, urgent=urgent,
                            name=name)
    plan = created.plan
    click.echo(f"campaign {created.id} queued: {plan.recipients} recipient(s), "
               f"{created.segments} segment(s), {plan.route} route on {plan.queue}", err=True)
    summary = _summary(app, created.id)
    if wait:
        summary = _wait(app, created.id)
    if as_json:
        print_json({k: summary[k] for k in ("campaign", "recipients", "sent", "dead",
                                            "attempts", "status", "pending", "retrying")})


def _summary(app: AppContext, campaign_id: int) -> dict[str, Any]:
    with app.db.session() as session:
        summary = campaign_summary(session, campaign_id)
    if summary is None:
        raise click.ClickException(f"there is no campaign {campaign_id}")
    return summary


def _wait(app: AppContext, campaign_id: int) -> dict[str, Any]:
    last = None
    while True:
        summary = _summary(app, campaign_id)
        line = (f"sent {summary['sent']}/{summary['recipients']}  pending {summary['pending']}"
                f"  retrying {summary['retrying']}  dead {summary['dead']}")
        if line != last:
            click.echo(line, err=True)
            last = line
        if is_settled(summary):
            if summary["status"] == "paused":
                click.echo(f"campaign paused: {summary['pause_reason']}", err=True)
            return summary
        time.sleep(WAIT_POLL_S)


@campaign_group.command("status")
@click.argument("campaign_id", type=int)
@json_option
@pass_app
def status_cmd(app: AppContext, campaign_id: int, as_json: bool) -> None:
    """Delivery counts of one campaign."""
    _print_summary(_summary(app, campaign_id), as_json)


def _print_summary(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(summary)
        return
    for key, value in summary.items():
        if value is not None:
            click.echo(f"{key:<13} {value}")


@campaign_group.command("pause")
@click.argument("campaign_id", type=int)
@click.option("--reason", default=OPERATOR_PAUSE, show_default=True,
              help="Shown with the campaign while it is paused.")
@json_option
@pass_app
def pause_cmd(app: AppContext, campaign_id: int, reason: str, as_json: bool) -> None:
    """Stop sending a campaign; its unsent messages wait, nothing is lost."""
    summary = pause_campaign(app.db, app.redis, campaign_id, reason)
    click.echo(f"campaign {campaign_id} paused: {summary['sent']} sent, "
               f"{summary['pending'] + summary['retrying']} waiting; 'relaydesk campaign "
               f"resume {campaign_id}' sends the rest", err=True)
    _print_summary(summary, as_json)


@campaign_group.command("resume")
@click.argument("campaign_id", type=int)
@json_option
@pass_app
def resume_cmd(app: AppContext, campaign_id: int, as_json: bool) -> None:
    """Send the rest of a paused campaign, from where it stopped."""
    summary = resume_campaign(app.db, app.redis, app.settings, campaign_id)
    click.echo(f"campaign {campaign_id} resumed: {summary['pending'] + summary['retrying']} "
               "message(s) to send", err=True)
    _print_summary(summary, as_json)


@campaign_group.command("cancel")
@click.argument("campaign_id", type=int)
@json_option
@pass_app
def cancel_cmd(app: AppContext, campaign_id: int, as_json: bool) -> None:
    """Stop a campaign for good: unsent messages are cancelled, sent ones stay sent."""
    summary = cancel_campaign(app.db, app.redis, campaign_id)
    click.echo(f"campaign {campaign_id} cancelled: {summary['sent']} sent, "
               f"{summary['cancelled']} cancelled", err=True)
    _print_summary(summary, as_json)


@campaign_group.command("test-send")
@click.option("--template", help="The message (see 'campaign preview').")
@click.option("--template-file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--to", "phone", required=True, help="The one number to send it to.")
@click.option("--contact", "contact_id", type=int,
              help="Render it with this contact's values (default: the first contact).")
@click.option("--wait", is_flag=True, help="Return when it is sent or given up.")
@json_option
@pass_app
def test_send_cmd(app: AppContext, template: str | None, template_file: Path | None,
                  phone: str, contact_id: int | None, wait: bool, as_json: bool) -> None:
    """Send the message to one number, as a 1-recipient urgent campaign."""
    text = read_template(template, template_file)
    require_provider(app.settings, start_gateway=True)
    created = send_test_message(app.db, app.redis, app.settings, text, phone, contact_id)
    click.echo(f"test message queued as campaign {created.id} on {created.plan.queue}",
               err=True)
    summary = _wait(app, created.id) if wait else _summary(app, created.id)
    _print_summary(summary, as_json)
