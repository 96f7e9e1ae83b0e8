"""Errors anywhere in the console (slots, background calls, threads) reach the operator as a
readable dialog, the log file in the data dir, and Sentry when it is configured."""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from logging.handlers import RotatingFileHandler
from pathlib import Path
from types import TracebackType

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

log = logging.getLogger("relaydesk.gui")


def operator_errors() -> tuple[type[Exception], ...]:
    from desktop.background import HelperCrashed
    from engine.domain.errors import OperatorError

    return (OperatorError, HelperCrashed)


def setup_logging(data_dir: Path) -> Path:
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    path = logs / "console.log"
    handler = RotatingFileHandler(path, maxBytes=2_000_000, backupCount=3, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return path


def describe(error: BaseException) -> tuple[str, str]:
    """(what to tell the operator, the details for the 'Show Details' box)."""
    details = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    if isinstance(error, operator_errors()):
        return str(error), details
    return (f"Something went wrong: {type(error).__name__}: {error}\n\n"
            "The details are in the console log; you can copy them below."), details


def show_error(parent: QWidget | None, error: BaseException, title: str = "RelayDesk") -> None:
    text, details = describe(error)
    box = QMessageBox(QMessageBox.Icon.Warning, title, text, QMessageBox.StandardButton.Ok,
                      parent)
    box.setObjectName("error-dialog")
    box.setDetailedText(details)
    box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    box.open()  # not exec(): a modal loop inside a slot would re-enter the caller


class ErrorReporter(QObject):
    """Collects errors from any thread and shows them on the UI thread."""

    reported = Signal(BaseException)

    def __init__(self) -> None:
        super().__init__()
        self.last: BaseException | None = None
        self.reported.connect(self._show)

    def report(self, error: BaseException) -> None:
        # This logger is kept out of Sentry's logging integration: an error is sent once,
        # below, and only when it is not one the operator can act on.
        log.error("unhandled error", exc_info=(type(error), error, error.__traceback__))
        if not isinstance(error, operator_errors()):
            _to_sentry(error)
        self.last = error
        self.reported.emit(error)  # queued when called from another thread

    def _show(self, error: BaseException) -> None:
        app = QApplication.instance()
        parent = app.activeWindow() if isinstance(app, QApplication) else None
        show_error(parent, error)

    def install(self) -> None:
        def excepthook(kind: type[BaseException], error: BaseException,
                       tb: TracebackType | None) -> None:
            if issubclass(kind, KeyboardInterrupt):
                sys.__excepthook__(kind, error, tb)
                return
            self.report(error.with_traceback(tb))

        def thread_hook(args: threading.ExceptHookArgs) -> None:
            if args.exc_value is not None:
                self.report(args.exc_value)

        sys.excepthook = excepthook
        threading.excepthook = thread_hook


def _to_sentry(error: BaseException) -> None:
    try:
        import sentry_sdk
    except ImportError:  # pragma: no cover - a dependency
        return
    if sentry_sdk.get_client().is_active():
        sentry_sdk.capture_exception(error)  # scrubbed by telemetry's before_send


def keep_out_of_sentry_logging() -> None:
    from sentry_sdk.integrations.logging import ignore_logger

    ignore_logger(log.name)
