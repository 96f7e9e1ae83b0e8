"""``relaydesk worker | gateway | redis | supervise | status``: running the pipeline."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from types import FrameType
from typing import Any

import click

from engine.cli.common import AppContext, json_option, pass_app, print_json
from engine.config.callback_token import callback_token
from engine.config.masking import mask_url
from engine.domain.formatting import format_duration
from engine.domain.queues import ALL_QUEUES
from engine.domain.server_advisories import server_identity
from engine.infra.breaker import CircuitBreaker
from engine.infra.connections import WORK, redis_for
from engine.infra.embedded_redis import EmbeddedRedis, redis_url
from engine.infra.worker_registry import live_workers
from engine.monitoring import wait_alerts
from engine.monitoring.overview import gather
from engine.monitoring.queue_status import broker_load, broker_snapshot


def _wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM."""
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    while not stop.wait(0.5):
        pass


def _queue_list(text: str | None) -> list[str] | None:
    if not text:
        return None
    queues = [q.strip() for q in text.split(",") if q.strip()]
    unknown = [q for q in queues if q not in ALL_QUEUES]
    if unknown:
        raise click.BadParameter(f"unknown queue(s) {', '.join(unknown)}; "
                                 f"known: {', '.join(ALL_QUEUES)}")
    return queues


def _autoscale(ctx: click.Context, param: click.Parameter,
               text: str | None) -> tuple[int, int] | None:
    """MAX,MIN (or MAX, meaning MIN 0) as Celery's --autoscale takes it."""
    if not text:
        return None
    max_text, _, min_text = text.partition(",")
    try:
        high, low = int(max_text), int(min_text or 0)
    except ValueError:
        raise click.BadParameter("write it as MAX,MIN, e.g. 20,2") from None
    if high < 1 or not 0 <= low <= high:
        raise click.BadParameter("needs MAX >= 1 and 0 <= MIN <= MAX, e.g. 20,2")
    return high, low


def _check_autoscale_pool(autoscale: tuple[int, int] | None, pool: str | None) -> None:
    from engine.pipeline.worker import default_pool

    if autoscale and (pool or default_pool()) != "prefork":
        raise click.BadParameter("autoscaling needs the prefork pool", param_hint="--autoscale")


@click.command("worker")
@click.option("-Q", "--queues", help=f"Comma-separated queues [default: {','.join(ALL_QUEUES)}]")
@click.option("-c", "--concurrency", type=click.IntRange(min=1),
              help="Worker processes (or threads) [env: RELAYDESK_WORKER_CONCURRENCY].")
@click.option("--pool", type=click.Choice(["prefork", "threads", "solo"]),
              help="Execution pool [default: prefork; threads on Windows].")
@click.option("--autoscale", metavar="MAX,MIN", callback=_autoscale,
              help="Grow the prefork pool up to MAX processes under load and shrink it to "
                   "MIN when idle (replaces --concurrency).")
@click.option("--nice", type=click.IntRange(0, 19), default=0, show_default=True,
              help="Run at a lower CPU priority (the console starts its workers at 10 so "
                   "its window stays responsive on a busy machine).")
@click.option("-n", "--name", help="Celery node name, e.g. relaydesk-a@host [default: "
                                   "relaydesk-PID-RANDOM@host].")
@pass_app
def worker_cmd(app: AppContext, queues: str | None, concurrency: int | None,
               pool: str | None, autoscale: tuple[int, int] | None, name: str | None,
               nice: int) -> None:
    """Run a worker that sends queued messages (SIGTERM: finish current work, then exit)."""
    from engine.pipeline.worker import run_worker

    if nice and hasattr(os, "nice"):
        os.nice(nice)  # its pool processes inherit it

    _check_autoscale_pool(autoscale, pool)
    run_worker(app.settings, _queue_list(queues), concurrency, pool, name, autoscale)


@click.command("gateway")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(min=0, max=65535), default=8025, show_default=True)
@click.option("--latency-ms", type=click.FloatRange(min=0), default=0, show_default=True,
              help="Delay every send by this long.")
@click.option("--fail-rate", type=click.FloatRange(min=0, max=1), default=0, show_default=True,
              help="Fraction of sends that fail transiently at random.")
