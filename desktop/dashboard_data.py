"""What one dashboard refresh reads, off the UI thread: the overview figures and the chart
series of the chosen range (read incrementally through a MetricWindow)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from desktop.services import Services
from engine.domain.queues import ALL_QUEUES
from engine.infra import metrics
from engine.infra.metrics import Metric
from engine.monitoring.overview import Overview, gather

# range label -> span in seconds; each reads the finest resolution still kept that long
RANGES = {"15 min": 900, "1 h": 3600, "24 h": 86_400}

DEPTH_FIELDS = {q: metrics.field(metrics.queue_scope(q), Metric.DEPTH) for q in ALL_QUEUES}
SENT, DEAD, RETRIED = (metrics.field(metrics.ALL, n) for n in
                       (Metric.SENT, Metric.DEAD, Metric.RETRIED))
CALLS, CALL_MS, CALL_MAX = (metrics.field(metrics.ALL, n) for n in
                            (Metric.CALLS, Metric.CALL_MS, Metric.CALL_MAX_MS))
FIELDS = [*DEPTH_FIELDS.values(), SENT, DEAD, RETRIED, CALLS, CALL_MS, CALL_MAX]


@dataclass(frozen=True)
class ChartData:
    """Numpy arrays, built on the background thread: the UI thread only copies them."""

    starts: np.ndarray
    depth: dict[str, np.ndarray]  # queue -> jobs waiting
    throughput: dict[str, np.ndarray]  # sent / failed / retried per minute
    response: dict[str, np.ndarray]  # average / slowest provider call, ms (NaN: no call)


@dataclass(frozen=True)
class Snapshot:
    overview: Overview
    charts: ChartData
    range_label: str


def new_window(services: Services, range_label: str) -> metrics.MetricWindow:
    span = RANGES[range_label]
    return metrics.MetricWindow(metrics.resolution_for(services.settings, span), span, FIELDS)


def chart_data(series: metrics.Series, overview: Overview) -> ChartData:
    per_minute = 60 / series.step_s
    v = {f: np.asarray(values, dtype=float) for f, values in series.values.items()}
    depth = {q: v[f] for q, f in DEPTH_FIELDS.items()}
    # The monitor samples every few seconds; the bucket of the moment also gets what the
    # dashboard sees right now, so the line moves at once.
    for row in overview.workload:
        if len(depth[row.queue]):
            depth[row.queue][-1] = max(depth[row.queue][-1], float(row.waiting))
    throughput = {"sent": v[SENT] * per_minute, "failed": v[DEAD] * per_minute,
                  "retried": v[RETRIED] * per_minute}
    called = v[CALLS] > 0
    average = np.full(len(series.starts), np.nan)
    np.divide(v[CALL_MS], v[CALLS], out=average, where=called)
    slowest = np.where(called, v[CALL_MAX], np.nan)
    return ChartData(np.asarray(series.starts, dtype=float), depth, throughput,
                     {"average": average, "slowest": slowest})


def fetch(services: Services, window: metrics.MetricWindow, range_label: str) -> Snapshot:
    client = services.redis()
    with services.db().session() as session:
        overview = gather(client, session, services.settings)
    series = window.refresh(client, overview.read_at)
    return Snapshot(overview, chart_data(series, overview), range_label)
