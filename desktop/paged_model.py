"""A table model over a database query that fetches rows a page at a time, off the UI thread.

The row count comes from one COUNT query; a page is fetched the first time a view asks for
one of its rows, and only a bounded number of pages is kept, so a 100,000-row table costs
what the visible rows cost. Filtering and sorting happen in SQL: changing them reloads.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    Signal,
)

from desktop.background import Background, Latest

PAGE_SIZE = 200
MAX_PAGES = 40  # rows kept in memory: 8,000 at most
LOADING = "…"

Index = QModelIndex | QPersistentModelIndex


@dataclass(frozen=True)
class Column:
    title: str
    sort_key: str | None  # the engine's sort name; None: not sortable
    text: Callable[[Any], str]
    align_right: bool = False


class PagedTableModel(QAbstractTableModel):
    loaded = Signal(int)  # the row count, after every (re)load
    page_loaded = Signal(int)  # page number

    def __init__(self, background: Background, columns: Sequence[Column],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.background = background
        self.columns = list(columns)
        self._count = 0
        self._pages: OrderedDict[int, list[Any]] = OrderedDict()
        self._pending: set[int] = set()
        # A reload asks a new question (filters, sort): answers to earlier reads are dropped.
        self._reads = Latest(background)
        self._refreshing = False
        self.sort_key: str | None = None
        self.descending = False

    # -- what subclasses provide (run on a background thread) ------------------------------
    def fetch_count(self) -> int:
        raise NotImplementedError

    def fetch_page(self, offset: int, limit: int) -> list[Any]:
        raise NotImplementedError

    # -- loading --------------------------------------------------------------------------
    def reload(self) -> None:
        """Fetch the count again and drop cached pages (after a filter, sort or data change)."""
        self._reads.start()
        self._refreshing = False  # a refresh under way reads for the old query: dropped

        def counted(result: tuple[int, list[Any]]) -> None:
            count, first_page = result
            self.beginResetModel()
            self._count = count
            self._pages.clear()
            self._pending.clear()
            if first_page:
                self._pages[0] = first_page
            self.endResetModel()
            self.loaded.emit(count)

        def failed(error: BaseException) -> None:
            self._pending.clear()  # pages asked for before can be asked for again
            self.background.error.emit(error)

        self._reads.submit(self._count_and_first_page, on_done=counted, on_error=failed)

    def _count_and_first_page(self) -> tuple[int, list[Any]]:
        count = self.fetch_count()
        return count, self.fetch_page(0, PAGE_SIZE) if count else []

    def refresh(self) -> None:
        """Re-read the rows on screen in place, for a live view. Rows that appeared or went
        away are inserted or removed at the end, so the view keeps its selection and
        scroll position (reload() resets both). One refresh at a time."""
        if self._refreshing:
            return
        self._refreshing = True
        pages = list(self._pages)

        def fetch() -> tuple[int, dict[int, list[Any]]]:
            return self.fetch_count(), {p: self.fetch_page(p * PAGE_SIZE, PAGE_SIZE)
                                        for p in pages}

        def arrived(result: tuple[int, dict[int, list[Any]]]) -> None:
            self._refreshing = False
            count, fresh = result
            self._resize(count)
            self._pages.update(fresh)
            if count:
                self.dataChanged.emit(self.index(0, 0),
                                      self.index(count - 1, len(self.columns) - 1))

        def failed(_: BaseException) -> None:
            self._refreshing = False  # a live view tries again at its next tick

        self._reads.submit(fetch, on_done=arrived, on_error=failed)

    def _resize(self, count: int) -> None:
        if count > self._count:
            self.beginInsertRows(QModelIndex(), self._count, count - 1)
            self._count = count
            self.endInsertRows()
        elif count < self._count:
            self.beginRemoveRows(QModelIndex(), count, self._count - 1)
            self._count = count
            first_gone = count // PAGE_SIZE + (1 if count % PAGE_SIZE else 0)
            for page in [p for p in self._pages if p >= first_gone]:
                del self._pages[page]
            self.endRemoveRows()

    def _request_page(self, page: int) -> None:
        if page in self._pending:
            return
        self._pending.add(page)

        def arrived(rows: list[Any]) -> None:
            self._pending.discard(page)
            self._pages[page] = rows
            while len(self._pages) > MAX_PAGES:
                self._pages.popitem(last=False)
            first = page * PAGE_SIZE
            last = min(first + len(rows), self._count) - 1
            if last >= first:
                self.dataChanged.emit(self.index(first, 0),
                                      self.index(last, len(self.columns) - 1))
            self.page_loaded.emit(page)

        def failed(error: BaseException) -> None:
            self._pending.discard(page)
            self.background.error.emit(error)

        self._reads.submit(self.fetch_page, page * PAGE_SIZE, PAGE_SIZE,
                           on_done=arrived, on_error=failed)

    def loaded_pages(self) -> set[int]:
        return set(self._pages)

    def row_object(self, row: int) -> Any | None:
        """The row's object when its page is loaded (always, for rows on screen)."""
        page = row // PAGE_SIZE
        rows = self._pages.get(page)
        if rows is None:
            if 0 <= row < self._count:
                self._request_page(page)
            return None
        self._pages.move_to_end(page)
        offset = row - page * PAGE_SIZE
        return rows[offset] if offset < len(rows) else None

    # -- Qt model interface --------------------------------------------------------------
    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else self._count

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.columns)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.row() >= self._count:
            return None
        column = self.columns[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            item = self.row_object(index.row())
            return LOADING if item is None else column.text(item)
        if role == Qt.ItemDataRole.TextAlignmentRole and column.align_right:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return self.extra_data(index, role)

    def extra_data(self, index: Index, role: int) -> Any:
        """Other roles (colours, tooltips) for subclasses."""
        return None

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        if orientation == Qt.Orientation.Horizontal and 0 <= section < len(self.columns):
            return self.columns[section].title
        if orientation == Qt.Orientation.Vertical:
            return section + 1
        return None

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        if not 0 <= column < len(self.columns) or self.columns[column].sort_key is None:
            return
        self.sort_key = self.columns[column].sort_key
        self.descending = order == Qt.SortOrder.DescendingOrder
        self.reload()
