"""``relaydesk inbox ...``: messages members sent us (replies, STOP, START), newest first;
mark them handled, or answer one through the normal send path."""

from __future__ import annotations

import re
from datetime import timedelta

import click

from engine.cli.common import AppContext, duration, json_option, pass_app, print_json
from engine.domain.delivery import ReplyKeyword
from engine.operations.inbox import reply_to
from engine.providers.reachability import require_provider
from engine.store.inbox import InboxEntry, count_inbox, inbox_dict, list_inbox, mark_handled
from engine.store.models import utcnow

MARKS: dict[str, str] = {ReplyKeyword.OPT_OUT: "STOP", ReplyKeyword.OPT_IN: "START"}
TEXT_WIDTH = 60  # a long reply is cut in the table; --json has it whole


# What a member typed reaches the operator's terminal: control characters (escape
# sequences that retitle the window, hide text or write the clipboard) are shown as "?".
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _one_line(text: str, width: int) -> str:
    flat = " ".join(_CONTROL.sub("?", text).split())
    return flat if len(flat) <= width else flat[:width - 1] + "…"


def _row(entry: InboxEntry) -> str:
    when = entry.received_at.astimezone().strftime("%Y-%m-%d %H:%M")
    contact = entry.contact_name or "-"
    campaign = f"{entry.campaign_id} {entry.campaign_name}" if entry.campaign_id else "-"
    mark = MARKS.get(entry.keyword or "", "")
    handled = "handled" if entry.handled_at else ""
    return (f"{entry.id:>6}  {when}  {entry.phone:<16} {_one_line(contact, 20):<20} "
            f"{_one_line(campaign, 24):<24} {mark:<5} {handled:<7}  "
            f"{_one_line(entry.text, TEXT_WIDTH)}")


@click.group("inbox", invoke_without_command=True)
@click.option("--since", "since_s", callback=duration, metavar="SPAN",
              help="Only messages received in the last SPAN: 15m, 24h, 1d, 30d …")
@click.option("--search", help="Only messages whose text, number or contact name contains "
                               "this (any case).")
@click.option("--unhandled", is_flag=True, help="Only messages not marked handled.")
@click.option("--limit", type=click.IntRange(min=1), default=200, show_default=True,
              help="At most this many, newest first.")
@json_option
@pass_app
@click.pass_context
def inbox_group(ctx: click.Context, app: AppContext, since_s: int | None,
                search: str | None, unhandled: bool, limit: int, as_json: bool) -> None:
    """Messages members sent, newest first, numbers in full (your own records): who sent
    it, the campaign it answers, STOP / START, and whether it was handled."""
    if ctx.invoked_subcommand is not None:
        return
    since = utcnow() - timedelta(seconds=since_s) if since_s is not None else None
    with app.db.session() as session:
        entries = list_inbox(session, since=since, search=search, unhandled_only=unhandled,
                             limit=limit)
        total = count_inbox(session, since=since, search=search, unhandled_only=unhandled)
    if as_json:
        print_json([inbox_dict(e) for e in entries])
        return
    if not entries and not (since or search or unhandled):
        click.echo("No messages received yet. Replies, STOP and START from members appear "
                   "here once the receiver gets them (see 'relaydesk receiver --help').")
        return
    if entries:
        click.echo(f"{'ID':>6}  {'RECEIVED':<16}  {'FROM':<16} {'CONTACT':<20} "
                   f"{'CAMPAIGN':<24} {'MARK':<5} {'HANDLED':<7}  TEXT")
    for entry in entries:
        click.echo(_row(entry))
    click.echo(f"{len(entries)} of {total} received message(s)"
               + (f" matching {search!r}" if search else ""))


@inbox_group.command("handled")
@click.argument("ids", nargs=-1, type=int, required=True)
@click.option("--undo", is_flag=True, help="Mark them not handled again.")
@json_option
@pass_app
def handled_cmd(app: AppContext, ids: tuple[int, ...], undo: bool, as_json: bool) -> None:
    """Mark received messages IDS handled (or, with --undo, not handled)."""
    with app.db.session() as session:
        changed = mark_handled(session, ids, handled=not undo)
    if as_json:
        print_json({"changed": changed, "handled": not undo})
        return
    state = "not handled" if undo else "handled"
    unchanged = len(set(ids)) - changed
    click.echo(f"Marked {changed} message(s) {state}"
               + (f"; {unchanged} already were, or do not exist." if unchanged else "."))


@inbox_group.command("reply")
@click.argument("inbound_id", type=int)
@click.option("--text", required=True, help="The message to send back, as written (no tags).")
@json_option
@pass_app
def reply_cmd(app: AppContext, inbound_id: int, text: str, as_json: bool) -> None:
    """Answer received message ID: a one-off message to its number through the normal
    send path; the received message is then marked handled."""
    require_provider(app.settings, start_gateway=True)
    created = reply_to(app.db, app.redis, app.settings, inbound_id, text)
    if as_json:
        print_json({"campaign": created.id, "queue": created.plan.queue,
                    "segments": created.segments})
        return
    click.echo(f"reply queued as campaign {created.id} on {created.plan.queue}; follow it "
               f"with 'relaydesk campaign status {created.id}'")
