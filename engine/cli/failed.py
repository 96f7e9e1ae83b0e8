"""``relaydesk failed ...``: review the dead-letter store; the same filters as the console's
Failed page, and the same actions on one record or everything that matches."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime, time, timedelta
from functools import wraps
from pathlib import Path
from typing import Any

import click

from engine.cli.common import AppContext, json_option, pass_app, print_json
from engine.operations import failed_jobs
from engine.store.dead_letters import failed_dict, row_dict
from engine.store.failed_export import export_file
from engine.store.failed_query import SORT_COLUMNS, FailedQuery, failed_page, matching
from engine.store.models import FailedJob


def parse_when(text: str, *, end: bool) -> datetime:
    """``YYYY-MM-DD`` or ``YYYY-MM-DD HH:MM[:SS]`` in local time, as aware UTC. A date alone
    as an end means the end of that day."""
    try:
        if len(text.strip()) == 10:
            day = date.fromisoformat(text.strip())
            moment = datetime.combine(day + timedelta(days=1) if end else day, time())
        else:
            moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a date; write it as YYYY-MM-DD or "
                                 "'YYYY-MM-DD HH:MM'") from None
    return moment.astimezone() if moment.tzinfo is None else moment


def filter_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The console's filters as options; the command receives one ``query`` FailedQuery."""

    @click.option("--search", default="", metavar="TEXT",
                  help="Text in the error, recipient, campaign name, error type or queue.")
    @click.option("--campaign", "campaign_id", type=int, help="Only this campaign.")
    @click.option("--queue", help="Only this queue.")
    @click.option("--error-type", help="Only this error type (e.g. invalid_number).")
    @click.option("--since", metavar="DATE", help="Failed at or after (YYYY-MM-DD [HH:MM]).")
    @click.option("--until", metavar="DATE", help="Failed before the end of this date/time.")
    @wraps(func)
    def wrapper(*args: Any, search: str, campaign_id: int | None, queue: str | None,
                error_type: str | None, since: str | None, until: str | None,
                include_retried: bool = False, **kwargs: Any) -> Any:
        # include_retried comes from include_retried_option, on the commands that have it.
        query = FailedQuery(
            search=search, campaign_id=campaign_id, queue=queue, error_type=error_type,
            since=parse_when(since, end=False) if since else None,
            until=parse_when(until, end=True) if until else None,
            include_retried=include_retried)
        return func(*args, query=query, **kwargs)

    return wrapper


