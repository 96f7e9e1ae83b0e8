"""Layout helpers for small windows: a layout that lines its items up left to right and
wraps them onto the next row when the width runs out (a row of buttons never squeezes its
texts), and labels whose wrapped text keeps all its lines."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QMargins, QObject, QPoint, QRect, QSize, Qt
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLayout,
    QLayoutItem,
    QSizePolicy,
    QWidget,
)


class FlowLayout(QLayout):
    def __init__(self, parent: QWidget | None = None, spacing: int = 6) -> None:
        super().__init__(parent)
        self._items: list[QLayoutItem] = []
        self._spacing = spacing
        self._rows_height = 0  # the height its rows took at the width it last had
        self.setContentsMargins(QMargins(0, 0, 0, 0))

    def addItem(self, item: QLayoutItem) -> None:  # Qt's names and signatures
        self._items.append(item)

    def count(self) -> int:
        return len(self._items)

    def itemAt(self, index: int) -> QLayoutItem | None:
        return self._items[index] if 0 <= index < len(self._items) else None

    def takeAt(self, index: int) -> QLayoutItem | None:
        return self._items.pop(index) if 0 <= index < len(self._items) else None

    def expandingDirections(self) -> Qt.Orientation:
        return Qt.Orientation(0)

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        return self._arrange(QRect(0, 0, width, 0), move=False)

    def setGeometry(self, rect: QRect) -> None:
        super().setGeometry(rect)
        height = self._arrange(rect, move=True)
        if height != self._rows_height:
            # More (or fewer) rows: the boxes around must make room (laid out again
            # once, on the next turn of the event loop).
            self._rows_height = height
            self.invalidate()

    def sizeHint(self) -> QSize:
        """Everything on one row."""
        width = sum(i.sizeHint().width() for i in self._items) + \
            self._spacing * max(len(self._items) - 1, 0)
        height = max((i.sizeHint().height() for i in self._items), default=0)
        margins = self.contentsMargins()
        return QSize(width + margins.left() + margins.right(),
                     height + margins.top() + margins.bottom())

    def minimumSize(self) -> QSize:
        """As wide as the widest item (anything wider wraps), as high as the rows are at
        the current width (a parent that does not ask height-for-width still makes room
        for every row)."""
        size = QSize()
        for item in self._items:
            size = size.expandedTo(item.minimumSize())
        margins = self.contentsMargins()
        size += QSize(margins.left() + margins.right(), margins.top() + margins.bottom())
        return size.expandedTo(QSize(0, self._rows_height))

    def _arrange(self, rect: QRect, *, move: bool) -> int:
        margins = self.contentsMargins()
        area = rect.adjusted(margins.left(), margins.top(), -margins.right(), -margins.bottom())
        x, y, row_height = area.x(), area.y(), 0
        for item in self._items:
            if item.isEmpty():
                continue
            hint = item.sizeHint()
            if x > area.x() and x + hint.width() > area.right() + 1:
                x, y, row_height = area.x(), y + row_height + self._spacing, 0
            if move:
                item.setGeometry(QRect(QPoint(x, y), hint))
            x += hint.width() + self._spacing
            row_height = max(row_height, hint.height())
        return y + row_height - rect.y() + margins.bottom()


def flow_row(*widgets: QWidget) -> QWidget:
    """Widgets that stay together on one row of a FlowLayout (a label and its field)."""
    group = QWidget()
    row = QHBoxLayout(group)
    row.setContentsMargins(0, 0, 0, 0)
    for widget in widgets:
        row.addWidget(widget)
    group.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
    return group



class _FitHeight(QObject):
    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Resize and isinstance(watched, QLabel):
            fit_height(watched)
        return False


def keep_whole(*labels: QLabel) -> None:
    """Wrap these labels' texts, and keep each at least as tall as its text needs at its
    width: a box that does not pass height-for-width on (see the Workers page) would
    otherwise give a wrapped text fewer lines than it has."""
    for label in labels:
        label.setWordWrap(True)
        label.installEventFilter(_FitHeight(label))
        fit_height(label)


def fit_height(label: QLabel) -> None:
    """Call after changing the text of a label given to keep_whole()."""
    need = label.heightForWidth(label.width())
    if need > 0 and label.minimumHeight() != need:
        label.setMinimumHeight(need)
