"""``relaydesk campaign ...``: preview, send, list, follow, pause, resume and cancel campaigns,
and reschedule or send now a scheduled one."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from sqlalchemy import select

from engine.cli.common import AppContext, json_option, pass_app, print_json
from engine.domain.audience import EVERYONE, Audience, AudienceError
from engine.domain.formatting import format_duration
from engine.domain.money import AmountError, parse_amount
from engine.domain.planning import Route
from engine.domain.send_window import ScheduleError, parse_when, zone
from engine.operations.campaign_control import (
    OPERATOR_PAUSE,
    cancel_campaign,
    is_missed,
    pause_campaign,
    reschedule_campaign,
    resume_campaign,
    send_now,
    send_test_message,
)
from engine.operations.campaigns import resend_audience, resend_undelivered, send_campaign
from engine.operations.preview import (
    CampaignPreview,
    preview_campaign,
    preview_scheduled,
    unicode_hint,
)
from engine.providers.reachability import require_provider
from engine.store.campaign_state import campaign_summary, is_settled, pruned_counts
from engine.store.models import Campaign, CampaignStatus, utcnow

WAIT_POLL_S = 0.5


def read_template(template: str | None, template_file: Path | None) -> str:
    if (template is None) == (template_file is None):
        raise click.UsageError("give the message as --template TEXT or --template-file FILE")
    if template_file is not None:
        return template_file.read_text(encoding="utf-8").rstrip("\n")
    assert template is not None
    return template


_F = TypeVar("_F", bound=Callable[..., Any])


def audience_options(command: _F) -> _F:
    """The audience filters, shared by preview and send; they combine (all must hold)."""
    options = [
        click.option("--tag", "tags", multiple=True,
                     help="Only contacts with this tag (repeat: any of them; any case)."),
        click.option("--exclude-tag", "exclude_tags", multiple=True,
                     help="Leave out contacts with this tag, even if --tag matches them "
                          "(repeatable)."),
        click.option("--owing", is_flag=True, help="Only contacts whose balance is above 0."),
        click.option("--min-balance", metavar="AMOUNT",
                     help="Only contacts whose balance is at least AMOUNT."),
        click.option("--due-within", type=int, metavar="DAYS",
                     help="Only contacts due from today to today + DAYS, both included "
                          "(0: due today). Today is the send day in RELAYDESK_TIMEZONE."),
        click.option("--overdue", is_flag=True, help="Only contacts due before today."),
        click.option("--undelivered-of", "undelivered_of", type=int, metavar="ID",
                     help="Send again to exactly the contacts whose message in campaign ID "
                          "was undelivered (no other filter with it; the template, name and "
                          "urgency default to that campaign's)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def build_audience(tags: tuple[str, ...], exclude_tags: tuple[str, ...], owing: bool,
                   min_balance: str | None, due_within: int | None,
                   overdue: bool, undelivered_of: int | None = None) -> Audience:
    try:
        minimum = None if min_balance is None else parse_amount(min_balance)
    except AmountError as exc:
        raise click.BadParameter(f"{exc}; give an amount such as 500 or 1,250.50",
                                 param_hint="'--min-balance'") from None
    try:
        return Audience(tags=tags, exclude_tags=exclude_tags, owing=owing,
                        min_balance_cents=minimum, due_within_days=due_within,
                        overdue=overdue, undelivered_of=undelivered_of)
    except AudienceError as exc:
        raise click.UsageError(str(exc)) from None


def parse_at(app: AppContext, text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_when(text, app.settings.timezone, utcnow())
    except ScheduleError as exc:
        raise click.UsageError(f"--at: {exc}") from None


AT_HELP = ("Send at this time instead of now: YYYY-MM-DD HH:MM[:SS] in RELAYDESK_TIMEZONE, "
           "or ISO 8601 with an offset.")


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
    suppressed = f" ({preview.suppressed} opted out, left out)" if preview.suppressed else ""
    click.echo(f"Recipients: {preview.recipients}{suppressed}    Segments: {preview.segments}")
    hint = unicode_hint(preview.ucs2_characters, preview.unicode_extra_segments,
                        preview.unicode_extra_cost)
    if hint:
        click.echo(hint)
    if plan.route is Route.BULK:
        route = f"bulk: 1 job on {plan.queue}, {plan.chunks} chunk(s) of up to {plan.chunk_size}"
    else:
        route = f"individual: {plan.jobs} job(s) on {plan.queue}"
    click.echo(f"Plan: {route}; estimated duration {format_duration(plan.estimated_duration_s)}")
    click.echo(f"Figures as of {preview.send_day:%Y-%m-%d}, the send day (#days_remain counts "
               "from it)")


@campaign_group.command("preview")
@click.option("--template", help="The message, with #name, #pledge, #paid_amount, #balance, "
                                 "#days_remain.")
@click.option("--template-file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Read the message from FILE instead.")
@audience_options
@click.option("--limit", type=click.IntRange(min=0), default=5, show_default=True,
              help="How many rendered messages to show.")
@click.option("--urgent", is_flag=True, help="Plan for the high_priority queue.")
@click.option("--at", "at_text", metavar="WHEN",
              help="Show the messages as they would be sent at WHEN (see 'campaign send').")
@click.option("--campaign", "campaign_id", type=int, metavar="ID",
              help="Preview scheduled campaign ID as it will go out: its own template and "
                   "audience, with the figures of its send day.")
@json_option
@pass_app
def preview_cmd(app: AppContext, template: str | None, template_file: Path | None,
                tags: tuple[str, ...], exclude_tags: tuple[str, ...], owing: bool,
                min_balance: str | None, due_within: int | None, overdue: bool,
                undelivered_of: int | None, limit: int, urgent: bool, at_text: str | None,
                campaign_id: int | None, as_json: bool) -> None:
    """Render the first messages and show totals and the send plan. Sends nothing."""
    audience = build_audience(tags, exclude_tags, owing, min_balance, due_within, overdue,
                              undelivered_of)
    if campaign_id is not None:
        if template is not None or template_file is not None or at_text is not None or \
                urgent or audience != EVERYONE:
            raise click.UsageError("--campaign previews a scheduled campaign as it is "
                                   "stored: give no template, filter, --urgent or --at with it")
        with app.db.session() as session:
            preview = preview_scheduled(session, app.settings, campaign_id, limit=limit)
    else:
        if undelivered_of is not None:
            resend = resend_audience(app.db, app.settings, undelivered_of)
            text = resend.template if template is None and template_file is None else \
                read_template(template, template_file)
            urgent = urgent or resend.urgent
        else:
            text = read_template(template, template_file)
        at = parse_at(app, at_text)
        with app.db.session() as session:
            preview = preview_campaign(session, app.settings, text, audience=audience,
                                       limit=limit, urgent=urgent, at=at)
    if as_json:
        print_json(preview.as_dict())
    else:
        _print_preview(preview)


@campaign_group.command("send")
@click.option("--template", help="The message (see 'campaign preview').")
@click.option("--template-file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@audience_options
@click.option("--name", help="A name for the campaign.")
@click.option("--urgent", is_flag=True, help="Individual sends go on the high_priority queue.")
@click.option("--at", "at_text", metavar="WHEN", help=AT_HELP)
@click.option("--wait", is_flag=True, help="Show progress and return when every message is "
                                           "sent or dead (or the campaign pauses).")
@json_option
@pass_app
def send_cmd(app: AppContext, template: str | None, template_file: Path | None,
             tags: tuple[str, ...], exclude_tags: tuple[str, ...], owing: bool,
             min_balance: str | None, due_within: int | None, overdue: bool,
             undelivered_of: int | None, name: str | None, urgent: bool,
             at_text: str | None, wait: bool, as_json: bool) -> None:
    """Create the campaign, plan it and queue it for the workers (or schedule it --at).
    With --undelivered-of ID, send again to the contacts campaign ID did not reach."""
    audience = build_audience(tags, exclude_tags, owing, min_balance, due_within, overdue,
                              undelivered_of)
    text = None if undelivered_of is not None and template is None and \
        template_file is None else read_template(template, template_file)
    at = parse_at(app, at_text)
    if at is not None and wait:
        raise click.UsageError("--wait and --at do not go together: a scheduled campaign "
                               "sends later; follow it with 'relaydesk campaign status ID'")
    if at is None:
        require_provider(app.settings, start_gateway=True)
    if undelivered_of is not None:
        created = resend_undelivered(app.db, app.redis, app.settings, undelivered_of, text,
                                     name, urgent=True if urgent else None, at=at)
    else:
        assert text is not None
        created = send_campaign(app.db, app.redis, app.settings, text, audience=audience,
                                urgent=urgent, name=name, at=at)
    plan = created.plan
    left_out = f", {created.suppressed} opted out left out" if created.suppressed else ""
    if created.scheduled_at is not None:
        local = created.scheduled_at.astimezone(app.settings.send_window().zone)
        click.echo(f"campaign {created.id} scheduled for {local:%Y-%m-%d %H:%M} "
                   f"({app.settings.timezone}): {plan.recipients} recipient(s) today"
                   f"{left_out}; its messages are rendered then", err=True)
    else:
        click.echo(f"campaign {created.id} queued: {plan.recipients} recipient(s), "
                   f"{created.segments} segment(s), {plan.route} route on {plan.queue}"
                   f"{left_out}", err=True)
    summary = _summary(app, created.id)
    if wait:
        summary = _wait(app, created.id)
    if as_json:
        print_json({k: summary[k] for k in ("campaign", "recipients", "sent", "dead",
                                            "attempts", "status", "pending", "retrying",
                                            "suppressed", "delivered", "undelivered",
                                            "awaiting_report")})


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
        if summary.get("suppressed"):
            line += f"  opted out {summary['suppressed']}"
        if summary.get("state_note"):  # quiet hours: say why nothing moves
            line += f"  ({summary['state_note']})"
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
    if not as_json:
        with app.db.session() as session:
            pruned = pruned_counts(session, campaign_id)["messages"]
        if pruned:  # the counts above include them; say why the message list is shorter
            click.echo(f"{'pruned':<13} {pruned:,} settled message(s) removed by retention "
                       "('relaydesk db prune'); counted above, no longer listed")


DELIVERY_KEYS = ("delivered", "undelivered", "awaiting_report", "expired", "delivery_rate")


def delivery_line(summary: dict[str, Any]) -> str:
    """``Delivery: 120 delivered, 3 undelivered, 7 awaiting report, 0 expired``."""
    return (f"Delivery: {summary['delivered']:,} delivered, {summary['undelivered']:,} "
            f"undelivered, {summary['awaiting_report']:,} awaiting report, "
            f"{summary['expired']:,} expired")


def _print_summary(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json({**summary, "missed": is_missed(summary)})
        return
    for key, value in summary.items():
        if key in DELIVERY_KEYS:
            continue
        shown = value
        if key == "scheduled_at" and value is not None:
            shown = f"{_local_time(summary)} {summary['timezone']} ({value})"
        if shown is not None:
            click.echo(f"{key:<13} {shown}")
    click.echo(delivery_line(summary))
    if is_missed(summary):
        click.echo(f"{'missed':<13} yes: 'relaydesk campaign send-now {summary['campaign']}' "
                   f"or 'relaydesk campaign reschedule {summary['campaign']} --at WHEN'")


def _local_time(summary: dict[str, Any]) -> str:
    """A summary's scheduled time in the time zone its campaign recorded."""
    at = datetime.fromisoformat(summary["scheduled_at"])
    return f"{at.astimezone(zone(summary['timezone'])):%Y-%m-%d %H:%M}"


