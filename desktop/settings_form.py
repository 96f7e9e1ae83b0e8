"""The Settings page's pieces: one editor per setting, a connection-test control, and the
texts that tell the operator where a value comes from and what a save did. Nothing here
touches a file, the keyring or the network: the page does that in the background."""

from __future__ import annotations

import html
from collections.abc import Iterable

import phonenumbers
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from desktop.theme import BAD, GOOD, WARN, is_dark
from engine.config.settings_store import FieldInfo, SavedSettings
from engine.operations.connection_checks import CheckResult

TEXT_WIDTH = 460
NUMBER_WIDTH = 140
CHOICE_WIDTH = 220
# Folders chosen with a Browse… button (and its dialog's title).
FOLDERS = {"RELAYDESK_DATA_DIR": "Data folder", "RELAYDESK_ARCHIVE_DIR": "Archive folder"}

_SOURCE_TEXT = {
    "config": "Saved in the config file.",
    "keyring": "Saved in the system keyring.",
    "environment": "Set in the environment ({name}): change it there. A value saved here is "
                   "overridden while it is set.",
    "env file": "Set in the env file RelayDesk was started with (--env-file or "
                "RELAYDESK_ENV_FILE): change it there. A value saved here is overridden "
                "while it is set.",
    "command line": "Set on the command line for this session: start RelayDesk without it "
                    "to change the saved value.",
}
SHADOWING = ("command line", "environment", "env file")


def tone(color: QColor) -> str:
    """``color`` as CSS, a little lighter on the dark theme so it stays readable."""
    app = QApplication.instance()
    dark = isinstance(app, QApplication) and is_dark(app)
    return (color.lighter(135) if dark else color).name()


def muted(label: QLabel) -> QLabel:
    label.setForegroundRole(QPalette.ColorRole.PlaceholderText)
    return label


def source_note(info: FieldInfo) -> str:
    if info.source == "default":
        return ""
    return _SOURCE_TEXT[info.source].format(name=info.name)


def secret_placeholder(info: FieldInfo, clearing: bool) -> str:
    if clearing:
        return "Removed when you save"
    if not info.is_set:
        return "Not set" + (f" — e.g. {info.example}" if info.example else "")
    where = {"keyring": "saved in the system keyring", "config": "saved in the config file",
             "environment": "set in the environment", "env file": "set in the env file",
             "command line": "set on the command line"}[info.source]
    return f"•••• {where} — type to replace"


def secrets_note(keyring: bool) -> str:
    if keyring:
        return ("Tokens, keys and the DSN are stored in the system keyring and never shown "
                "here; type a new one to replace it.")
    return ("No system keyring is available: tokens, keys and the DSN are stored in the "
            "config file, readable only by you (mode 0600). They are never shown here.")


def applies_to_provider(info: FieldInfo, provider: str) -> bool:
    """Whether the form shows ``info`` with ``provider`` chosen (settings such as Twilio's
    token only matter for one provider)."""
    return not info.providers or provider in info.providers


def save_report(saved: SavedSettings, labels: dict[str, str], load_error: str | None) -> str:
    """What a save did, in a few sentences for the operator."""
    def names(items: Iterable[str]) -> str:
        return ", ".join(labels.get(n, n) for n in items)

    changed = [*saved.written, *saved.removed, *saved.secrets, *saved.cleared]
    if not changed:
        return f"Nothing to change: {saved.path} already holds these settings."
    parts = [f"Saved to {saved.path}."]
    if saved.written:
        parts.append(f"Changed: {names(saved.written)}.")
    if saved.removed:
        parts.append(f"Back to the default: {names(saved.removed)}.")
    for where in ("keyring", "config file"):
        stored = [n for n, w in saved.secrets.items() if w == where]
        if stored:
            place = ("the system keyring" if where == "keyring"
                     else "the config file (readable only by you)")
            parts.append(f"{names(stored)} stored in {place}.")
    if saved.cleared:
        parts.append(f"Removed: {names(saved.cleared)}.")
    if saved.shadowed:
        parts.append("Still overridden by the environment or the env file: "
                     f"{names(saved.shadowed)}.")
    if load_error:
        parts.append(f"The console could not load them: {load_error}")
    else:
        parts.append("Running workers pick up the new settings when restarted; a changed "
                     "Redis or database URL applies to new connections.")
    return " ".join(parts)


