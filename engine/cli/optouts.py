"""``relaydesk optouts ...``: the opt-out (suppression) list. A listed number is never sent
to: campaigns leave it out when they are planned and stop its message at send time."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from engine.cli.common import AppContext, json_option, pass_app, print_json
from engine.domain.phones import PhoneError, normalize_phone
from engine.store.optouts import (
    OptOutChange,
    add_optouts,
    count_history,
    count_optouts,
    export_optouts,
    import_optouts,
    list_optouts,
    opt_out_history,
    optout_dict,
    remove_optouts,
)


@click.group("optouts")
def optouts_group() -> None:
    """The opt-out list: numbers RelayDesk never sends to."""


def _report_invalid(change: OptOutChange) -> None:
    """Texts that are not phone numbers, on stderr; the exit status is then 1."""
    for text, why in change.invalid:
        click.echo(f"not a phone number, skipped: {text[:40]!r} ({why})", err=True)
    if change.invalid:
        raise SystemExit(1)


@optouts_group.command("add")
@click.argument("phones", nargs=-1, required=True)
@click.option("--reason", default="", help="Why (kept with each number).")
@json_option
@pass_app
def add_cmd(app: AppContext, phones: tuple[str, ...], reason: str, as_json: bool) -> None:
    """Add PHONES (E.164, or local numbers in RELAYDESK_DEFAULT_REGION) to the list. A
    number already listed keeps its first reason and time. The exit status is 1 if any
    argument is not a phone number (the valid ones are added)."""
    with app.db.session() as session:
        change = add_optouts(session, phones, region=app.settings.default_region,
                             reason=reason)
    if as_json:
        print_json(change.as_dict())
    else:
        click.echo(f"Added {change.added} number(s) to the opt-out list"
                   + (f"; {change.already} already listed." if change.already else "."))
    _report_invalid(change)


@optouts_group.command("remove")
@click.argument("phones", nargs=-1, required=True)
@json_option
@pass_app
def remove_cmd(app: AppContext, phones: tuple[str, ...], as_json: bool) -> None:
    """Take PHONES off the list: campaigns may send to them again. The exit status is 1 if
    any argument is not a phone number."""
    with app.db.session() as session:
        change = remove_optouts(session, phones, region=app.settings.default_region)
    if as_json:
        print_json(change.as_dict())
    else:
        click.echo(f"Removed {change.removed} number(s) from the opt-out list"
                   + (f"; {change.not_listed} were not on it." if change.not_listed else "."))
    _report_invalid(change)


@optouts_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--reason", default="", help="Reason for numbers whose row gives none.")
@json_option
@pass_app
def import_cmd(app: AppContext, file: Path, reason: str, as_json: bool) -> None:
    """Add the numbers in FILE: a CSV file or an Excel workbook (.xlsx, its first sheet)
    with a 'phone' column (and optionally 'reason', as 'optouts export' writes), or one
    number per line (per row). Every good line is added in one
    go; bad lines are listed with their line numbers (the first 100) and the exit status
    is then 1. A file that cannot be read adds nothing."""
    result = import_optouts(app.db, file, region=app.settings.default_region, reason=reason)
    if as_json:
        print_json(result.as_dict())
    else:
        click.echo(f"Added {result.imported} number(s) to the opt-out list"
                   + (f"; {result.already} already listed." if result.already else "."))
        if result.rejected_count:
            click.echo(f"Rejected {result.rejected_count} line(s); fix them and import the "
                       "file again (numbers already added stay listed once):")
            for line in result.rejection_lines("line"):
                click.echo(f"  {line}")
    if result.rejected_count:
        raise SystemExit(1)


@optouts_group.command("list")
@click.option("--search", help="Only numbers or reasons containing this text.")
@click.option("--limit", type=click.IntRange(min=1), help="Show at most N numbers.")
@json_option
@pass_app
def list_cmd(app: AppContext, search: str | None, limit: int | None, as_json: bool) -> None:
    """List the opted-out numbers, newest first, in full (they are your own records)."""
    with app.db.session() as session:
        optouts = list_optouts(session, search=search, limit=limit)
        total = count_optouts(session, search)
    if as_json:
        print_json([optout_dict(o) for o in optouts])
        return
    for o in optouts:
        when = o.created_at.astimezone().strftime("%Y-%m-%d %H:%M")
        click.echo(f"{o.phone:<16} {o.source:<9} {when}  {o.reason}")
    click.echo(f"{len(optouts)} of {total} opted-out number(s)"
               + (f" matching {search!r}" if search else ""))


@optouts_group.command("export")
@click.option("--out", "out", required=True,
              type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="The CSV file to write (phone, reason, source, created_at).")
@json_option
@pass_app
def export_cmd(app: AppContext, out: Path, as_json: bool) -> None:
    """Write the whole list as CSV, readable by you alone; 'optouts import' reads it back."""
    try:
        with app.db.session() as session:
            count = export_optouts(session, out)
    except OSError as exc:
        raise click.ClickException(f"cannot write {out}: {exc.strerror}; nothing was "
                                   "written. Choose a folder you can write to.") from None
    if as_json:
        print_json({"exported": count, "file": str(out)})
    else:
        click.echo(f"Wrote {count} number(s) to {out}")


@optouts_group.command("history")
@click.argument("phone", required=False)
@click.option("--limit", type=click.IntRange(min=1), default=200, show_default=True,
              help="Show at most N changes, newest first.")
@json_option
@pass_app
def history_cmd(app: AppContext, phone: str | None, limit: int, as_json: bool) -> None:
    """Every change to the list, newest first (of PHONE alone when given): a number added,
    removed, or kept (a START reply does not lift an opt-out entered by hand), by whom
    (manual, import, provider, reply), why and when."""
    number = None
    if phone is not None:
        try:
            number = normalize_phone(phone, app.settings.default_region)
        except PhoneError as exc:
            raise click.BadParameter(f"{exc}; give it in international form (+254712345678) "
                                     "or as a local number", param_hint="'PHONE'") from None
    with app.db.session() as session:
        events = opt_out_history(session, number, limit=limit)
        total = count_history(session, number)
    if as_json:
        print_json(events)
        return
    for e in events:
        when = datetime.fromisoformat(e["at"]).astimezone().strftime("%Y-%m-%d %H:%M")
        click.echo(f"{when}  {e['phone']:<16} {e['action']:<8} {e['source']:<9} {e['reason']}")
    click.echo(f"{len(events)} of {total} change(s)" + (f" of {number}" if number else ""))
