"""The console as the owner of the local pipeline: at start it brings up what the settings
use locally (embedded Redis, report receiver, sandbox gateway, workers), it restarts workers
that die, and at close it asks whether the workers keep running."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from PySide6.QtCore import QTimer
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import QMessageBox

from engine.operations.supervisor import WorkerEvent

if TYPE_CHECKING:
    from desktop.app import Console

log = logging.getLogger(__name__)

CHECK_EVERY_MS = 2000


def start_local_pipeline(console: Console) -> None:
    window = console.window
    services = console.ctx.services
    window.statusBar().showMessage("Starting Redis, the receiver, the gateway and the "
                                   "workers…")

    def start() -> tuple[int, int]:
        workers = services.start_local_pipeline()
        adopted = sum(1 for w in services.supervisor.running if w.process and w.process.adopted)
        return workers, adopted

    def started(counts: tuple[int, int]) -> None:
        workers, adopted = counts
        if adopted:
            text = f"Took back {adopted} local worker(s) left running by an earlier console"
        elif workers:
            text = f"Started {workers} local worker(s)"
        else:
            text = "Workers already running"
        window.statusBar().showMessage(text, 5000)
        window.poll_status()

    console.ctx.background.run(start, on_done=started)
    watch_workers(console)


def watch_workers(console: Console) -> None:
    """Restart local workers that die unexpectedly, and say so in the status bar."""
    supervisor = console.ctx.services.supervisor
    timer = QTimer(console.window, interval=CHECK_EVERY_MS)

    def restarted(events: list[WorkerEvent]) -> None:
        for event in events:
            # An adopted worker is not our child: its exit code cannot be known.
            code = "" if event.exit_code is None else f" with code {event.exit_code}"
            console.window.statusBar().showMessage(
                f"Worker {event.worker_id} (pid {event.pid}) exited{code}: {event.action}",
                10_000)

    checking = [False]  # one check at a time

    def done(events: list[WorkerEvent]) -> None:
        checking[0] = False
        restarted(events)

    def failed(error: BaseException) -> None:
        checking[0] = False
        log.warning("worker check failed: %s", error)

    def check() -> None:
        if not checking[0]:
            checking[0] = True
            console.ctx.background.run(supervisor.check, on_done=done, on_error=failed)

    timer.timeout.connect(check)
    timer.start()


def install_close_policy(console: Console) -> None:
    """Closing asks whether local workers keep running. What runs is looked up, and stopping
    it done, off the UI thread (both wait on processes and the supervisor's lock); the window
    closes once the answer, or the stop, is in."""
    window = console.window
    services = console.ctx.services
    state = {"stopped": False, "checking": False}

    def close_now() -> None:
        state["stopped"] = True
        window.close()

    def stop_then_close() -> None:
        window.statusBar().showMessage("Stopping what RelayDesk started (warm)…")
        window.setEnabled(False)
        console.ctx.background.run(services.stop_local_services, on_done=lambda _: close_now(),
                                   on_error=lambda e: close_now())

    def what_runs() -> tuple[int, bool]:
        """How many local workers run, and whether anything this console owns does."""
        return len(services.supervisor.running), services.owns_anything()

    def decide(running: tuple[int, bool]) -> None:
        state["checking"] = False
        workers, owns_anything = running
        if not owns_anything:
            close_now()
        elif not workers:  # only Redis, the receiver and the gateway: nothing to ask
            stop_then_close()
        else:
            ask(workers)

    def check_failed(error: BaseException) -> None:
        # Never trap the operator in a window that cannot close: what runs is left running,
        # and the next console takes it back.
        log.warning("could not tell what runs locally, closing without stopping it: %s", error)
        close_now()

    def ask(workers: int) -> None:
        box = QMessageBox(QMessageBox.Icon.Question, "Close RelayDesk",
                          f"{workers} local worker(s) are running.", parent=window)
        box.setObjectName("confirm-close")
        box.setInformativeText("Leave them running to keep sending with the window closed "
                               "(RelayDesk takes them back when it opens again), or stop "
                               "them: they finish their current task first.")
        leave = box.addButton("Leave running", QMessageBox.ButtonRole.AcceptRole)
        stop = box.addButton("Stop workers", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)

        def chosen(button: object) -> None:
            if button is leave:
                close_now()
            elif button is stop:
                stop_then_close()

        box.buttonClicked.connect(chosen)
        window.close_box = box
        box.open()

    def allow_close(event: QCloseEvent) -> bool:
        if state["stopped"]:
            return True
        if services.starting:
            window.statusBar().showMessage("Still starting the workers: close again in a "
                                           "moment.", 5000)
            return False
        if not state["checking"]:  # a second click while looking adds nothing
            state["checking"] = True
            console.ctx.background.run(what_runs, on_done=decide, on_error=check_failed)
        return False

    window.close_policy = allow_close