class FieldEditor(QWidget):
    """One setting: its editor, help, where its value comes from, and what is wrong with it.
    ``label`` goes in the form's label column; the rest is this widget."""

    changed = Signal(str)  # the setting's name

    def __init__(self, info: FieldInfo) -> None:
        super().__init__()
        self.info = info
        self.name = info.name
        self.clearing = False  # a secret the operator asked to remove
        self.setObjectName(f"field-{info.name}")
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 10)  # the gap between rows
        column.setSpacing(3)
        self.row = QHBoxLayout()
        self.row.setSpacing(6)
        column.addLayout(self.row)

        self._build_editor(info)

        self.label = QLabel(info.label)
        self.label.setObjectName(f"label-{info.name}")
        self.label.setToolTip(info.name)
        self.label.setBuddy(self.editor)
        self.set_compact(False)

        self.caption = muted(QLabel(info.help))
        self.caption.setWordWrap(True)
        column.addWidget(self.caption)
        self.source = QLabel()
        self.source.setObjectName(f"source-{info.name}")
        self.source.setWordWrap(True)
        column.addWidget(self.source)
        self.below = QVBoxLayout()  # e.g. a connection test's result
        self.below.setContentsMargins(0, 0, 0, 0)
        column.addLayout(self.below)
        self.error = QLabel()
        self.error.setObjectName(f"error-{info.name}")
        self.error.setWordWrap(True)
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error.hide()
        column.addWidget(self.error)
        self.set_info(info)

    def set_compact(self, compact: bool) -> None:
        """Compact: the label above the editor (narrow windows); else beside it, centred on
        the editor's line."""
        if compact:
            self.label.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignBottom)
            self.label.setMinimumHeight(0)
        else:
            self.label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.label.setMinimumHeight(self.editor.sizeHint().height())

    def _build_editor(self, info: FieldInfo) -> None:
        self.editor: QLineEdit | QComboBox
        self.combo: QComboBox | None = None
        self.line: QLineEdit | None = None
        self.clear_button: QPushButton | None = None
        self.browse: QPushButton | None = None
        wide = info.kind not in ("int", "float", "choice")  # grows with the window
        if info.kind == "choice":
            self.combo = self.editor = self._build_combo(info)
            self.combo.currentIndexChanged.connect(lambda _: self.changed.emit(self.name))
        else:
            self.line = self.editor = QLineEdit()
            self.line.textChanged.connect(lambda _: self.changed.emit(self.name))
            self.line.setMaximumWidth(TEXT_WIDTH if wide else NUMBER_WIDTH)
            self.line.setMinimumWidth(220 if wide else NUMBER_WIDTH)
        self.editor.setObjectName(f"edit-{info.name}")
        self.editor.setToolTip(f"{info.help}\n\n{info.name}")
        self.row.addWidget(self.editor, 1 if wide else 0)
        if info.secret:
            self._build_secret()
        if info.name in FOLDERS:
            self.browse = QPushButton("Browse…")
            short = info.name.removeprefix("RELAYDESK_").lower().replace("_", "-")
            self.browse.setObjectName(f"browse-{short}")  # browse-data-dir, …
            self.browse.clicked.connect(self._browse)
            self.row.addWidget(self.browse)
        self.row.addStretch(0 if wide else 1)

    def _build_combo(self, info: FieldInfo) -> QComboBox:
        combo = QComboBox()
        combo.setMinimumWidth(CHOICE_WIDTH)
        region = info.name == "RELAYDESK_DEFAULT_REGION"
        if region:
            combo.setMaxVisibleItems(16)
        for choice in info.choices:
            shown = choice
            if region:
                shown = f"{choice}  (+{phonenumbers.country_code_for_region(choice)})"
            combo.addItem(shown, choice)
        return combo

    def _build_secret(self) -> None:
        assert self.line is not None
        self.line.setEchoMode(QLineEdit.EchoMode.Password)
        self.line.textEdited.connect(self._typed_secret)
        self.clear_button = QPushButton("Clear")
        self.clear_button.setObjectName(f"clear-{self.name}")
        self.clear_button.clicked.connect(self.toggle_clear)
        self.row.addWidget(self.clear_button)

    def _browse(self) -> None:
        assert self.line is not None
        folder = QFileDialog.getExistingDirectory(self, FOLDERS[self.name], self.line.text())
        if folder:
            self.line.setText(folder)

    # -- values --------------------------------------------------------------------------
    def text(self) -> str:
        if self.combo is not None:
            return str(self.combo.currentData() or "")
        assert self.line is not None
        return self.line.text()

    def set_text(self, text: str) -> None:
        if self.combo is not None:
            index = self.combo.findData(text)
            if index < 0 and text:
                self.combo.addItem(text, text)
                index = self.combo.count() - 1
            self.combo.setCurrentIndex(max(index, 0))
        else:
            assert self.line is not None
            self.line.setText(text)

    def set_info(self, info: FieldInfo) -> None:
        """Show the value in force (a secret's only as where it is kept)."""
        self.info = info
        self.clearing = False
        self.set_text("" if info.secret else info.value)
        pinned = info.source == "command line"  # not the config file's to change
        if self.line is not None:
            self.line.setReadOnly(pinned)
        elif self.combo is not None:
            self.combo.setEnabled(not pinned)
        if self.browse is not None:
            self.browse.setEnabled(not pinned)
        if self.line is not None and not info.secret:
            example = f"e.g. {info.example}" if info.example else "Not set"
            self.line.setPlaceholderText(example)
        note = source_note(info)
        shadowed = info.source in SHADOWING
        self.source.setText(note)
        self.source.setStyleSheet(f"color: {tone(WARN)}" if shadowed else "")
        if not shadowed:
            muted(self.source)
        self.source.setVisible(bool(note))
        self._show_secret_state()

    def _show_secret_state(self) -> None:
        if self.clear_button is None or self.line is None:
            return
        self.line.setPlaceholderText(secret_placeholder(self.info, self.clearing))
        removable = self.info.is_set and self.info.source in ("config", "keyring")
        self.clear_button.setEnabled(removable or self.clearing)
        self.clear_button.setText("Undo clear" if self.clearing else "Clear")
        self.clear_button.setToolTip(
            "Keep the saved value" if self.clearing else
            "Remove the saved value when you save" if removable else
            "Nothing saved to remove" if not self.info.is_set else
            "Set outside RelayDesk's settings: remove it there")

    def toggle_clear(self) -> None:
        assert self.line is not None
        self.clearing = not self.clearing
        if self.clearing:
            self.line.clear()
        self._show_secret_state()
        self.changed.emit(self.name)

    def _typed_secret(self, text: str) -> None:
        if self.clearing and text:
            self.clearing = False  # a new value replaces the old one: nothing to clear
            self._show_secret_state()

    def is_dirty(self) -> bool:
        if self.info.secret:
            return bool(self.text()) or self.clearing
        return self.text() != self.info.value

    def set_error(self, message: str | None) -> None:
        self.error.setText(message or "")
        self.error.setStyleSheet(f"color: {tone(BAD)}")
        self.error.setVisible(bool(message))

    def add_action(self, widget: QWidget) -> None:
        """A control beside the editor (before the row's trailing stretch)."""
        self.row.insertWidget(self.row.count() - 1, widget)

    def add_below(self, widget: QWidget) -> None:
        self.below.addWidget(widget)


