"""The Contacts table at 100,000 contacts: how long until the first screen shows after
opening, searching, filtering by tag, sorting, and jumping to the end. Prints JSON.

Usage: QT_QPA_PLATFORM=offscreen python benchmarks/contacts_table.py [--rows 100000]
Each figure is the time from the operator's action to the rows being on screen (the count
and the page arrive from a background thread; the UI thread never waits on the query).
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

sys.path.insert(0, str(Path(__file__).parent))
from import_contacts import write_csv  # the same generated contacts as the import benchmark
from qt_wait import wait_until


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="relaydesk-table-bench-"))
    os.environ.update({"RELAYDESK_DATA_DIR": str(data_dir),
                       "RELAYDESK_CONFIG_FILE": str(data_dir / "config.toml")})
    app = QApplication([])

    from desktop.background import Background
    from desktop.contacts_model import ContactsModel
    from desktop.paged_model import LOADING
    from desktop.services import Services
    from engine.config.settings import load_settings
    from engine.store.contacts_import import import_contacts
    from engine.store.db import open_database

    settings = load_settings()
    path = data_dir / "contacts.csv"
    write_csv(path, args.rows)
    import_contacts(open_database(settings), path, settings.default_region)
    model = ContactsModel(Services(settings), Background())

    def shown(row: int) -> bool:
        return model.rowCount() > row and model.index(row, 0).data() not in (None, LOADING)

    loads: list[int] = []  # one entry per (re)load the model finished
    model.loaded.connect(loads.append)

    def timed(action: Callable[[], None], ready: Callable[[], bool]) -> float:
        before = len(loads)
        start = time.perf_counter()
        action()
        wait_until(lambda: len(loads) > before and ready())
        return round((time.perf_counter() - start) * 1000, 1)

    figures = {
        "open_ms": timed(model.reload, lambda: shown(0)),
        "search_ms": timed(lambda: model.set_filter(search="Member 4242"), lambda: shown(0)),
        "tag_filter_ms": timed(lambda: model.set_filter(search="", tag="choir"),
                               lambda: shown(0)),
        "sort_by_balance_ms": timed(lambda: model.sort(4, Qt.SortOrder.DescendingOrder),
                                    lambda: shown(0)),
    }
    model.set_filter(tag=None)
    wait_until(lambda: model.rowCount() == args.rows and shown(0))
    start = time.perf_counter()
    model.index(args.rows - 1, 0).data()  # scrolled to the end: fetches that page
    wait_until(lambda: shown(args.rows - 1))
    figures["jump_to_end_ms"] = round((time.perf_counter() - start) * 1000, 1)
    print(json.dumps({"rows": args.rows, **figures,
                      "rows_in_memory": sum(len(p) for p in model._pages.values()),
                      "peak_rss_mb": round(resource.getrusage(
                          resource.RUSAGE_SELF).ru_maxrss / 1024)}, indent=2))
    app.quit()


if __name__ == "__main__":
    main()
