"""The main window: a sidebar of pages, a banner when Redis is down, and a status bar that
always shows Redis, workers and dead letters."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QByteArray, QEvent, QSettings, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QKeySequence, QPalette, QShortcut
from PySide6.QtWidgets import (
    QApplication,
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from desktop.about import install_about
from desktop.console_status import ConsoleStatus, gather_status
from desktop.context import ConsoleContext
from desktop.pages.base import Page
from desktop.resources import icon
from desktop.theme import BAD, GOOD

STATUS_EVERY_MS = 2000
BUSY_AFTER_MS = 200  # only show the busy indicator for calls that take a while


def page_shortcut(row: int) -> str | None:
    """Ctrl+1 to Ctrl+9 for the first nine pages, Ctrl+0 for the tenth (the digit row's
    order); None beyond."""
    if row < 9:
        return f"Ctrl+{row + 1}"
    return "Ctrl+0" if row == 9 else None


class StatusDot(QLabel):
    def set_state(self, color: str, text: str) -> None:
        self.setText(f"<span style='color:{color}'>●</span> {text}")


class RedisBanner(QFrame):
    """Says plainly that Redis is down, with the two ways out."""

    start_requested = Signal()
    settings_requested = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("redis-banner")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setAutoFillBackground(True)
        palette = self.palette()
        palette.setColor(QPalette.ColorRole.Window, BAD.lighter(170))
        palette.setColor(QPalette.ColorRole.WindowText, Qt.GlobalColor.black)
        self.setPalette(palette)
        layout = QHBoxLayout(self)
        self.text = QLabel()
        self.text.setWordWrap(True)
        layout.addWidget(self.text, 1)
        self.start_button = QPushButton("Start embedded Redis")
        self.start_button.clicked.connect(self.start_requested)
        layout.addWidget(self.start_button)
        fix = QPushButton("Open Settings")
        fix.clicked.connect(self.settings_requested)
        layout.addWidget(fix)

    def show_status(self, status: ConsoleStatus) -> None:
        if status.redis_ok:
            self.hide()
            return
        if status.embedded:
            self.text.setText("<b>The embedded Redis is not running.</b> Campaigns cannot be "
                              "sent and workers cannot start until it runs.")
        else:
            self.text.setText(f"<b>{status.redis_text}.</b> Check that the server runs, or "
                              "fix the Redis URL in Settings.")
        self.start_button.setVisible(status.embedded)
        self.show()


class _PageHolder(QWidget):
    """Holds a page in its scroll area. A scroll area asks a page whose height depends on
    its width (wrapped texts, wrapping button rows) for its *preferred* height and
    scrolls below it; the holder answers with the page's minimum height instead, so the
    page shrinks its tables to fit the window first and scrolls only below its minimum."""

    def __init__(self, page: Page) -> None:
        super().__init__()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(page)

    def heightForWidth(self, width: int) -> int:
        # (a nested layout's minimum can exceed what the height-for-width pass reports)
        return max(self.layout().minimumHeightForWidth(width), self.minimumSizeHint().height())


def scrolling(page: Page) -> QScrollArea:
    """The page in a scroll area: in a window smaller than the page needs, the page
    scrolls instead of squeezing (and clipping) its labels and buttons."""
    area = QScrollArea()
    area.setObjectName(f"scroll-{page.page_id}")
    area.setWidget(_PageHolder(page))
    area.setWidgetResizable(True)  # the page fills the area whenever it fits
    area.setFrameShape(QFrame.Shape.NoFrame)
    return area


class MainWindow(QMainWindow):
    def __init__(self, ctx: ConsoleContext, pages: list[Page], state_file: str) -> None:
        super().__init__()
        self.ctx = ctx
        self.pages = pages
        self.status: ConsoleStatus | None = None
        self._polling = False
        self.close_policy: Callable[[QCloseEvent], bool] | None = None
        self.close_box: QMessageBox | None = None  # the question asked on close, if any
        self._gui_state = QSettings(state_file, QSettings.Format.IniFormat)
        self.setWindowTitle("RelayDesk")
        self.setWindowIcon(icon("relaydesk"))
        self.setMinimumSize(QSize(760, 520))  # small laptop screens at 150 %

        self._build_sidebar(pages)
        self.banner = RedisBanner()
        self.banner.hide()
        self.banner.start_requested.connect(self.start_local_services)
        self.banner.settings_requested.connect(lambda: self.show_page("settings"))

        body = QWidget()
        column = QVBoxLayout(body)
        column.setContentsMargins(16, 12, 16, 8)
        column.addWidget(self.banner)
        column.addWidget(self.stack, 1)
        central = QWidget()
        row = QHBoxLayout(central)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(0)
        row.addWidget(self.sidebar)
        row.addWidget(body, 1)
        self.setCentralWidget(central)

        self._build_status_bar()
        self.about_action = install_about(self, ctx)
        QShortcut(QKeySequence.StandardKey.Quit, self, activated=self.close)
        QShortcut(QKeySequence("F5"), self, activated=self.refresh_current)
        ctx.bus.show_page.connect(self.show_page)

        self._status_timer = QTimer(self, interval=STATUS_EVERY_MS)
        self._status_timer.timeout.connect(self.poll_status)
        self._status_timer.start()
        self._restore_state()
        self.poll_status()

    def _build_sidebar(self, pages: list[Page]) -> None:
        self.sidebar = QListWidget()
        self.sidebar.setObjectName("sidebar")
        self.sidebar.setIconSize(QSize(20, 20))
        self.sidebar.setFixedWidth(180)
        self.sidebar.setFrameShape(QFrame.Shape.NoFrame)
        self.sidebar.setSpacing(2)
        self.stack = QStackedWidget()
        for row, page in enumerate(pages):
            item = QListWidgetItem(page.title)
            item.setSizeHint(QSize(160, 36))
            self.sidebar.addItem(item)
            self.stack.addWidget(scrolling(page))
            keys = page_shortcut(row)
            if keys is None:
                continue
            item.setToolTip(f"{page.title} ({keys})")
            shortcut = QShortcut(QKeySequence(keys), self)
            shortcut.activated.connect(lambda n=row: self.sidebar.setCurrentRow(n))
        self.sidebar.currentRowChanged.connect(self._show_row)
        self._paint_icons()

    def _paint_icons(self) -> None:
        """Line icons in the theme's text colour (again when light and dark switch)."""
        color = QApplication.palette().color(QPalette.ColorRole.Text)
        for row, page in enumerate(self.pages):
            self.sidebar.item(row).setIcon(icon(page.icon_name, color))

    def changeEvent(self, event: QEvent) -> None:
        # (also sent while the window is being built, before it has a sidebar)
        if event.type() == QEvent.Type.ApplicationPaletteChange and hasattr(self, "sidebar"):
            self._paint_icons()
        super().changeEvent(event)

    # -- status bar -------------------------------------------------------------------
    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.redis_label = StatusDot("Redis: checking…")
        self.redis_label.setObjectName("status-redis")
        self.workers_label = QLabel("Workers: –")
        self.workers_label.setObjectName("status-workers")
        self.dead_label = QLabel("Dead letters: –")
        self.dead_label.setObjectName("status-dead")
        # A long-wait alert shows on every page, not only on the dashboard.
        self.wait_label = QLabel()
        self.wait_label.setObjectName("status-long-wait")
        self.wait_label.setStyleSheet("QLabel { color: #b45309; font-weight: bold; }")
        self.wait_label.hide()
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setFixedWidth(90)
        self.busy.setMaximumHeight(14)
        self.busy.setTextVisible(False)
        self.busy.hide()
        self._busy_timer = QTimer(self, singleShot=True, interval=BUSY_AFTER_MS)
        self._busy_timer.timeout.connect(
            lambda: self.busy.setVisible(self.ctx.background.in_flight > 0))
        self.ctx.background.busy_changed.connect(self._busy_changed)
        for widget in (self.wait_label, self.redis_label, self.workers_label, self.dead_label):
            bar.addPermanentWidget(widget)
            widget.setContentsMargins(8, 0, 8, 0)
        bar.addWidget(self.busy)

    def _busy_changed(self, count: int) -> None:
        if count == 0:
            self._busy_timer.stop()
            self.busy.hide()
        elif not self._busy_timer.isActive() and not self.busy.isVisible():
            self._busy_timer.start()

    def poll_status(self) -> None:
        if self._polling:  # one at a time: a slow server must not pile polls up
            return
        self._polling = True

        def failed(_: BaseException) -> None:
            self._polling = False

        self.ctx.background.run(gather_status, self.ctx.services, on_done=self.show_status,
                                on_error=failed)

    def show_status(self, status: ConsoleStatus) -> None:
        self._polling = False
        self.status = status
        self.redis_label.set_state(GOOD.name() if status.redis_ok else BAD.name(),
                                   status.redis_text)
        if status.redis_ok:
            self.workers_label.setText(f"Workers: {status.workers} "
                                       f"({status.processes} processes)")
        else:
            self.workers_label.setText("Workers: –")
        dead = "?" if status.dead_letters is None else f"{status.dead_letters:,}"
        self.dead_label.setText(f"Dead letters: {dead}")
        self.wait_label.setVisible(bool(status.long_waits))
        if status.long_waits:
            queues = ", ".join(alert.queue for alert in status.long_waits)
            self.wait_label.setText(f"⚠ Long wait: {queues}")
            self.wait_label.setToolTip("\n".join(alert.text() for alert in status.long_waits))
        self.banner.show_status(status)

    def start_local_services(self) -> None:
        self.banner.start_button.setEnabled(False)
        self.statusBar().showMessage("Starting the embedded Redis…")

        def done(_: object) -> None:
            self.banner.start_button.setEnabled(True)
            self.statusBar().showMessage("Embedded Redis started", 4000)
            self.poll_status()

        def failed(exc: BaseException) -> None:
            self.banner.start_button.setEnabled(True)
            self.ctx.background.error.emit(exc)

        self.ctx.background.run(self.ctx.services.start_local_services, on_done=done,
                                on_error=failed)

    # -- pages --------------------------------------------------------------------------
    def _show_row(self, row: int) -> None:
        if row < 0:
            return
        self.stack.setCurrentIndex(row)
        self.pages[row].activated()

    def show_page(self, page_id: str) -> None:
        for row, page in enumerate(self.pages):
            if page.page_id == page_id:
                self.sidebar.setCurrentRow(row)
                return
        raise KeyError(page_id)

    def page(self, page_id: str) -> Page:
        return next(p for p in self.pages if p.page_id == page_id)

    def current_page(self) -> Page:
        return self.pages[self.stack.currentIndex()]

    def refresh_current(self) -> None:
        self.current_page().activated()

    # -- state --------------------------------------------------------------------------
    def _restore_state(self) -> None:
        geometry = self._gui_state.value("window/geometry")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        else:
            self.resize(1180, 760)
        state = self._gui_state.value("window/state")
        if isinstance(state, QByteArray):
            self.restoreState(state)
        page = self._gui_state.value("window/page", "compose")
        try:
            self.show_page(str(page))
        except KeyError:
            self.sidebar.setCurrentRow(0)

    def save_state(self) -> None:
        self._gui_state.setValue("window/geometry", self.saveGeometry())
        self._gui_state.setValue("window/state", self.saveState())
        self._gui_state.setValue("window/page", self.current_page().page_id)
        self._gui_state.sync()

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.close_policy is not None and not self.close_policy(event):
            event.ignore()
            return
        self.save_state()
        self._status_timer.stop()
        for page in self.pages:
            page.shutdown()
        event.accept()
