"""The dashboard's refresh cost per tick, with a full day of metrics behind it. Prints JSON.

Usage: QT_QPA_PLATFORM=offscreen python benchmarks/dashboard_refresh.py [--ticks 30]

For each range (15 min, 1 h, 24 h) the dashboard refreshes ``--ticks`` times, as its
1-second timer does, with a new chunk's figures recorded before each tick (its queue depth and
response time changing too, so all three charts redraw every tick). Figures per tick:
- ``charts_update_ms``: the three charts' own work on the UI thread: copying the new
  arrays in and ``setData`` (ranges only when they change);
- ``charts_ms``: that plus a synchronous repaint of the three plot viewports (which also
  flushes whatever else of the window is waiting to be painted);
- ``page_ms``: everything the UI thread does for a tick (cards, charts, workload table,
  campaign rows) and painting the whole page;
- ``read_ms``: the background read (overview + chart window) before it, as seen from the
  UI thread (queueing included).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtWidgets import QApplication

sys.path.insert(0, str(Path(__file__).parent))
from qt_wait import wait_until

# Untimed ticks after each range switch: the first paints of new axes lay out fonts once.
WARM_UP = 5
TICKS = itertools.count(1)  # across ranges, so the newest peak depth keeps rising


def busy_sample(at: float, tick: int = 0) -> Any:
    """What a chunk of 50 adds, with a queue-depth sample. A rising ``tick`` makes the
    newest bucket's peak depth and average response time change too, so that every tick
    redraws all three charts (the worst case; a quiet queue redraws only throughput)."""
    from engine.infra import metrics

    sample = metrics.Sample()
    scopes = (metrics.ALL, metrics.queue_scope("bulk_messages"))
    sample.add(scopes, metrics.Metric.SENT, 48)
    sample.add(scopes, metrics.Metric.DEAD, 1)
    sample.add(scopes, metrics.Metric.RETRIED, 1)
    sample.add((metrics.ALL,), metrics.Metric.CALLS, 50)
    sample.timing((metrics.ALL,), metrics.Metric.CALL_MS, metrics.Metric.CALL_MAX_MS,
                  50 * (85 + tick % 7))
    # A campaign's backlog rising and draining over the hour; a little individual traffic.
    bulk = round(300 + 250 * math.sin(at / 900)) + tick
    for queue, depth in (("bulk_messages", bulk), ("messages", int(at) // 10 % 3)):
        sample.peak((metrics.queue_scope(queue),), metrics.Metric.DEPTH, depth)
    return sample


def seed_day(client: Any, settings: Any) -> None:
    """A busy day: a chunk of 50 every 10 seconds."""
    from engine.infra import metrics

    now = time.time()
    for at in range(int(now - 86_400), int(now), 10):
        metrics.record(client, settings, busy_sample(at), at=at)


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"median": round(statistics.median(ordered), 2),
            "p95": round(ordered[int(0.95 * (len(ordered) - 1))], 2),
            "max": round(ordered[-1], 2)}


def measure(page: Any, client: Any, settings: Any, ticks: int) -> dict[str, Any]:
    from engine.infra import metrics

    charts_update_ms: list[float] = []
    charts_ms: list[float] = []
    page_ms: list[float] = []
    reads: list[float] = []
    charts = (page.depth_chart, page.throughput_chart, page.response_chart)
    for tick in range(WARM_UP + ticks):
        metrics.record(client, settings, busy_sample(time.time(), next(TICKS)))
        before = page.snapshot
        started = time.perf_counter()
        page.refresh()
        wait_until(lambda b=before: page.snapshot is not b)
        read_ms = (time.perf_counter() - started) * 1000 - page.last_ui_ms
        painted = time.perf_counter()
        for chart in charts:  # the paint the new data costs, now rather than later
            chart.plot.viewport().repaint()
        charts_paint = (time.perf_counter() - painted) * 1000
        painted = time.perf_counter()
        page.repaint()
        if tick < WARM_UP:
            continue
        reads.append(read_ms)
        charts_update_ms.append(page.last_charts_ms)
        charts_ms.append(page.last_charts_ms + charts_paint)
        page_ms.append(page.last_ui_ms + charts_paint + (time.perf_counter() - painted) * 1000)
    return {"points": page.throughput_chart.points,
            "charts_update_ms": summary(charts_update_ms), "charts_ms": summary(charts_ms),
            "page_ms": summary(page_ms), "read_ms": summary(reads)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ticks", type=int, default=30)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="relaydesk-dashboard-bench-"))
    os.environ.update({"RELAYDESK_DATA_DIR": str(data_dir),
                       "RELAYDESK_CONFIG_FILE": str(data_dir / "config.toml")})
    app = QApplication([])

    from desktop.app import build_console
    from desktop.pages.dashboard_page import DashboardPage
    from engine.config.settings import load_settings
    from engine.infra.embedded_redis import EmbeddedRedis

    settings = load_settings()
    server = EmbeddedRedis(data_dir / "redis")
    server.start()
    console = build_console(settings, theme="light")
    try:
        client = console.ctx.services.redis()
        seed_day(client, settings)
        console.window.resize(1280, 800)
        console.window.show()
        console.window.show_page("dashboard")
        page = console.window.page("dashboard")
        assert isinstance(page, DashboardPage)
        page.refresh_timer.stop()  # the benchmark drives the ticks itself
        results: dict[str, Any] = {}
        from desktop import dashboard_data

        for label in dashboard_data.RANGES:
            page.set_range(label)
            wait_until(lambda: page.snapshot is not None and not page.refreshing)
            results[label] = measure(page, client, settings, args.ticks)
    finally:
        console.close(wait=True)
        server.stop()
        app.quit()
    print(json.dumps({"ticks": args.ticks, "ranges": results}, indent=2))


if __name__ == "__main__":
    main()
