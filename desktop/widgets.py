"""Small widgets the pages share."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QAbstractItemModel, Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QFrame,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from desktop.settings_form import tone
from desktop.theme import BAD

SEARCH_DELAY_MS = 250


class SearchField(QLineEdit):
    """A line edit that reports its text once the operator pauses typing."""

    search_changed = Signal(str)

    def __init__(self, placeholder: str) -> None:
        super().__init__()
        self.setPlaceholderText(placeholder)
        self.setClearButtonEnabled(True)
        self._timer = QTimer(self, singleShot=True, interval=SEARCH_DELAY_MS)
        self._timer.timeout.connect(lambda: self.search_changed.emit(self.text()))
        self.textChanged.connect(lambda _: self._timer.start())


class ReportDialog(QDialog):
    """A summary line and a block of text the operator can read and copy."""

    def __init__(self, parent: QWidget | None, title: str, summary: str, text: str) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.resize(640, 420)
        layout = QVBoxLayout(self)
        self.summary = QLabel(summary)
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.summary)
        self.details = QPlainTextEdit(text)
        self.details.setReadOnly(True)
        self.details.setVisible(bool(text))
        layout.addWidget(self.details, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        copy = QPushButton("Copy")
        copy.setEnabled(bool(text))
        copy.clicked.connect(self.copy)
        buttons.addButton(copy, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        buttons.accepted.connect(self.accept)
        layout.addWidget(buttons)

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(f"{self.summary.text()}\n\n{self.details.toPlainText()}")


def data_table(model: QAbstractItemModel, name: str, *, single: bool = True,
               fit_contents: bool = False) -> QTableView:
    """A read-only table of whole rows, as every page shows them."""
    view = QTableView()
    view.setObjectName(name)
    view.setModel(model)
    view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    if single:
        view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    view.setAlternatingRowColors(True)
    view.verticalHeader().setVisible(False)
    view.verticalHeader().setDefaultSectionSize(26)
    header = view.horizontalHeader()
    header.setStretchLastSection(True)
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents if fit_contents
                                else QHeaderView.ResizeMode.Interactive)
    return view


def empty_state(text: str) -> QLabel:
    label = QLabel(text)
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    label.setWordWrap(True)
    label.setEnabled(False)
    label.setMargin(40)
    return label


def separator() -> QFrame:
    line = QFrame()
    line.setFrameShape(QFrame.Shape.HLine)
    line.setFrameShadow(QFrame.Shadow.Sunken)
    return line


def heading(text: str, scale: float) -> QLabel:
    """A bold title ``scale`` times the normal font size."""
    label = bold(QLabel(text))
    font = label.font()
    font.setPointSizeF(font.pointSizeF() * scale)
    label.setFont(font)
    return label


def bold(label: QLabel) -> QLabel:
    font = label.font()
    font.setBold(True)
    label.setFont(font)
    return label


def tool_button(text: str, slot: Callable[[], object], tip: str, name: str = "") -> QPushButton:
    """A page's action button: its text, what it does on click, and a tooltip."""
    button = QPushButton(text)
    if name:
        button.setObjectName(name)
    button.setToolTip(tip)
    button.clicked.connect(slot)
    return button


def error_label(name: str) -> QLabel:
    """A dialog's error line: hidden until there is something to say, in the theme's
    "bad" colour, selectable so it can be copied."""
    label = QLabel()
    label.setObjectName(name)
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.setStyleSheet(f"color: {tone(BAD)}")
    label.hide()
    return label
