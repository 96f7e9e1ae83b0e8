"""``relaydesk contacts ...``: import and list contacts."""

from __future__ import annotations

from pathlib import Path

import click

from engine.cli.common import AppContext, json_option, pass_app, print_json
from engine.domain.money import format_amount
from engine.store.contacts import all_tags, contact_dict, count_contacts, list_contacts
from engine.store.contacts_import import import_contacts
from engine.store.optouts import opted_out_phones


@click.group("contacts")
def contacts_group() -> None:
    """Import and list contacts."""


@contacts_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@json_option
@pass_app
def import_cmd(app: AppContext, file: Path, as_json: bool) -> None:
    """Import contacts from FILE, a CSV file or an Excel workbook (.xlsx, its first sheet),
    with the columns name, phone, pledge, paid_amount, due_date and optional tags separated
    by ';'. A phone already known updates that contact. Rejected rows are listed with their
    line numbers (in a workbook, its row numbers; the first 100, and how many more); the
    exit status is 1 if any were. A file that cannot be read whole is refused whole."""
    result = import_contacts(app.db, file, app.settings.default_region)
    if as_json:
        print_json(result.as_dict())
    else:
        click.echo(f"Imported {result.imported} new contact(s), updated {result.updated}.")
        if result.rejected_count:
            click.echo(f"Rejected {result.rejected_count} row(s); fix them and import the file "
                       "again (rows already imported will be updated, not duplicated):")
            for line in result.rejection_lines("row"):
                click.echo(f"  {line}")
    if result.rejected_count:
        raise SystemExit(1)


@contacts_group.command("list")
@click.option("--tag", help="Only contacts with this tag.")
@click.option("--limit", type=click.IntRange(min=1), help="Show at most N contacts.")
@json_option
@pass_app
def list_cmd(app: AppContext, tag: str | None, limit: int | None, as_json: bool) -> None:
    """List contacts, oldest first; those whose number is on the opt-out list are marked
    (``opted_out`` in JSON): campaigns leave them out."""
    with app.db.session() as session:
        contacts = list_contacts(session, tag=tag, limit=limit)
        total = count_contacts(session, tag=tag)
        listed = opted_out_phones(session, (c.phone for c in contacts))
        if as_json:
            print_json([{**contact_dict(c), "opted_out": c.phone in listed} for c in contacts])
            return
        fmt = app.settings.currency_format
        for c in contacts:
            click.echo(f"{c.id:>6}  {c.phone:<16} {c.name[:28]:<28} "
                       f"{format_amount(c.pledge_cents, fmt):>14} "
                       f"{format_amount(c.paid_cents, fmt):>14}  {c.due_date.isoformat()}  "
                       f"{';'.join(c.tag_names)}"
                       + ("  [opted out]" if c.phone in listed else ""))
        click.echo(f"{len(contacts)} of {total} contact(s)" + (f" tagged {tag!r}" if tag else ""))


@contacts_group.command("tags")
@json_option
@pass_app
def tags_cmd(app: AppContext, as_json: bool) -> None:
    """List tags with their number of contacts."""
    with app.db.session() as session:
        tags = all_tags(session)
    if as_json:
        print_json(dict(tags))
        return
    for tag, count in tags:
        click.echo(f"{tag:<32} {count:>8}")
