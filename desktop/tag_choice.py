"""The tag drop-downs of Contacts and Compose: tags with their counts, read off the UI
thread, refilled without losing the operator's choice."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QComboBox

from desktop.background import Latest
from desktop.context import ConsoleContext
from engine.store.contacts import all_tags


class TagReader:
    """Reads every tag with its count off the UI thread. Only the newest read is shown: a
    read started before an import can answer after the one started by it (measured under
    load), and its empty list must not replace the fresh one."""

    def __init__(self, ctx: ConsoleContext, then: Callable[[list[tuple[str, int]]], None]
                 ) -> None:
        self._ctx = ctx
        self._then = then
        self._reads = Latest(ctx.background)

    def load(self) -> None:
        def read() -> list[tuple[str, int]]:
            with self._ctx.services.db().session() as session:
                return all_tags(session)

        self._reads.start()
        self._reads.submit(read, on_done=self._then)


def fill_tags(combo: QComboBox, tags: list[tuple[str, int]], first: str | None = None) -> bool:
    """Refill ``combo`` (with ``first`` meaning "no tag" at the top, if given), keeping the
    chosen tag. False when that tag is gone and the first entry is chosen instead."""
    current = combo.currentData()
    combo.blockSignals(True)  # a refill is not the operator choosing
    combo.clear()
    if first is not None:
        combo.addItem(first, None)
    for tag, count in tags:
        combo.addItem(f"{tag} ({count:,})", tag)
    index = combo.findData(current)
    combo.setCurrentIndex(max(index, 0))
    combo.blockSignals(False)
    return index >= 0 or current is None
