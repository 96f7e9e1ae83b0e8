"""Settings: every setting RelayDesk reads, grouped, checked as the operator types, tested
against the real Redis, database and provider, and saved to the config file every process
reads (secrets to the system keyring when there is one).

Loading, validating, testing and saving all touch files, the keyring or the network, so
each runs through ``ctx.background``; the form only ever shows their results.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import (
    QColor,
    QIcon,
    QKeySequence,
    QPainter,
    QPixmap,
    QResizeEvent,
    QShortcut,
)
from PySide6.QtWidgets import (
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from desktop.background import Latest
from desktop.callback_urls import CallbackSetup, CallbackUrlsBox, read_setup
from desktop.context import ConsoleContext
from desktop.pages.base import Page, page_header
from desktop.settings_form import (
    CheckControl,
    FieldEditor,
    applies_to_provider,
    muted,
    save_report,
    secrets_note,
    tone,
)
from desktop.storage_box import StorageBox, measure
from desktop.theme import BAD, GOOD
from desktop.widgets import empty_state, heading, separator
from engine.config.settings import (
    GROUPS,
    Settings,
    SettingsError,
    config_file_path,
    load_settings,
    usable_keyring,
)
from engine.config.settings_store import (
    FieldInfo,
    SavedSettings,
    SettingsValidationError,
    editable_fields,
    preview_settings,
    save,
    validate,
)
from engine.domain.errors import OperatorError
from engine.operations.connection_checks import (
    CheckResult,
    check_database,
    check_provider,
    check_redis,
)
from engine.store.storage_figures import StorageFigures

log = logging.getLogger(__name__)

VALIDATE_DELAY_MS = 300
GROUP_LIST_WIDTH = 170
FORM_MAX_WIDTH = 880
COMPACT_BELOW = 620  # form width under which labels go above their fields
CALLBACK_GROUP = "Reports and replies"  # the section that shows the callback URLs
STORAGE_GROUP = "Data kept"  # the section that shows the database's size and growth
KEEP_FIELD = "RELAYDESK_KEEP_MESSAGES"  # its projection follows this field as it is typed
# Which connection test a changed setting makes out of date.
CHECK_INPUTS = {"redis": {"RELAYDESK_REDIS_URL", "RELAYDESK_DATA_DIR"},
                "database": {"RELAYDESK_DATABASE_URL", "RELAYDESK_DATA_DIR"}}


# --- the background work --------------------------------------------------------------------

@dataclass(frozen=True)
class LoadedSettings:
    fields: dict[str, FieldInfo]
    keyring: bool  # secrets go to the system keyring (else to the 0600 config file)
    config_path: Path


@dataclass(frozen=True)
class SaveOutcome:
    saved: SavedSettings
    settings: Settings | None  # the settings now in force; None when they do not load
    load_error: str | None
    loaded: LoadedSettings


def load_form(pinned: Mapping[str, str]) -> LoadedSettings:
    """The form's fields, with ``pinned`` (the command line's values) shown as in force."""
    fields = editable_fields()
    for name, text in pinned.items():
        fields[name] = replace(fields[name], value=text, is_set=True, source="command line")
    return LoadedSettings(fields, usable_keyring() is not None, config_file_path())


def command_line_values(in_force: Settings) -> dict[str, str]:
    """Settings the console was started with on its command line (``--data-dir``): they
    differ from what the sources give, and a save must neither write nor lose them."""
    shown = editable_fields()["RELAYDESK_DATA_DIR"].value
    if Path(shown).expanduser() != in_force.data_dir:
        return {"RELAYDESK_DATA_DIR": str(in_force.data_dir)}
    return {}


def first_load(in_force: Settings) -> tuple[dict[str, str], LoadedSettings]:
    pinned = command_line_values(in_force)
    return pinned, load_form(pinned)


def validate_form(values: Mapping[str, str], clear: Collection[str]) -> dict[str, str]:
    return validate(values, clear=clear)


def save_form(values: Mapping[str, str], clear: Collection[str],
              pinned: Mapping[str, str]) -> SaveOutcome:
    saved = save({n: v for n, v in values.items() if n not in pinned}, clear=clear)
    settings: Settings | None = None
    error: str | None = None
    try:
        settings = load_settings(pinned)
    except SettingsError as exc:
        error = str(exc)
    return SaveOutcome(saved, settings, error, load_form(pinned))


def check_form(kind: str, values: Mapping[str, str], clear: Collection[str],
               in_force: Settings) -> tuple[str, CheckResult]:
    """Run one connection test with the values on the form (saved or not)."""
    try:
        try:
            settings = preview_settings(values, clear=clear)
        except SettingsError as exc:
            if kind == "provider":
                return kind, CheckResult(False, f"Fix the settings first: {exc}")
            settings = in_force  # the URL under test is checked on its own below
        if kind == "redis":
            return kind, check_redis(values.get("RELAYDESK_REDIS_URL"), settings)
        if kind == "database":
            return kind, check_database(values.get("RELAYDESK_DATABASE_URL"), settings)
        return kind, check_provider(settings)
    except Exception as exc:  # a test button must answer, whatever went wrong
        log.exception("the %s connection test failed", kind)
        return kind, CheckResult(False, f"The test could not run: {type(exc).__name__}: {exc}")


def _dot(color: QColor | None) -> QIcon:
    pixmap = QPixmap(12, 12)
    pixmap.fill(Qt.GlobalColor.transparent)
    if color is not None:
        painter = QPainter(pixmap)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(color)
        painter.drawEllipse(2, 2, 8, 8)
        painter.end()
    return QIcon(pixmap)


# --- the page -------------------------------------------------------------------------------

class SettingsPage(Page):
    page_id = "settings"
    title = "Settings"
    icon_name = "settings"

    loaded = Signal()  # the form shows the settings in force
    validated = Signal()  # a validation result is on the form
    saved = Signal(object)  # SavedSettings
    save_failed = Signal(str)
    checked = Signal(str, object)  # "redis" / "database" / "provider", CheckResult
    callbacks_shown = Signal()  # the callback URLs (or the note) are on the form
    storage_shown = Signal()  # the database's size and growth (or why not) are on the form

    def __init__(self, ctx: ConsoleContext) -> None:
        super().__init__(ctx)
        self.editors: dict[str, FieldEditor] = {}
        self.forms: dict[str, QFormLayout] = {}
        self.checks: dict[str, CheckControl] = {}
        self.errors: dict[str, str] = {}
        self.group_names: list[str] = []
        self.secret_notes: list[QLabel] = []
        self.report = ""
        self.config_path: Path | None = None
        self.pinned: dict[str, str] | None = None  # set on the command line; None: not known yet
        self._validations = Latest(ctx.background)  # an edit drops older answers
        # The callback URLs of the settings in force ("Reports and replies").
        self.callbacks = CallbackUrlsBox()
        self._callback_reads = Latest(ctx.background)
        # The database's size and growth, beside how long messages are kept.
        self.storage = StorageBox()
        self._storage_reads = Latest(ctx.background)
        self._loading = False
        self._saving = False
        self._applying = False

        layout = QVBoxLayout(self)
        layout.addWidget(page_header("Settings"))
        self.where = muted(QLabel("Reading the settings…"))
        self.where.setObjectName("settings-where")
        self.where.setWordWrap(True)
        self.where.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.where)
        layout.addSpacing(6)

        self.body = QStackedWidget()
        self.waiting = empty_state("Reading the settings…")
        self.body.addWidget(self.waiting)
        self.failure = self._build_failure()
        self.body.addWidget(self.failure)
        self.content = self._build_content()
        self.body.addWidget(self.content)
        layout.addWidget(self.body, 1)
        layout.addWidget(separator())
        layout.addLayout(self._build_footer())

        self._validate_timer = QTimer(self, singleShot=True, interval=VALIDATE_DELAY_MS)
        self._validate_timer.timeout.connect(self.validate_now)
        QShortcut(QKeySequence.StandardKey.Save, self, activated=self.save,
                  context=Qt.ShortcutContext.WindowShortcut)
        self._compact: bool | None = None
        self._update_state()

    # -- layout ---------------------------------------------------------------------------
    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit_width()

    def _fit_width(self) -> None:
        if not self.editors:
            return
        compact = self.width() - GROUP_LIST_WIDTH < COMPACT_BELOW
        if compact == self._compact:
            return
        self._compact = compact
        policy = (QFormLayout.RowWrapPolicy.WrapAllRows if compact
                  else QFormLayout.RowWrapPolicy.DontWrapRows)
        alignment = Qt.AlignmentFlag.AlignLeft if compact else Qt.AlignmentFlag.AlignRight
        for form in set(self.forms.values()):
            form.setRowWrapPolicy(policy)
            form.setLabelAlignment(alignment | Qt.AlignmentFlag.AlignTop)
        for editor in self.editors.values():
            editor.set_compact(compact)

    def _build_failure(self) -> QWidget:
        box = QWidget()
        column = QVBoxLayout(box)
        column.addStretch()
        self.failure_text = QLabel()
        self.failure_text.setObjectName("settings-load-error")
        self.failure_text.setWordWrap(True)
        self.failure_text.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.failure_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        column.addWidget(self.failure_text)
        again = QPushButton("Try again")
        again.clicked.connect(self.reload)
        column.addWidget(again, 0, Qt.AlignmentFlag.AlignHCenter)
        column.addStretch()
        return box

    def _build_content(self) -> QWidget:
        box = QWidget()
        row = QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(12)
        self.group_list = QListWidget()
        self.group_list.setObjectName("settings-groups")
        self.group_list.setFixedWidth(GROUP_LIST_WIDTH)
        self.group_list.setIconSize(QSize(12, 12))
        self.group_list.setSpacing(1)
        self.group_stack = QStackedWidget()
        self.group_list.currentRowChanged.connect(self.group_stack.setCurrentIndex)
        row.addWidget(self.group_list)
        row.addWidget(self.group_stack, 1)
        return box

    def _build_footer(self) -> QHBoxLayout:
        footer = QHBoxLayout()
        footer.setContentsMargins(0, 6, 0, 0)
        self.status = QLabel()
        self.status.setObjectName("settings-status")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        footer.addWidget(self.status, 1)
        self.revert_button = QPushButton("Revert")
        self.revert_button.setObjectName("settings-revert")
        self.revert_button.setToolTip("Put back the settings in force")
        self.revert_button.clicked.connect(self.revert)
        self.save_button = QPushButton("Save")
        self.save_button.setObjectName("settings-save")
        self.save_button.setToolTip("Save to the config file (Ctrl+S)")
        self.save_button.setMinimumWidth(96)
        self.save_button.clicked.connect(self.save)
        for button in (self.revert_button, self.save_button):
            footer.addWidget(button, 0, Qt.AlignmentFlag.AlignBottom)
        return footer

    def _build_form(self, fields: dict[str, FieldInfo]) -> None:
        groups: dict[str, list[FieldInfo]] = {}
        for info in fields.values():
            groups.setdefault(info.group, []).append(info)
        for group, infos in groups.items():
            self.group_names.append(group)
            item = QListWidgetItem(_dot(None), group)
            item.setSizeHint(QSize(GROUP_LIST_WIDTH - 8, 30))
            self.group_list.addItem(item)
            self.group_stack.addWidget(self._build_group(group, infos))
        self._add_checks()
        self.group_list.setCurrentRow(0)
        self._fit_width()

    def _build_group(self, group: str, infos: list[FieldInfo]) -> QScrollArea:
        inner = QWidget()
        inner.setMaximumWidth(FORM_MAX_WIDTH)
        column = QVBoxLayout(inner)
        column.setContentsMargins(4, 0, 12, 12)
        column.setSpacing(4)
        column.addWidget(heading(group, 1.15))
        note = muted(QLabel(GROUPS[group]))
        note.setWordWrap(True)
        column.addWidget(note)
        if any(info.secret for info in infos):
            secrets = QLabel()
            secrets.setObjectName(f"secrets-note-{len(self.secret_notes)}")
            secrets.setWordWrap(True)
            self.secret_notes.append(secrets)
            column.addWidget(secrets)
        column.addSpacing(10)
        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop)
        form.setFormAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setHorizontalSpacing(14)
        form.setVerticalSpacing(4)
        for info in infos:
            editor = FieldEditor(info)
            editor.changed.connect(self._changed)
            self.editors[info.name] = editor
            self.forms[info.name] = form
            form.addRow(editor.label, editor)
        column.addLayout(form)
        if group == CALLBACK_GROUP:
            column.addWidget(self.callbacks)
        if group == STORAGE_GROUP:
            column.addWidget(self.storage)
        column.addStretch(1)
        scroll = QScrollArea()
        scroll.setObjectName(f"group-{group}")
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(inner)
        return scroll

    def _add_checks(self) -> None:
        for kind, field, text in (("redis", "RELAYDESK_REDIS_URL", "Test connection"),
                                  ("database", "RELAYDESK_DATABASE_URL", "Test connection"),
                                  ("provider", "RELAYDESK_SMS_PROVIDER", "Test provider")):
            control = CheckControl(kind, text)
            control.requested.connect(lambda kind=kind: self.run_check(kind))
            self.checks[kind] = control
            self.editors[field].add_action(control)
            self.editors[field].add_below(control.result)

    # -- loading ------------------------------------------------------------------------
    def activated(self) -> None:
        if self._loading or self._saving:
            return
        if not self.editors or not self.is_dirty():
            self.reload()  # pick up changes made outside the console; never drop edits

    def reload(self) -> None:
        self._loading = True
        if not self.editors:
            self.body.setCurrentWidget(self.waiting)
        if self.pinned is None:
            self.ctx.background.run(first_load, self.ctx.services.settings,
                                    on_done=self._first_loaded, on_error=self._load_failed)
        else:
            self.ctx.background.run(load_form, self.pinned, on_done=self._loaded,
                                    on_error=self._load_failed)

    def _first_loaded(self, answer: tuple[dict[str, str], LoadedSettings]) -> None:
        self.pinned, loaded = answer
        self._loaded(loaded)

    def _loaded(self, loaded: LoadedSettings) -> None:
        self._loading = False
        if self.editors and self.is_dirty():
            return  # the operator started editing meanwhile
        if not self.editors:
            self._build_form(loaded.fields)
        self._apply(loaded)
        self.body.setCurrentWidget(self.content)
        self.show_callbacks()
        self.show_storage()
        self.loaded.emit()

    def _load_failed(self, error: BaseException) -> None:
        self._loading = False
        if not isinstance(error, SettingsError | OSError):
            self.ctx.background.error.emit(error)
        self.failure_text.setText(f"The settings could not be read: {error}")
        if not self.editors:
            self.body.setCurrentWidget(self.failure)
        else:
            self._show_status(f"The settings could not be read again: {error}", BAD)

    def _apply(self, loaded: LoadedSettings) -> None:
        """Show ``loaded`` as the values in force: nothing left to save."""
        self._applying = True
        try:
            for name, info in loaded.fields.items():
                self.editors[name].set_info(info)
        finally:
            self._applying = False
        self.config_path = loaded.config_path
        self.where.setText(
            f"The console, the workers and the command line all read these settings from "
            f"{loaded.config_path}. The environment and an env file override it.")
        for label in self.secret_notes:
            label.setText(secrets_note(loaded.keyring))
        for control in self.checks.values():
            control.reset()
        self._show_keep()
        self._show_errors({})
        self.validate_now()  # settings in force can still conflict (e.g. provider fields)

    def show_callbacks(self) -> None:
        """The callback URLs of the settings in force; the token is read off the UI
        thread (it may be generated into the data dir the first time)."""
        self._callback_reads.start()
        self._callback_reads.submit(read_setup, self.ctx.services.settings,
                                    on_done=self._show_callbacks)

    def _show_callbacks(self, setup: CallbackSetup) -> None:
        self.callbacks.show_urls(setup)
        self.callbacks_shown.emit()

    def show_storage(self) -> None:
        """The size and growth of the database in force, measured off the UI thread (it
        reads the database: a second or so for millions of messages)."""
        self._storage_reads.start()
        self._storage_reads.submit(measure, self.ctx.services.settings,
                                   on_done=self._show_storage,
                                   on_error=self._storage_failed)

    def _show_storage(self, figures: StorageFigures) -> None:
        self.storage.show_figures(figures)
        self.storage_shown.emit()

    def _storage_failed(self, error: BaseException) -> None:
        self.storage.show_error(str(error) if isinstance(error, OperatorError)
                                else type(error).__name__)
        if not isinstance(error, OperatorError):
            log.error("the database's size could not be read", exc_info=error)
        self.storage_shown.emit()

    def _show_keep(self) -> None:
        if KEEP_FIELD in self.editors:
            self.storage.set_keep(self.editors[KEEP_FIELD].text())

    # -- editing and validation -----------------------------------------------------------
    @property
    def validation_pending(self) -> bool:
        """An edit whose validation has not answered yet."""
        return self._validate_timer.isActive() or self._validations.pending

    def values(self) -> dict[str, str]:
        return {name: editor.text() for name, editor in self.editors.items()}

    def clear_names(self) -> list[str]:
        return [name for name, editor in self.editors.items() if editor.clearing]

    def is_dirty(self) -> bool:
        return any(editor.is_dirty() for editor in self.editors.values())

    def _changed(self, name: str) -> None:
        if self._applying:
            return
        self.report = ""
        editor = self.editors[name]
        for kind, inputs in CHECK_INPUTS.items():
            if name in inputs:
                self.checks[kind].reset()
        if editor.info.group == "Provider":
            self.checks["provider"].reset()
        if name == "RELAYDESK_SMS_PROVIDER":
            self._show_provider_rows()
        if name == KEEP_FIELD:
            self._show_keep()
        self._validate_timer.start()
        self._update_state()

    def validate_now(self) -> None:
        self._validate_timer.stop()
        self._validations.start()  # the form changed since older answers were asked for
        self._validations.submit(validate_form, self.values(), self.clear_names(),
                                 on_done=self._validated, on_error=self._validate_failed)

    def _validated(self, errors: dict[str, str]) -> None:
        self._show_errors(errors)
        self.validated.emit()

    def _validate_failed(self, error: BaseException) -> None:
        if not isinstance(error, SettingsError | OSError):
            self.ctx.background.error.emit(error)
        self._show_status(f"The settings could not be checked: {error}", BAD)

    def _show_errors(self, errors: dict[str, str]) -> None:
        self.errors = errors
        for name, editor in self.editors.items():
            editor.set_error(errors.get(name))
        for row, group in enumerate(self.group_names):
            count = sum(1 for n in errors if n in self.editors
                        and self.editors[n].info.group == group)
            item = self.group_list.item(row)
            item.setIcon(_dot(BAD if count else None))
            item.setToolTip(f"{count} setting(s) to fix" if count else "")
        self._show_provider_rows()
        self._update_state()

    def _show_provider_rows(self) -> None:
        if "RELAYDESK_SMS_PROVIDER" not in self.editors:
            return
        provider = self.editors["RELAYDESK_SMS_PROVIDER"].text()
        for name, editor in self.editors.items():
            visible = applies_to_provider(editor.info, provider) or name in self.errors
            self.forms[name].setRowVisible(editor, visible)

    def _update_state(self) -> None:
        ready = bool(self.editors) and not self._saving
        dirty = ready and self.is_dirty()
        self.save_button.setEnabled(dirty and not self.errors)
        self.revert_button.setEnabled(dirty)
        self.save_button.setText("Saving…" if self._saving else "Save")
        if self._saving:
            self._show_status("Saving…", None)
        elif self.errors:
            where = ", ".join(f"{self.editors[n].info.label} ({self.editors[n].info.group})"
                              if n in self.editors else n for n in self.errors)
            count = len(self.errors)
            self._show_status(f"Fix {count} setting{'s' if count != 1 else ''} before "
                              f"saving: {where}.", BAD)
        elif self.report:
            self._show_status(self.report, GOOD)
        elif dirty:
            self._show_status("Unsaved changes.", None)
        else:
            self._show_status("", None)

    def _show_status(self, text: str, color: QColor | None) -> None:
        self.status.setText(text)
        self.status.setStyleSheet(f"color: {tone(color)}" if color is not None else "")

    # -- actions -----------------------------------------------------------------------------
    def revert(self) -> None:
        self._applying = True
        try:
            for editor in self.editors.values():
                editor.set_info(editor.info)
        finally:
            self._applying = False
        for control in self.checks.values():
            control.reset()
        self.report = ""
        self._show_keep()
        self._show_errors({})
        self.validate_now()

    def save(self) -> None:
        if not self.editors or self._saving or self.errors or not self.is_dirty():
            return
        self._saving = True
        self._validate_timer.stop()
        self._validations.start()  # answers to earlier validations no longer apply
        self.group_stack.setEnabled(False)
        self._update_state()
        self.ctx.background.run(save_form, self.values(), self.clear_names(), self.pinned or {},
                                serial=True, on_done=self._saved, on_error=self._save_error)

    def _saved(self, outcome: SaveOutcome) -> None:
        self._saving = False
        self.group_stack.setEnabled(True)
        labels = {name: editor.info.label for name, editor in self.editors.items()}
        self._apply(outcome.loaded)
        self.report = save_report(outcome.saved, labels, outcome.load_error)
        self._update_state()
        if outcome.settings is not None:
            self.ctx.services.settings = outcome.settings
            self.show_callbacks()
            self.show_storage()  # the database URL may have changed
            self.ctx.bus.settings_saved.emit()
        self.saved.emit(outcome.saved)

    def _save_error(self, error: BaseException) -> None:
        self._saving = False
        self.group_stack.setEnabled(True)
        if isinstance(error, SettingsValidationError):
            self._show_errors(error.errors)
        elif isinstance(error, SettingsError | OSError):
            self._update_state()
            self._show_status(f"Not saved: {error}", BAD)
        else:
            self._update_state()
            self._show_status("Not saved: an unexpected error; see the error report.", BAD)
            self.ctx.background.error.emit(error)
        self.save_failed.emit(str(error))

    def run_check(self, kind: str) -> None:
        control = self.checks[kind]
        if control.running:
            return
        control.start()
        self.ctx.background.run(check_form, kind, self.values(), self.clear_names(),
                                self.ctx.services.settings, on_done=self._checked)

    def _checked(self, answer: tuple[str, CheckResult]) -> None:
        kind, result = answer
        self.checks[kind].finish(result)
        self.checked.emit(kind, result)

    def show_group(self, group: str) -> None:
        self.group_list.setCurrentRow(self.group_names.index(group))

    def shutdown(self) -> None:
        super().shutdown()
        self._validate_timer.stop()
