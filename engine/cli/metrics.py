"""``relaydesk metrics``: the recorded series, per bucket."""

from __future__ import annotations

import time
from datetime import datetime

import click

from engine.cli.common import AppContext, duration, json_option, pass_app, print_json
from engine.config.settings import PROVIDERS
from engine.domain.queues import ALL_QUEUES
from engine.infra import metrics
from engine.infra.metrics import Metric

COLUMNS = (Metric.JOBS, Metric.SENT, Metric.RETRIED, Metric.DEAD, Metric.DEPTH,
           Metric.RUNTIME_MS, Metric.RUNTIME_MAX_MS, Metric.WAIT_MS, Metric.WAIT_MAX_MS,
           Metric.CALL_MS, Metric.CALL_MAX_MS, Metric.CALLS, Metric.REPORTS, Metric.DELIVERED,
           Metric.UNDELIVERED, Metric.DELIVERY_MS, Metric.DELIVERY_MAX_MS, Metric.INBOUND,
           Metric.UNMATCHED)
# Sums shown as averages: sum field -> (count field, average's name)
AVERAGES = {Metric.RUNTIME_MS: (Metric.JOBS, "runtime_avg_ms"),
            Metric.WAIT_MS: (Metric.JOBS, "wait_avg_ms"),
            Metric.CALL_MS: (Metric.CALLS, "call_avg_ms"),
            Metric.DELIVERY_MS: (Metric.DELIVERED, "delivery_avg_ms")}


@click.command("metrics")
@click.option("--since", "span_s", default="1h", show_default=True, callback=duration,
              help="How far back: 15m, 1h, 24h, 30d …")
@click.option("--queue", type=click.Choice(ALL_QUEUES), help="Only this queue's figures.")
@click.option("--campaign", "campaign_id", type=int, help="Only this campaign's messages.")
@click.option("--provider", type=click.Choice(PROVIDERS),
              help="Only this provider's figures (its calls and delivery reports).")
@json_option
@pass_app
def metrics_cmd(app: AppContext, span_s: int, queue: str | None, campaign_id: int | None,
                provider: str | None, as_json: bool) -> None:
    """Jobs, messages sent, retried and dead, delivery success, queue depth, runtimes,
    waits in the queue, provider response times, delivery reports (delivered, undelivered,
    time from send to delivery) and replies, per bucket (10 s up to an hour back,
    per minute up to a day, then per hour)."""
    if sum((queue is not None, campaign_id is not None, provider is not None)) > 1:
        raise click.UsageError("give one of --queue, --campaign and --provider, not several")
    scope = (metrics.queue_scope(queue) if queue else
             metrics.campaign_scope(campaign_id) if campaign_id is not None else
             metrics.provider_scope(provider) if provider else metrics.ALL)
    res = metrics.resolution_for(app.settings, span_s)
    now = time.time()
    series = metrics.read_series(app.redis, res, [metrics.field(scope, c) for c in COLUMNS],
                                 now - span_s + res.step_s, now)
    rows: list[dict[str, str | int]] = []
    for i, start in enumerate(series.starts):
        values: dict[str, int] = {c: series.values[metrics.field(scope, c)][i] for c in COLUMNS}
        for total, (count, name) in AVERAGES.items():
            amount = values.pop(total)
            values[name] = round(amount / values[count]) if values[count] else 0
        done = values[Metric.SENT] + values[Metric.DEAD]
        values["success_pct"] = round(100 * values[Metric.SENT] / done) if done else 0
        final = values[Metric.DELIVERED] + values[Metric.UNDELIVERED]
        values["delivered_pct"] = round(100 * values[Metric.DELIVERED] / final) if final else 0
        stamp = datetime.fromtimestamp(start).astimezone().isoformat(timespec="seconds")
        rows.append({"start": stamp, **values})
    if as_json:
        print_json({"scope": scope, "step_s": res.step_s, "buckets": rows})
        return
    click.echo(f"{scope}, per {res.name} bucket")
    header = ["start", *(c for c in rows[0] if c != "start")] if rows else []
    click.echo("  ".join(f"{h:>14}" if h != "start" else f"{h:<25}" for h in header))
    for row in rows:
        if any(v for k, v in row.items() if k != "start"):
            click.echo("  ".join(f"{v:>14}" if k != "start" else f"{v:<25}"
                                 for k, v in row.items()))
