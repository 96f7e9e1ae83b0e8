"""``relaydesk db``: the schema, retention (``prune``) and giving space back (``vacuum``)."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import click

from engine.cli.common import AppContext, duration, json_option, pass_app, print_json
from engine.domain.formatting import format_bytes
from engine.store.db import current_revision
from engine.store.retention import PruneResult, count_prunable, prune
from engine.store.retention_archive import refuse_existing
from engine.store.vacuum import vacuum


@click.group("db")
def db_group() -> None:
    """Database schema, retention and space."""


@db_group.command("upgrade")
@pass_app
def db_upgrade(app: AppContext) -> None:
    """Apply pending migrations (also done automatically on first use)."""
    revision = current_revision(app.db.engine)
    click.echo(f"database schema is at revision {revision}")


def _ask(question: str, what: str) -> None:
    """Ask on the terminal; refuse when there is none to ask on (cron, a pipe, a script),
    rather than take silence for a yes."""
    if sys.stdin is None or not sys.stdin.isatty():
        raise click.ClickException(f"{what} asks first, and there is no terminal to ask on: "
                                   "pass --yes to go ahead without asking")
    if not click.confirm(question, default=False, err=True):
        raise click.ClickException("nothing was changed")


def _when(result: PruneResult) -> str:
    return f"{result.cutoff:%Y-%m-%d %H:%M} UTC" if result.cutoff else "the cutoff"


@db_group.command("prune")
@click.option("--older-than", "older_than", required=True, metavar="DURATION",
              callback=duration,
              help="Remove what settled longer ago than this: 90d, 24h, 15m or 30s.")
@click.option("--archive", "archive", type=click.Path(dir_okay=False, path_type=Path),
              help="First write everything removed to this new file (compressed JSON "
                   "lines, .jsonl.gz; read it with gzip -dc FILE | jq).")
@click.option("--yes", is_flag=True, help="Do not ask first.")
@json_option
@pass_app
def prune_cmd(app: AppContext, older_than: int, archive: Path | None, yes: bool,
              as_json: bool) -> None:
    """Remove settled messages and resolved failed jobs.

    Settled: sent with a final delivery status (delivered, undelivered, expired),
    cancelled, suppressed (opted out), and dead once its failed job was retried or
    forgotten; the age counts from when it settled. Their delivery reports and attempts go
    with them. Never removed: messages queued, sending, retrying or awaiting a report, and
    failed jobs waiting for review with their messages. Campaigns keep their totals."""
    if archive is not None:
        refuse_existing(archive)
    keep = timedelta(seconds=older_than)
    if not yes:
        found = count_prunable(app.db, keep)
        if not (found.messages or found.failed_jobs):
            _print_result(found, as_json)
            return
        where = f", after writing them to {archive}" if archive else ""
        click.echo(f"Settled before {_when(found)}: {found.messages:,} message(s) (with their "
                   f"delivery reports and attempts) and {found.failed_jobs:,} failed job(s) "
                   f"would be removed{where}. Campaign totals are kept.", err=True)
        _ask("Remove them?", "relaydesk db prune")
    _print_result(prune(app.db, keep, archive=archive), as_json)


def _print_result(result: PruneResult, as_json: bool) -> None:
    if as_json:
        print_json(result.as_dict())
        return
    if not (result.messages or result.failed_jobs):
        click.echo(f"Nothing settled before {_when(result)}: nothing removed.")
        return
    line = (f"Removed {result.messages:,} message(s) ({result.delivery_reports:,} delivery "
            f"report(s), {result.delivery_attempts:,} attempt(s)) and "
            f"{result.failed_jobs:,} failed job(s) settled before {_when(result)}")
    click.echo(line + (f"; archived in {result.archive}." if result.archive else "."))


@db_group.command("vacuum")
@click.option("--yes", is_flag=True, help="Do not ask first.")
@json_option
@pass_app
def vacuum_cmd(app: AppContext, yes: bool, as_json: bool) -> None:
    """Give the space of deleted rows back to the file system (SQLite).

    Rewrites the whole database file and switches it to incremental auto-vacuum, so that
    every later prune gives its space back as it goes. It locks the database while it
    runs: run it when nothing is sending. PostgreSQL reuses space through its own
    autovacuum: nothing is done there."""
    db = app.db
    if db.engine.dialect.name != "sqlite":
        note = ("PostgreSQL reuses the space of deleted rows through its autovacuum, which "
                "runs on its own; RelayDesk does nothing here. (VACUUM FULL would give the "
                "space back to the file system, but locks each table while it runs: that "
                "is for the database's administrator to schedule.)")
        if as_json:
            print_json({"database": db.engine.dialect.name, "vacuumed": False, "note": note})
        else:
            click.echo(note)
        return
    if not yes:
        click.echo("VACUUM rewrites the whole database file (it needs as much free disk "
                   "space again) and locks the database while it runs, which can take "
                   "minutes for a large one: run it when nothing is sending (stop the "
                   "workers and the console's campaigns first).", err=True)
        _ask("Vacuum the database now?", "relaydesk db vacuum")
    before, after = vacuum(db)
    if as_json:
        print_json({"database": "sqlite", "vacuumed": True, "path": str(after.path),
                    "before_bytes": before.file_bytes, "after_bytes": after.file_bytes,
                    "auto_vacuum": after.auto_vacuum})
        return
    click.echo(f"{after.path}: {format_bytes(before.file_bytes)} before, "
               f"{format_bytes(after.file_bytes)} after; auto-vacuum is {after.auto_vacuum} "
               "(each prune now gives its space back)")
