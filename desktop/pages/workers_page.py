"""Workers: launch, stop, kill, restart and resize the console's own workers, see every
worker sharing this Redis (other machines too), worker events, and the embedded Redis."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from desktop.context import ConsoleContext
from desktop.flow_layout import FlowLayout, fit_height, flow_row, keep_whole
from desktop.paged_model import Column
from desktop.pages.base import Page, page_header
from desktop.rows_model import RowsModel
from desktop.widgets import bold, data_table
from desktop.workers_view import (
    LocalRow,
    WorkersView,
    format_memory,
    format_uptime,
    gather_workers,
)
from engine.domain.queues import ALL_QUEUES
from engine.infra.embedded_redis import EmbeddedRedis
from engine.monitoring import worker_control
from engine.monitoring.worker_control import WorkerInfo
from engine.operations.supervisor import POOLS, WorkerSpec

REFRESH_MS = 2000


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f} %"


LOCAL_COLUMNS = [
    # "adopted": left running by a console that died, supervised by this one now.
    Column("Worker", None, lambda r: r.state.id + (" (adopted)" if r.state.adopted else "")),
    Column("PID", None, lambda r: str(r.state.pid or "–"), align_right=True),
    Column("Status", None, lambda r: r.state.state),
    Column("Queues", None, lambda r: ", ".join(r.state.spec.queues or ALL_QUEUES)),
    Column("Pool", None, lambda r: (r.state.spec.pool or "prefork") + (
        " (autoscale)" if r.state.spec.autoscales else "")),
    Column("Processes", None, lambda r: str(
        r.info.pool_size if r.info and r.info.pool_size else max(r.state.processes - 1, 0)),
        align_right=True),
    Column("Processed", None, lambda r: f"{r.info.processed:,}" if r.info and
           r.info.processed is not None else "–", align_right=True),
    Column("Current task", None, lambda r: r.current_task),
    Column("CPU", None, lambda r: _percent(r.state.cpu_percent), align_right=True),
    Column("Memory", None, lambda r: format_memory(r.state.rss_bytes), align_right=True),
    Column("Uptime", None, lambda r: format_uptime(r.state.uptime_s), align_right=True),
    Column("Restarts", None, lambda r: str(r.state.restarts), align_right=True),
]

ALL_COLUMNS = [
    Column("Worker", None, lambda w: w.hostname),
    Column("Host", None, lambda w: w.host),
    Column("PID", None, lambda w: str(w.pid or "–"), align_right=True),
    Column("Status", None, lambda w: w.status),
    Column("Queues", None, lambda w: ", ".join(w.queues)),
    Column("Pool", None, lambda w: f"{w.pool or '?'} × {w.pool_size or '?'}"
           + (f" (autoscale {w.autoscale[1]}–{w.autoscale[0]})" if w.autoscale else "")),
    Column("Processed", None, lambda w: "–" if w.processed is None else f"{w.processed:,}",
           align_right=True),
    Column("Active", None, lambda w: str(len(w.active)), align_right=True),
    Column("Uptime", None, lambda w: format_uptime(w.uptime_s), align_right=True),
]


def keep_table_selection(view: QTableView, model: RowsModel, rows: list[Any]) -> None:
    """New rows for a live table; the selected row stays selected when rows come and go."""
    selected = view.selectionModel().selectedRows()
    key = model.key(model.rows[selected[0].row()]) if selected else None
    model.set_rows(rows)
    row = model.row_for_key(key) if key is not None else None
    if row is not None and not view.selectionModel().isRowSelected(row):
        view.selectRow(row)


class AddWorkerDialog(QDialog):
    def __init__(self, parent: QWidget, default_concurrency: int) -> None:
        super().__init__(parent)
        self.setWindowTitle("Add worker")
        form = QFormLayout(self)
        queues = QVBoxLayout()
        self.queues = {}
        for queue in ALL_QUEUES:
            box = QCheckBox(queue)
            box.setChecked(True)
            self.queues[queue] = box
            queues.addWidget(box)
        form.addRow("Queues", queues)
        self.concurrency = QSpinBox()
        self.concurrency.setRange(1, 64)
        self.concurrency.setValue(default_concurrency)
        form.addRow("Processes", self.concurrency)
        self.pool = QComboBox()
        self.pool.addItems(list(POOLS))
        form.addRow("Pool", self.pool)
        self.autoscale = QCheckBox("Autoscale between the minimum and maximum below")
        form.addRow("", self.autoscale)
        self.pool.currentTextChanged.connect(
            lambda pool: self.autoscale.setEnabled(pool == "prefork"))
        self.error = QLabel()
        self.error.setStyleSheet("color: #d64545")
        form.addRow(self.error)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok |
                                   QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Start worker")
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.spec: WorkerSpec | None = None

    def _accept(self) -> None:
        queues = tuple(q for q, box in self.queues.items() if box.isChecked())
        if not queues:
            self.error.setText("Pick at least one queue.")
            return
        autoscale = self.autoscale.isChecked() and self.autoscale.isEnabled()
        self.spec = WorkerSpec(queues=None if len(queues) == len(ALL_QUEUES) else queues,
                               concurrency=self.concurrency.value(),
                               pool=self.pool.currentText(), autoscale=autoscale)
        self.accept()


class _PlainHeight(QWidget):
    """Laid out by its plain minimum height. A box whose height depends on its width
    (wrapping texts and buttons) would ask the page for the preferred height of
    everything in it, tables included, as its *minimum*: in a small window the other
    boxes then got less than their minimum and lines of the Redis panel were cut."""

    def hasHeightForWidth(self) -> bool:
        return False


class _Box(QGroupBox):
    hasHeightForWidth = _PlainHeight.hasHeightForWidth


class WorkersPage(Page):
    page_id = "workers"
    title = "Workers"
    icon_name = "workers"
    refresh_ms = REFRESH_MS

    def __init__(self, ctx: ConsoleContext) -> None:
        super().__init__(ctx)
        self.view: WorkersView | None = None
        self._refreshing = False
        self.local_model = RowsModel(LOCAL_COLUMNS, key=lambda r: r.state.id, parent=self)
        self.all_model = RowsModel(ALL_COLUMNS, key=lambda w: w.hostname, parent=self)
        layout = QVBoxLayout(self)
        layout.addWidget(page_header(
            "Workers", "This console starts and supervises the workers of this machine and "
                       "restarts any that dies. Workers on other machines that share this "
                       "Redis show up below."))
        layout.addWidget(self._build_local(), 3)
        layout.addWidget(self._build_everywhere(), 2)
        bottom_row = _PlainHeight()
        bottom = QHBoxLayout(bottom_row)
        bottom.setContentsMargins(0, 0, 0, 0)
        bottom.addWidget(self._build_events(), 3)
        bottom.addWidget(self._build_redis(), 2)
        layout.addWidget(bottom_row, 2)
        # Long texts (a logs path, an error) wrap instead of widening the page.
        self.wrapped = (self.local_note, self.all_note)
        keep_whole(*self.wrapped)
        self._update_buttons()

    # -- layout ---------------------------------------------------------------------------
    def _build_local(self) -> _Box:
        box = _Box("This machine")
        column = QVBoxLayout(box)
        # Wraps onto a second row in a small window instead of squeezing the texts.
        tools = FlowLayout()
        self.add_button = QPushButton("Add worker…")
        self.add_button.setObjectName("workers-add")
        self.add_button.clicked.connect(self.ask_add_worker)
        tools.addWidget(self.add_button)
        self.local_buttons: dict[str, QPushButton] = {}
        for action, text, tip in (
                ("stop", "Stop", "Warm stop: current tasks finish first"),
                ("kill", "Kill", "Stop at once (its tasks are redelivered)"),
                ("restart", "Restart", "Warm stop, then start again"),
                ("grow", "Grow +1", "One more pool process"),
                ("shrink", "Shrink −1", "One pool process fewer"),
                ("remove", "Remove", "Take a stopped worker off this list")):
            button = QPushButton(text)
            button.setObjectName(f"workers-{action}")
            button.setToolTip(tip)
            button.clicked.connect(lambda _=False, a=action: self.local_action(a))
            tools.addWidget(button)
            self.local_buttons[action] = button
        self.min_processes = QSpinBox()
        self.min_processes.setRange(0, 64)
        self.min_processes.setValue(self.ctx.settings.min_processes)
        self.max_processes = QSpinBox()
        self.max_processes.setRange(1, 128)
        self.max_processes.setValue(self.ctx.settings.max_processes)
        self.autoscale_button = QPushButton("Apply")
        self.autoscale_button.setToolTip("Use these bounds for autoscaling workers: new ones, "
                                         "and the selected one if it autoscales")
        self.autoscale_button.clicked.connect(self.apply_autoscale)
        # The bounds stay together with their caption when the row wraps.
        tools.addWidget(flow_row(QLabel("Autoscale processes: min"), self.min_processes,
                                 QLabel("max"), self.max_processes, self.autoscale_button))
        column.addLayout(tools)
        self.local_table = data_table(self.local_model, "workers-local", fit_contents=True)
        self.local_table.selectionModel().selectionChanged.connect(
            lambda *_: self._update_buttons())
        column.addWidget(self.local_table)
        self.local_note = QLabel()
        self.local_note.setEnabled(False)
        column.addWidget(self.local_note)
        return box

    def _build_everywhere(self) -> _Box:
        box = _Box("All workers on this Redis")
        column = QVBoxLayout(box)
        tools = QHBoxLayout()
        self.remote_buttons: dict[str, QPushButton] = {}
        for action, text in (("grow", "Grow +1"), ("shrink", "Shrink −1"),
                             ("shutdown", "Shut down…")):
            button = QPushButton(text)
            button.setObjectName(f"remote-{action}")
            button.clicked.connect(lambda _=False, a=action: self.remote_action(a))
            tools.addWidget(button)
            self.remote_buttons[action] = button
        tools.addStretch()
        self.all_note = QLabel()
        self.all_note.setEnabled(False)
        tools.addWidget(self.all_note, 1)
        column.addLayout(tools)
        self.all_table = data_table(self.all_model, "workers-all", fit_contents=True)
        self.all_table.selectionModel().selectionChanged.connect(
            lambda *_: self._update_buttons())
        column.addWidget(self.all_table)
        return box

    def _build_events(self) -> _Box:
        box = _Box("Events")
        column = QVBoxLayout(box)
        self.events = QListWidget()
        self.events.setObjectName("workers-events")
        column.addWidget(self.events)
        return box

    def _build_redis(self) -> QGroupBox:
        box = QGroupBox("Redis")
        grid = QGridLayout(box)
        self.redis_labels: dict[str, QLabel] = {}
        for row, (key, caption) in enumerate((("running", "Status"), ("where", "Address"),
                                              ("memory", "Memory used"), ("keys", "Keys"),
                                              ("uptime", "Uptime"), ("version", "Server"))):
            label = QLabel(caption)
            label.setEnabled(False)
            grid.addWidget(label, row, 0)
            value = bold(QLabel("–"))
            value.setObjectName(f"redis-{key}")
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            grid.addWidget(value, row, 1)
            self.redis_labels[key] = value
        buttons = QHBoxLayout()
        self.redis_start = QPushButton("Start")
        self.redis_start.setObjectName("redis-start")
        self.redis_start.clicked.connect(self.start_redis)
        self.redis_stop = QPushButton("Stop…")
        self.redis_stop.setObjectName("redis-stop")
        self.redis_stop.clicked.connect(self.confirm_stop_redis)
        buttons.addStretch()
        buttons.addWidget(self.redis_start)
        buttons.addWidget(self.redis_stop)
        # Shown only when the server in use is a release with published holes.
        self.redis_warning = QLabel()
        self.redis_warning.setObjectName("redis-warning")
        self.redis_warning.setWordWrap(True)
        self.redis_warning.setStyleSheet("color: #d64545")
        self.redis_warning.hide()
        grid.addWidget(self.redis_warning, 6, 0, 1, 2)
        grid.addLayout(buttons, 7, 0, 1, 2)
        grid.setColumnStretch(1, 1)
        return box

    # -- refreshing -------------------------------------------------------------------------
    def activated(self) -> None:
        self.refresh()

    def tick(self) -> None:
        self.refresh()

    def refresh(self) -> None:
        if self._refreshing or (not self.isVisible() and self.view is not None):
            return
        self._refreshing = True
        self.ctx.background.run(gather_workers, self.ctx.services, on_done=self.show_view,
                                on_error=self._refresh_failed)

    def _refresh_failed(self, error: BaseException) -> None:
        self._refreshing = False
        self.all_note.setText(f"Could not read the workers: {error}")
        fit_height(self.all_note)

    def show_view(self, view: WorkersView) -> None:
        self._refreshing = False
        self.view = view
        keep_table_selection(self.local_table, self.local_model, view.local)
        keep_table_selection(self.all_table, self.all_model, view.everywhere)
        running = sum(1 for r in view.local if r.state.state not in ("stopped", "dead"))
        self.local_note.setText(
            "No local worker yet: Add worker starts one." if not view.local else
            f"{running} of {len(view.local)} local worker(s) running; logs in "
            f"{self.ctx.settings.data_dir / 'logs'}")
        self.all_note.setText(view.error or f"{len(view.everywhere)} worker(s) online")
        self._show_events(view)
        self._show_redis(view.redis)
        for label in self.wrapped:
            fit_height(label)  # new texts, maybe more lines
        self._update_buttons()

    def _show_events(self, view: WorkersView) -> None:
        lines = []
        for event in reversed(view.events):
            when = time.strftime("%H:%M:%S", time.localtime(event.time))
            code = f", exit code {event.exit_code}" if event.exit_code is not None else ""
            pid = f" (pid {event.pid})" if event.pid else ""
            lines.append(f"{when}  {event.worker_id}{pid}: {event.action}{code}")
        if [self.events.item(i).text() for i in range(self.events.count())] != lines:
            self.events.clear()
            self.events.addItems(lines or ["No events yet."])

    def _show_redis(self, status: dict[str, Any]) -> None:
        labels = self.redis_labels
        if status["running"]:
            labels["running"].setText("running" + ("" if status["embedded"] else
                                                   " (RELAYDESK_REDIS_URL)"))
        else:
            labels["running"].setText(f"not running — {status['error'] or ''}".rstrip(" —"))
        labels["where"].setText(status["url"] or (f"127.0.0.1:{status['port']}"
                                                  if status["port"] else "–"))
        labels["memory"].setText(status["used_memory_human"] or "–")
        labels["keys"].setText("–" if status["keys"] is None else f"{status['keys']:,}")
        labels["uptime"].setText(format_uptime(status["uptime_s"]))
        labels["version"].setText(" ".join(filter(None, (status["server_name"],
                                                           status["server_version"]))) or "–")
        self.redis_warning.setText(status["server_warning"] or "")
        self.redis_warning.setVisible(bool(status["server_warning"]))
        self.redis_start.setEnabled(status["embedded"] and not status["running"])
        self.redis_stop.setEnabled(status["embedded"] and status["running"])

    # -- selection ----------------------------------------------------------------------
    def selected_local(self) -> LocalRow | None:
        rows = self.local_table.selectionModel().selectedRows()
        return self.local_model.rows[rows[0].row()] if rows else None

    def selected_remote(self) -> WorkerInfo | None:
        rows = self.all_table.selectionModel().selectedRows()
        return self.all_model.rows[rows[0].row()] if rows else None

    def _update_buttons(self) -> None:
        local = self.selected_local()
        alive = local is not None and local.state.state not in ("stopped", "dead")
        online = local is not None and local.info is not None
        self.local_buttons["stop"].setEnabled(alive)
        self.local_buttons["kill"].setEnabled(alive)
        self.local_buttons["restart"].setEnabled(local is not None)
        self.local_buttons["remove"].setEnabled(local is not None and not alive)
        fixed = local is not None and not local.state.spec.autoscales
        self.local_buttons["grow"].setEnabled(online and fixed)
        self.local_buttons["shrink"].setEnabled(online and fixed)
        remote = self.selected_remote()
        for button in self.remote_buttons.values():
            button.setEnabled(remote is not None and remote.status != "unresponsive")

    # -- actions ------------------------------------------------------------------------
    def _run(self, call: Callable[[], Any], done_text: str) -> None:
        def done(result: Any) -> None:
            self.window().statusBar().showMessage(done_text, 5000)
            self.refresh()

        self.ctx.background.run(call, on_done=done)

    def ask_add_worker(self) -> None:
        dialog = AddWorkerDialog(self, self.ctx.settings.worker_concurrency)
        dialog.accepted.connect(lambda: dialog.spec and self.add_worker(dialog.spec))
        self.add_dialog = dialog
        dialog.open()

    def add_worker(self, spec: WorkerSpec) -> None:
        supervisor = self.ctx.services.supervisor
        self._run(lambda: supervisor.add_worker(spec), "Worker starting…")

    def local_action(self, action: str) -> None:
        row = self.selected_local()
        if row is None:
            return
        services, worker_id, hostname = self.ctx.services, row.state.id, row.state.hostname
        supervisor = services.supervisor
        calls: dict[str, Callable[[], Any]] = {
            "stop": lambda: supervisor.stop_worker(worker_id),
            "kill": lambda: supervisor.kill_worker(worker_id),
            "restart": lambda: supervisor.restart_worker(worker_id),
            "grow": lambda: worker_control.pool_grow(services.celery(), hostname),
            "shrink": lambda: worker_control.pool_shrink(services.celery(), hostname),
            "remove": lambda: supervisor.remove_worker(worker_id),
        }
        self._run(calls[action], f"{worker_id}: {action} requested")

    def apply_autoscale(self) -> None:
        low, high = self.min_processes.value(), self.max_processes.value()
        if low > high:
            self.window().statusBar().showMessage("The minimum is above the maximum.", 5000)
            return
        services = self.ctx.services
        supervisor, row = services.supervisor, self.selected_local()

        def apply() -> None:
            supervisor.min_processes, supervisor.max_processes = low, high
            if row is not None and row.state.spec.autoscales and row.info is not None:
                hostname = row.state.hostname
                worker_control.set_autoscale(services.celery(), hostname, high, low)

        self._run(apply, f"Autoscale bounds {low}–{high} processes applied")

    def remote_action(self, action: str) -> None:
        worker = self.selected_remote()
        if worker is None:
            return
        services, hostname = self.ctx.services, worker.hostname
        if action == "shutdown":
            box = QMessageBox(QMessageBox.Icon.Warning, "Shut down worker",
                              f"Shut down {hostname} on {worker.host}? It finishes its "
                              "current tasks first. A worker this console supervises is "
                              "started again; use Stop above for those.", parent=self)
            yes = box.addButton("Shut down", QMessageBox.ButtonRole.DestructiveRole)
            box.addButton(QMessageBox.StandardButton.Cancel)
            box.buttonClicked.connect(lambda b: b is yes and self._run(
                lambda: worker_control.shutdown(services.celery(), hostname),
                f"{hostname}: shutdown requested"))
            self.shutdown_box = box
            box.open()
            return
        call = worker_control.pool_grow if action == "grow" else worker_control.pool_shrink
        self._run(lambda: call(services.celery(), hostname), f"{hostname}: {action} requested")

    def start_redis(self) -> None:
        self._run(self.ctx.services.start_local_services, "Embedded Redis started")

    def confirm_stop_redis(self) -> None:
        box = QMessageBox(QMessageBox.Icon.Warning, "Stop Redis",
                          "Stop the embedded Redis? Workers cannot take jobs until it runs "
                          "again; queued jobs are kept on disk.", parent=self)
        yes = box.addButton("Stop Redis", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        server = EmbeddedRedis.for_settings(self.ctx.settings)
        box.buttonClicked.connect(lambda b: b is yes and self._run(
            server.stop, "Embedded Redis stopped"))
        self.stop_redis_box = box
        box.open()
