"""``relaydesk selftest``: check that this installation can send (operations/selftest.py)."""

from __future__ import annotations

import click

from engine.cli.common import print_json
from engine.operations.selftest import DEFAULT_TIMEOUT_S, SelftestReport, run_selftest


@click.command("selftest")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object with the result and the counts.")
@click.option("--timeout", type=click.FloatRange(min=1), default=DEFAULT_TIMEOUT_S,
              show_default=True, help="Seconds the two campaigns may take to be delivered.")
@click.option("--pool", type=click.Choice(["prefork", "threads", "solo"]),
              help="The worker's execution pool [default: prefork; threads on Windows].")
@click.option("--keep-data", is_flag=True,
              help="Keep the temporary data dir (database, logs) and print where it is; it "
                   "is always kept when the test fails.")
def selftest_cmd(as_json: bool, timeout: float, pool: str | None, keep_data: bool) -> None:
    """Start Redis, the sandbox gateway and a worker in a temporary data dir, send a
    120-recipient and a 10-recipient campaign, and check every message arrived exactly
    once. Never uses your settings or data (nor --data-dir): it sends to the sandbox only.
    Exits 1 if anything failed."""
    report = run_selftest(timeout=timeout, keep_data=keep_data, pool=pool,
                          progress=lambda line: click.echo(f"selftest: {line}", err=True))
    if as_json:
        print_json(report.as_dict())
    else:
        _print(report)
    if not report.ok:
        raise SystemExit(1)


def _print(report: SelftestReport) -> None:
    for check in report.campaigns:
        click.echo(f"campaign {check.campaign} ({check.route}): {check.delivered_once}/"
                   f"{check.recipients} delivered exactly once, {check.missing} missing, "
                   f"{check.duplicates} duplicated, {check.dead} dead")
    if report.error:
        click.echo(f"error: {report.error}")
    if report.data_dir:
        click.echo(f"data dir kept: {report.data_dir}")
    verdict = "ok" if report.ok else "FAILED"
    click.echo(f"selftest {verdict}: {report.delivered_once}/{report.expected} messages "
               f"delivered exactly once in {report.seconds:g} s (RelayDesk {report.version}"
               f"{', packaged' if report.frozen else ''})")