LIST_STATUSES = [str(s) for s in CampaignStatus]


@campaign_group.command("list")
@click.option("--status", type=click.Choice(LIST_STATUSES),
              help="Only campaigns in this state (e.g. scheduled).")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="At most this many, newest first.")
@json_option
@pass_app
def list_cmd(app: AppContext, status: str | None, limit: int, as_json: bool) -> None:
    """Campaigns, newest first, with their counts (scheduled ones with their time)."""
    with app.db.session() as session:
        query = select(Campaign.id).order_by(Campaign.id.desc()).limit(limit)
        if status is not None:
            query = query.where(Campaign.status == status)
        summaries = [campaign_summary(session, id_) for id_ in session.scalars(query)]
    rows = [{**s, "missed": is_missed(s)} for s in summaries if s is not None]
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo("no campaigns" + (f" {status}" if status else ""), err=True)
        return
    click.echo(f"{'ID':>5}  {'STATUS':<10} {'SENT':>7} {'OF':>7}  {'WHEN':<30} NAME")
    for row in rows:
        when = ""
        if row["status"] == CampaignStatus.SCHEDULED and row["scheduled_at"]:
            when = f"{_local_time(row)} {row['timezone']}"
            when += " MISSED" if row["missed"] else ""
        click.echo(f"{row['campaign']:>5}  {row['status']:<10} {row['sent']:>7} "
                   f"{row['recipients']:>7}  {when:<30} {row['name']}")


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
    """Stop a campaign for good: unsent messages are cancelled, sent ones stay sent. A
    scheduled campaign is dropped before it sends anything."""
    summary = cancel_campaign(app.db, app.redis, campaign_id)
    click.echo(f"campaign {campaign_id} cancelled: {summary['sent']} sent, "
               f"{summary['cancelled']} cancelled", err=True)
    _print_summary(summary, as_json)


