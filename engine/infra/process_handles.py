"""One interface over the processes a supervisor looks after: those it started (its
children, with an exit code) and those it adopted from an owner that died (not its
children: their exit code cannot be known, and every signal first checks that the pid
still belongs to the adopted process)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from typing import Protocol

import psutil


class ProcessHandle(Protocol):
    pid: int
    adopted: bool

    def running(self) -> bool: ...

    def exit_code(self) -> int | None:
        """The exit code once it exited (None while it runs, or when unknown)."""

    def wait(self, timeout: float | None = None) -> bool:
        """True once it exited, False if it still runs after ``timeout`` seconds."""

    def send_signal(self, sig: int) -> None: ...

    def terminate(self) -> None: ...

    def kill_tree(self) -> None:
        """SIGKILL it with its process group (a worker's pool), then wait for it."""


class ChildProcess:
    """A process this supervisor started."""

    adopted = False

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def exit_code(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout: float | None = None) -> bool:
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def send_signal(self, sig: int) -> None:
        self.popen.send_signal(sig)

    def terminate(self) -> None:
        self.popen.terminate()

    def kill_tree(self) -> None:
        if self.popen.poll() is None:
            if sys.platform == "win32":
                _kill_children(self.pid)
                self.popen.kill()
            else:
                # It leads its own process group, its pool processes in it; the embedded
                # Redis or gateway it may have started have their own sessions.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
        self.popen.wait()


class AdoptedProcess:
    """A process an earlier supervisor of this data dir started and left running."""

    adopted = True

    def __init__(self, process: psutil.Process) -> None:
        self.process = process  # psutil checks pid *and* creation time before signalling
        self.pid = process.pid

    def running(self) -> bool:
        try:
            return bool(self.process.is_running() and
                        self.process.status() != psutil.STATUS_ZOMBIE)
        except psutil.Error:
            return False

    def exit_code(self) -> None:
        return None  # not our child: the operating system tells only its parent

    def wait(self, timeout: float | None = None) -> bool:
        try:
            self.process.wait(timeout)
        except psutil.TimeoutExpired:
            return not self.running()  # a zombie waiting for its new parent has exited
        except psutil.Error:
            pass
        return True

    def send_signal(self, sig: int) -> None:
        with contextlib.suppress(psutil.NoSuchProcess):
            self.process.send_signal(sig)  # refuses (NoSuchProcess) a reused pid

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill_tree(self) -> None:
        if not self.running():
            return
        if sys.platform == "win32":
            _kill_children(self.pid)
            with contextlib.suppress(psutil.NoSuchProcess):
                self.process.kill()
        else:
            try:
                # Only its own group (it was started as a session leader), never another.
                same_group = os.getpgid(self.pid) == self.pid and self.process.is_running()
            except OSError:
                same_group = False
            if same_group:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
            else:
                _kill_children(self.pid)
                with contextlib.suppress(psutil.NoSuchProcess):
                    self.process.kill()
        self.wait()


def _kill_children(pid: int) -> None:
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child.kill()