class CheckControl(QWidget):
    """A "Test connection" button, a busy bar while the check runs, and its one-line result
    (``result`` is a separate widget so the form can put it under the field)."""

    requested = Signal()

    def __init__(self, name: str, text: str = "Test connection") -> None:
        super().__init__()
        self.setObjectName(f"check-{name}")
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(6)
        self.button = QPushButton(text)
        self.button.setObjectName(f"test-{name}")
        self.button.clicked.connect(self.requested)
        row.addWidget(self.button)
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setFixedSize(64, 10)
        self.busy.setTextVisible(False)
        self.busy.hide()
        row.addWidget(self.busy)
        self.result = QLabel()
        self.result.setObjectName(f"result-{name}")
        self.result.setWordWrap(True)
        self.result.setTextFormat(Qt.TextFormat.RichText)
        self.result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.result.hide()
        self.last: CheckResult | None = None
        self._text = text

    @property
    def running(self) -> bool:
        return not self.button.isEnabled()

    def start(self) -> None:
        self.last = None
        self.button.setEnabled(False)
        self.button.setText("Testing…")
        self.busy.show()
        self.result.setText(f"<span style='color:{tone(QColor('#8a9099'))}'>Testing… "
                            "(up to a few seconds)</span>")
        self.result.show()

    def finish(self, result: CheckResult) -> None:
        self.last = result
        self.button.setEnabled(True)
        self.button.setText(self._text)
        self.busy.hide()
        mark, color = ("✓", GOOD) if result.ok else ("✗", BAD)
        self.result.setText(f"<span style='color:{tone(color)}'><b>{mark}</b></span> "
                            f"{html.escape(result.message)}")
        self.result.show()

    def reset(self) -> None:
        """The value tested changed: the old result no longer says anything."""
        if not self.button.isEnabled():
            return
        self.last = None
        self.result.clear()
        self.result.hide()
