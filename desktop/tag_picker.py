"""Several tags chosen at once (Compose's "tagged any of" and "not tagged"): a button that
names the chosen tags and drops down a checkable list of every tag with its count."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QListWidget,
    QListWidgetItem,
    QMenu,
    QSizePolicy,
    QToolButton,
    QWidget,
    QWidgetAction,
)

MAX_LIST_HEIGHT = 260
MAX_TEXT_WIDTH = 180  # pixels of the chosen tags' names on the button


class TagPicker(QToolButton):
    """``changed`` is emitted when the operator checks or unchecks a tag, not on a refill."""

    changed = Signal()

    def __init__(self, none_text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.none_text = none_text
        self.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMinimumWidth(140)
        # A list inside the menu keeps it open while several tags are checked.
        self.list = QListWidget()
        self.list.setObjectName("tag-picker-list")
        self.list.setMaximumHeight(MAX_LIST_HEIGHT)
        self.list.itemChanged.connect(self._item_changed)
        menu = QMenu(self)
        action = QWidgetAction(menu)
        action.setDefaultWidget(self.list)
        menu.addAction(action)
        self.setMenu(menu)
        self._filling = False
        self._show_text()

    def set_tags(self, tags: list[tuple[str, int]]) -> None:
        """Every tag with its count, keeping those still there checked."""
        chosen = set(self.chosen())
        self._filling = True
        self.list.clear()
        for tag, count in tags:
            item = QListWidgetItem(f"{tag} ({count:,})")
            item.setData(Qt.ItemDataRole.UserRole, tag)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if tag in chosen
                               else Qt.CheckState.Unchecked)
            self.list.addItem(item)
        self._filling = False
        self.setEnabled(bool(tags))
        self._show_text()
        if set(self.chosen()) != chosen:  # a chosen tag is gone: the audience changed
            self.changed.emit()

    def chosen(self) -> tuple[str, ...]:
        return tuple(str(self.list.item(i).data(Qt.ItemDataRole.UserRole))
                     for i in range(self.list.count())
                     if self.list.item(i).checkState() == Qt.CheckState.Checked)

    def set_chosen(self, tags: tuple[str, ...] | list[str]) -> None:
        """Check exactly ``tags`` (those that exist), as clicking them would."""
        for i in range(self.list.count()):
            item = self.list.item(i)
            wanted = item.data(Qt.ItemDataRole.UserRole) in tags
            item.setCheckState(Qt.CheckState.Checked if wanted else Qt.CheckState.Unchecked)

    def _item_changed(self, _: QListWidgetItem) -> None:
        if self._filling:
            return
        self._show_text()
        self.changed.emit()

    def _show_text(self) -> None:
        chosen = ", ".join(self.chosen())
        # Elided: many (or long) tags must not widen the page; the tooltip lists them all.
        self.setText(self.fontMetrics().elidedText(chosen, Qt.TextElideMode.ElideRight,
                                                   MAX_TEXT_WIDTH) if chosen
                     else self.none_text)
        self.setToolTip(chosen)