@campaign_group.command("reschedule")
@click.argument("campaign_id", type=int)
@click.option("--at", "at_text", metavar="WHEN", required=True,
              help="The new time: YYYY-MM-DD HH:MM[:SS] in the campaign's time zone, or ISO "
                   "8601 with an offset.")
@json_option
@pass_app
def reschedule_cmd(app: AppContext, campaign_id: int, at_text: str, as_json: bool) -> None:
    """Move a scheduled campaign (one that missed its time too) to another time."""
    # Its own zone, the one 'campaign status' shows its time in.
    timezone = _summary(app, campaign_id)["timezone"]
    try:
        at = parse_when(at_text, timezone, utcnow())
    except ScheduleError as exc:
        raise click.UsageError(f"--at: {exc} ('relaydesk campaign send-now {campaign_id}' "
                               "starts this one at once)") from None
    summary = reschedule_campaign(app.db, campaign_id, at, app.settings)
    click.echo(f"campaign {campaign_id} rescheduled for {_local_time(summary)} ({timezone}): "
               f"{summary['recipients']} recipient(s) as of that day; its messages are "
               "rendered then", err=True)
    _print_summary(summary, as_json)


@campaign_group.command("send-now")
@click.argument("campaign_id", type=int)
@click.option("--wait", is_flag=True, help="Show progress and return when every message is "
                                           "sent or dead (or the campaign pauses).")
@json_option
@pass_app
def send_now_cmd(app: AppContext, campaign_id: int, wait: bool, as_json: bool) -> None:
    """Start a scheduled campaign at once (also one that missed its time), with today's
    figures for today's audience."""
    require_provider(app.settings, start_gateway=True)
    summary = send_now(app.db, app.redis, app.settings, campaign_id)
    if summary["status"] == CampaignStatus.COMPLETED and not summary["recipients"]:
        click.echo(f"campaign {campaign_id}: {summary['pause_reason']}", err=True)
    else:
        click.echo(f"campaign {campaign_id} started: {summary['recipients']} recipient(s)",
                   err=True)
    if wait:
        summary = _wait(app, campaign_id)
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