def _old_all_spelling(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        # stderr: a script's --json output on stdout stays parseable.
        click.echo(f"warning: --all on '{ctx.command_path}' is deprecated: write "
                   "--include-retried (on 'failed retry', --all retries every job the "
                   "filters match)", err=True)
    return value


def include_retried_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """--include-retried, above filter_options. Its old spelling --all still works, with a
    warning, so scripts keep running: it read like 'retry --all' (retry everything)."""

    @click.option("--include-retried", is_flag=True, help="Include jobs already retried.")
    @click.option("--all", "old_all", is_flag=True, hidden=True, callback=_old_all_spelling,
                  help="Deprecated spelling of --include-retried.")
    @wraps(func)
    def wrapper(*args: Any, include_retried: bool, old_all: bool, **kwargs: Any) -> Any:
        return func(*args, include_retried=include_retried or old_all, **kwargs)

    return wrapper


@click.group("failed")
def failed_group() -> None:
    """Messages that could not be delivered."""


@failed_group.command("list")
@include_retried_option
@filter_options
@click.option("--sort", type=click.Choice(sorted(SORT_COLUMNS)), default="failed_at",
              show_default=True)
@click.option("--ascending", is_flag=True, help="Oldest (smallest) first.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0)
@json_option
@pass_app
def list_cmd(app: AppContext, query: FailedQuery, sort: str, ascending: bool, limit: int,
             offset: int, as_json: bool) -> None:
    """Failed jobs, newest first (phone numbers masked)."""
    query = replace(query, sort=sort, descending=not ascending)
    with app.db.session() as session:
        jobs = [row_dict(r) for r in failed_page(session, query, offset, limit)]
        total = matching(session, query).count
    if as_json:
        print_json(jobs)
        return
    for j in jobs:
        state = f"  ({j['retry_state']})" if j["retry_state"] else ""
        click.echo(f"{j['id']:>6}  {j['failed_at'][:19]}  campaign {j['campaign']}  "
                   f"{j['recipient']}  {j['attempts']} attempt(s)  {j['last_error']}{state}")
    click.echo(f"{len(jobs)} of {total:,} failed job(s)")


@failed_group.command("show")
@click.argument("job_id", type=int)
@json_option
@pass_app
def show_cmd(app: AppContext, job_id: int, as_json: bool) -> None:
    """Everything recorded about one failed job."""
    with app.db.session() as session:
        job = session.get(FailedJob, job_id)
        if job is None:
            raise click.ClickException(f"there is no failed job {job_id}")
        data = failed_dict(job, full=True)
    if as_json:
        print_json(data)
        return
    data["payload"] = json.dumps(json.loads(data["payload"]), indent=2, ensure_ascii=False)
    for key, value in data.items():
        if value is not None:
            click.echo(f"{key}: {value}")


def _confirm(app: AppContext, query: FailedQuery, verb: str, yes: bool) -> FailedQuery | None:
    """Count what matches, ask, and pin the action to those records."""
    with app.db.session() as session:
        found = matching(session, query)
    if not found.count:
        return None
    if not yes:
        click.confirm(f"{verb} {found.count:,} failed job(s)?", abort=True, err=True)
    return replace(query, through_id=found.last_id)


@failed_group.command("retry")
@click.argument("job_ids", type=int, nargs=-1)
@click.option("--matching", "use_filters", is_flag=True,
              help="Retry every job the filters match (asks first; see --yes).")
@click.option("--yes", is_flag=True, help="With --matching: do not ask.")
@click.option("--all", "retry_all", is_flag=True,
              help="Retry every job the filters match, without asking.")
@filter_options
@json_option
@pass_app
def retry_cmd(app: AppContext, job_ids: tuple[int, ...], use_filters: bool, yes: bool,
              retry_all: bool, query: FailedQuery, as_json: bool) -> None:
    """Send failed jobs again with a fresh attempt budget (the record is kept).

    Give ids; or --all: every job the filters match, without asking (a job is retried
    once: jobs already retried are skipped); or --matching: the same, after a question.
    A job to a number on the opt-out list is never sent again: it is skipped and counted."""
    if sum([bool(job_ids), retry_all and not use_filters, use_filters]) != 1:
        raise click.UsageError("give failed job ids, or --all, or --matching with filters")
    # A job is retried once (retry has no --include-retried): the question counts only
    # jobs not retried yet.
    pinned = _confirm(app, query, "Retry", yes) if use_filters else query
    if pinned is None:
        retried = failed_jobs.Retried(0, 0)
    else:
        retried = failed_jobs.retry(app.db, app.redis, list(job_ids) if job_ids else pinned)
    if as_json:
        print_json({"retried": retried.retried,
                    "skipped_opted_out": retried.skipped_opted_out})
    else:
        click.echo(f"{retried.retried} job(s) queued again")
        if retried.skipped_opted_out:
            click.echo(f"{retried.skipped_opted_out} job(s) skipped: the number is on the "
                       "opt-out list (see 'relaydesk optouts list')")


@failed_group.command("forget")
@click.argument("job_ids", type=int, nargs=-1)
@click.option("--matching", "use_filters", is_flag=True,
              help="Forget every job the filters match (asks first; see --yes).")
@click.option("--yes", is_flag=True, help="With --matching: do not ask.")
@include_retried_option
@filter_options
@json_option
@pass_app
def forget_cmd(app: AppContext, job_ids: tuple[int, ...], use_filters: bool, yes: bool,
               query: FailedQuery, as_json: bool) -> None:
    """Remove failed jobs from the store (their messages stay dead)."""
    if bool(job_ids) == use_filters:
        raise click.UsageError("give failed job ids, or --matching with filters")
    pinned = _confirm(app, query, "Forget", yes) if use_filters else query
    if pinned is None:
        removed = 0
    else:
        removed = failed_jobs.forget(app.db, list(job_ids) if job_ids else pinned)
    if as_json:
        print_json({"forgotten": removed})
    else:
        click.echo(f"{removed} failed job(s) forgotten")


@failed_group.command("export")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              required=True, help="The CSV file to write.")
@click.option("--full-phones", is_flag=True,
              help="Write whole phone numbers (masked by default: the file may travel).")
@include_retried_option
@filter_options
@pass_app
def export_cmd(app: AppContext, out_path: Path, full_phones: bool, query: FailedQuery) -> None:
    """Write the failed jobs the filters match to a CSV file, newest first."""
    if not out_path.parent.is_dir():
        raise click.BadParameter(f"the folder {out_path.parent} does not exist",
                                 param_hint="--out")
    with app.db.session() as session:
        count = export_file(session, query, out_path, full_phones=full_phones)
    click.echo(f"{count:,} failed job(s) written to {out_path}")
