"""The Failed jobs page at 100,000 dead letters: how long from the operator's action to the
rows on screen when opening the page, searching, filtering and sorting. Prints JSON.

Usage: QT_QPA_PLATFORM=offscreen python benchmarks/failed_panel.py [--rows 100000]
The dead letters are bulk-inserted straight into the store (tests/failed_seed.py). The
search is timed from the moment the search field reports its text (the field itself waits
for a typing pause first). Target: under 300 ms each.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from qt_wait import wait_until


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the median")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="relaydesk-failed-bench-"))
    os.environ.update({"RELAYDESK_DATA_DIR": str(data_dir),
                       "RELAYDESK_CONFIG_FILE": str(data_dir / "config.toml")})
    app = QApplication([])

    from desktop.background import Background
    from desktop.context import Bus, ConsoleContext
    from desktop.paged_model import LOADING
    from desktop.pages.failed_page import FailedPage
    from desktop.services import Services
    from engine.config.settings import load_settings
    from engine.store.db import open_database
    from tests.failed_seed import seed_failed

    settings = load_settings()
    started = time.perf_counter()
    seed_failed(open_database(settings), args.rows)
    seed_s = round(time.perf_counter() - started, 1)

    def fresh_page() -> FailedPage:
        page = FailedPage(ConsoleContext(Services(settings), Background(), Bus()))
        page.resize(1200, 800)
        page.show()
        return page

    def shown(page: FailedPage) -> bool:
        model = page.model
        return model.rowCount() > 0 and model.index(0, 0).data() not in (None, LOADING)

    def timed(page: FailedPage, action: Callable[[], None]) -> float:
        loads: list[int] = []
        page.model.loaded.connect(loads.append)
        start = time.perf_counter()
        action()
        wait_until(lambda: bool(loads) and shown(page))
        elapsed = (time.perf_counter() - start) * 1000
        page.model.loaded.disconnect(loads.append)
        return elapsed

    def median(values: list[float]) -> float:
        return round(sorted(values)[len(values) // 2], 1)

    runs: dict[str, list[float]] = {}
    for _ in range(args.repeat):
        page = fresh_page()
        figures = {
            "open_ms": timed(page, page.activated),
            "search_ms": timed(page, lambda p=page: p.search.search_changed.emit("quota")),
            "error_type_filter_ms": timed(page, lambda p=page: p.model.set_filter(
                search="", error_type="timeout")),
            "sort_by_attempts_ms": timed(page, lambda p=page: p.table.sortByColumn(
                5, Qt.SortOrder.AscendingOrder)),
            "campaign_search_ms": timed(page, lambda p=page: p.model.set_filter(
                error_type=None, search="choir")),
        }
        for key, value in figures.items():
            runs.setdefault(key, []).append(value)
        wait_until(lambda p=page: p.ctx.background.in_flight == 0)
        page.shutdown()
        page.deleteLater()
    print(json.dumps({"rows": args.rows, "seed_s": seed_s,
                      **{key: median(values) for key, values in runs.items()},
                      "runs": {key: [round(v, 1) for v in values]
                               for key, values in runs.items()},
                      "peak_rss_mb": round(resource.getrusage(
                          resource.RUSAGE_SELF).ru_maxrss / 1024)}, indent=2))
    app.quit()


if __name__ == "__main__":
    main()