@click.option("--seed", type=int, help="Seed for --fail-rate, for repeatable runs.")
@click.option("--reports-url", metavar="URL",
              help="Post delivery reports and forward replies (POST /inbound) to the "
                   "receiver at this base URL, e.g. http://127.0.0.1:8026, with this data "
                   "dir's callback token.")
@click.option("--report-delay-ms", type=click.FloatRange(min=0), default=1000,
              show_default=True, help="How long after a send its delivery report comes.")
@pass_app
def gateway_cmd(app: AppContext, host: str, port: int, latency_ms: float, fail_rate: float,
                seed: int | None, reports_url: str | None, report_delay_ms: float) -> None:
    """Run the sandbox SMS gateway (numbers ending 0001 fail permanently, 0002 fail twice,
    0003 always fail transiently, 0004 report an empty account balance, 0008 answer that
    the recipient opted out; with --reports-url, 0006 are reported undelivered and 0007
    never reported)."""
    from engine.infra.sandbox_gateway import start_gateway

    # Only with reports: the token lives in the data dir, which a bare gateway never opens.
    token = callback_token(app.settings) if reports_url else ""
    server = start_gateway(host, port, latency_ms=latency_ms, fail_rate=fail_rate, seed=seed,
                           reports_url=reports_url, callback_token=token,
                           report_delay_ms=report_delay_ms)
    reports = f"; reports to {reports_url}, POST /inbound for replies" if reports_url else ""
    click.echo(f"sandbox gateway listening on {server.url} (GET /stats, GET /messages"
               f"{reports})", err=True)
    _wait_for_signal()
    server.shutdown()


@click.command("redis")
@click.option("--stop", is_flag=True, help="Stop the embedded Redis of this data dir.")
@pass_app
def redis_cmd(app: AppContext, stop: bool) -> None:
    """Run the embedded Redis in the foreground (Ctrl-C stops it cleanly)."""
    server = EmbeddedRedis.for_settings(app.settings)
    if app.settings.redis_url:
        raise click.ClickException("RELAYDESK_REDIS_URL is set, so RelayDesk uses that Redis "
                                   "and runs none of its own")
    if stop:
        click.echo("stopped" if server.stop() else "not running")
        return
    process, url = server.start()
    if process is None:
        raise click.ClickException(f"the embedded Redis of this data dir already runs "
                                   f"({mask_url(url)}); stop it with 'relaydesk redis --stop'")
    click.echo(f"embedded Redis running at {mask_url(url)}; Ctrl-C to stop", err=True)
    if _wait_for_signal_or_exit(process):
        server.stop()
        process.wait()
        return
    # The server went away without a signal to us: 'relaydesk redis --stop' (or another
    # client's SHUTDOWN) exits it with 0, a crash or a kill does not.
    if process.returncode != 0:
        raise click.ClickException(f"the embedded Redis exited unexpectedly (exit code "
                                   f"{process.returncode}); see {server.log_file}")
    click.echo("embedded Redis stopped", err=True)


def _wait_for_signal_or_exit(process: subprocess.Popen[bytes]) -> bool:
    """Block until SIGINT or SIGTERM (True) or until ``process`` exits (False; reaped)."""
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    while not stop.wait(0.2):
        if process.poll() is not None:
            return False
    return True


@click.command("supervise")
@click.option("--workers", type=click.IntRange(min=1),
              help="Worker processes to keep running [env: RELAYDESK_WORKERS].")
@click.option("-c", "--concurrency", type=click.IntRange(min=1))
@click.option("--pool", type=click.Choice(["prefork", "threads", "solo"]))
@click.option("--autoscale", metavar="MAX,MIN", callback=_autoscale,
              help="Let each worker's prefork pool scale between MIN and MAX processes.")
