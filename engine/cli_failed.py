"""``relaydesk failed ...``: review the dead-letter store."""

from __future__ import annotations

import json

import click

from engine import scheduler
from engine.cli_common import AppContext, json_option, pass_app, print_json
from engine.dead_letters import failed_dict, forget_failed, list_failed, retry_failed
from engine.models import FailedJob


@click.group("failed")
def failed_group() -> None:
    """Messages that could not be delivered."""


@failed_group.command("list")
@click.option("--campaign", "campaign_id", type=int, help="Only this campaign.")
@click.option("--all", "include_retried", is_flag=True, help="Include jobs already retried.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@json_option
@pass_app
def list_cmd(app: AppContext, campaign_id: int | None, include_retried: bool, limit: int,
             as_json: bool) -> None:
    """Failed jobs, newest first (phone numbers masked)."""
    with app.db.session() as session:
        jobs = [failed_dict(j) for j in list_failed(session, campaign_id=campaign_id,
                                                    include_retried=include_retried,
                                                    limit=limit)]
    if as_json:
        print_json(jobs)
        return
    for j in jobs:
        retried = "  (retried)" if j["retried_at"] else ""
        click.echo(f"{j['id']:>6}  {j['failed_at'][:19]}  campaign {j['campaign']}  "
                   f"{j['recipient']}  {j['attempts']} attempt(s)  {j['last_error']}{retried}")
    click.echo(f"{len(jobs)} failed job(s)")


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


@failed_group.command("retry")
@click.argument("job_ids", type=int, nargs=-1)
@click.option("--all", "retry_all", is_flag=True, help="Retry every failed job.")
@click.option("--campaign", "campaign_id", type=int, help="With --all: only this campaign.")
@json_option
@pass_app
def retry_cmd(app: AppContext, job_ids: tuple[int, ...], retry_all: bool,
              campaign_id: int | None, as_json: bool) -> None:
    """Send failed jobs again with a fresh attempt budget (the record is kept)."""
    if bool(job_ids) == retry_all:
        raise click.UsageError("give failed job ids, or --all")
    client = app.redis
    with app.db.session() as session:
        jobs = retry_failed(session, list(job_ids) if job_ids else None,
                            campaign_id=campaign_id)
        # Scheduled inside the transaction: if Redis refuses, nothing is marked retried.
        scheduler.schedule(client, [(0.0, job) for job in jobs])
    if as_json:
        print_json({"retried": len(jobs)})
    else:
        click.echo(f"{len(jobs)} job(s) queued again")


@failed_group.command("forget")
@click.argument("job_ids", type=int, nargs=-1, required=True)
@pass_app
def forget_cmd(app: AppContext, job_ids: tuple[int, ...]) -> None:
    """Remove failed jobs from the store (their messages stay dead)."""
    with app.db.session() as session:
        removed = forget_failed(session, list(job_ids))
    click.echo(f"{removed} failed job(s) forgotten")