@pass_app
def supervise_cmd(app: AppContext, workers: int | None, concurrency: int | None,
                  pool: str | None, autoscale: tuple[int, int] | None) -> None:
    """Run Redis (if embedded), the report receiver (with RELAYDESK_RECEIVER_PORT, or
    with the sandbox gateway), the sandbox gateway (if used) and workers; restart workers
    that die. Ctrl-C or SIGTERM stops everything warm."""
    from engine.operations.supervisor import (
        DEFAULT_MAX_PROCESSES,
        DEFAULT_MIN_PROCESSES,
        Supervisor,
    )

    _check_autoscale_pool(autoscale, pool)
    high, low = autoscale or (DEFAULT_MAX_PROCESSES, DEFAULT_MIN_PROCESSES)
    supervisor = Supervisor(app.settings, workers or app.settings.workers, concurrency, pool,
                            min_processes=low, max_processes=high,
                            autoscale=autoscale is not None)
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Before start(): a signal while it adopts or starts processes (which are then ours to
    # stop) must end in the warm stop below, not kill this process and leave them running.
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    supervisor.start()
    click.echo(f"supervising {supervisor.workers} worker(s); Ctrl-C to stop", err=True)
    while not stop.wait(1.0):
        supervisor.check()
    click.echo("stopping workers (warm)...", err=True)
    supervisor.stop()


def status_data(app: AppContext) -> dict[str, Any]:
    settings = app.settings
    client = redis_for(redis_url(settings, start=False), WORK)
    try:
        load, workers = broker_load(client), live_workers(client)  # read once, used twice
        identity = server_identity(client.info("server"))
        snapshot = broker_snapshot(client, load, workers)
        breaker = CircuitBreaker(client, settings.sms_provider, settings.breaker_threshold,
                                 settings.breaker_cooldown_s).state()
        with app.db.session() as session:
            figures = gather(client, session, settings, load=load, workers=workers)
    finally:
        client.close()
    return {**figures.as_dict(), **snapshot, **identity,
            "breaker": {"provider": settings.sms_provider, "state": breaker.state,
                        "failures": breaker.failures,
                        "reopens_in_s": round(breaker.reopens_in_s, 1)}}


def _run_note(run: dict[str, Any]) -> str:
    """Why a running campaign is not moving, or how fast it is, so a campaign that waits on
    purpose (its quiet hours, a pause) does not look stalled."""
    if run["status"] == "paused":
        return f"paused: {run['pause_reason']}" if run["pause_reason"] else "paused"
    if run["state_note"]:
        return str(run["state_note"])
    if run["eta_s"] is not None:
        return f"{run['per_minute']}/min, about {format_duration(run['eta_s'])} left"
    return ""


@click.command("status")
@json_option
@pass_app
def status_cmd(app: AppContext, as_json: bool) -> None:
    """Queue depths, in-flight and scheduled messages, workers, dead letters, breaker."""
    data = status_data(app)
    if as_json:
        print_json(data)
        return
    click.echo(f"state                {data['status']:>8}")
    click.echo(f"server               {data['server_name']} {data['server_version'] or '?'}")
    if data["server_warning"]:
        click.echo(f"WARNING: {data['server_warning']}")
    click.echo(f"jobs per minute      {data['jobs_per_minute']:>8}")
    click.echo(f"sent, last hour      {data['sent_last_hour']:>8}")
    rate = data["delivery_rate"]
    avg = data["avg_delivery_s"]
    click.echo(f"delivered, last hour {data['delivered']:>8}  undelivered {data['undelivered']}"
               f"  rate {'-' if rate is None else f'{rate:.1%}'}"
               f"  average {'-' if avg is None else format_duration(avg)} to arrive")
    click.echo(f"replies, last hour   {data['replies']:>8}  reports waiting "
               f"{data['reports_pending']}  unmatched {data['unmatched_reports']}")
    click.echo(f"failed, last 7 days  {data['failed_last_7_days']:>8}")
    for q in data["workload"]:
        click.echo(f"queue {q['queue']:<14} {q['waiting']:>8} waiting  {q['in_flight']} in flight"
                   f"  {q['processes']} processes  oldest {format_duration(q['wait_s'])}")
    for alert in data["alerts"]:
        click.echo(f"ALERT: {wait_alerts.LongWait(**alert).text()}")
    for run in data["campaigns"]:
        click.echo(f"campaign {run['campaign']:<10} {run['status']:>8}  "
                   f"sent {run['sent']}/{run['recipients']}  {_run_note(run)}".rstrip())
    click.echo(f"in flight            {data['in_flight']:>8}")
    click.echo(f"scheduled (paced)    {data['scheduled']:>8}")
    click.echo(f"dead letters         {data['dead_letters']:>8}")
    b = data["breaker"]
    click.echo(f"breaker ({b['provider']})   {b['state']}")
    click.echo(f"workers              {len(data['workers']):>8}")
    for w in data["workers"]:
        click.echo(f"  {w['name']}  pid {w['pid']}  queues {','.join(w['queues'])}")
