"""One console per data dir: a second launch asks the first to show itself, then exits.

The console listens on a local socket whose name derives from the data dir. On Linux and
macOS the socket lives in the user's private runtime dir (``$XDG_RUNTIME_DIR/relaydesk``,
mode 0700), not under a predictable name in the shared temp dir, where another local user
could create it first and either block the console or receive its requests. Windows names
a pipe instead; Qt limits its access to the current user.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import sys
import warnings
from pathlib import Path

import platformdirs
from PySide6.QtCore import QObject, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket

CONNECT_TIMEOUT_MS = 500

log = logging.getLogger(__name__)


class RuntimeDirNotPrivate(RuntimeError):
    """The per-user runtime dir is not the user's alone; the message says what to do."""


def runtime_dir() -> Path:
    """The user's private runtime dir for RelayDesk, created 0700 if missing."""
    try:
        with warnings.catch_warnings():
            # Without XDG_RUNTIME_DIR (servers, containers) platformdirs warns and falls
            # back to a checked per-user dir: expected there, not the operator's concern.
            warnings.simplefilter("ignore")
            base = Path(platformdirs.user_runtime_dir("relaydesk", appauthor=False,
                                                      ensure_exists=True))
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:  # e.g. another user owns the fallback dir in the temp dir
        raise RuntimeDirNotPrivate(
            f"RelayDesk has no private runtime dir ({exc}): set XDG_RUNTIME_DIR to a "
            "directory only you can use (mode 0700), then start RelayDesk again") from None
    info = base.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise RuntimeDirNotPrivate(
            f"{base} is not a directory of your own: remove it, or set XDG_RUNTIME_DIR to a "
            "private directory, then start RelayDesk again")
    if stat.S_IMODE(info.st_mode) != 0o700:
        base.chmod(0o700)  # ours, made by an older version or another umask
    return base


def server_name(data_dir: Path) -> str:
    """The local socket's name (a full path outside Windows): one per data dir."""
    digest = hashlib.sha1(str(data_dir.resolve()).encode(), usedforsecurity=False).hexdigest()
    name = f"relaydesk-{digest[:16]}"
    if sys.platform == "win32":
        return name
    return str(runtime_dir() / name)


def ask_running_instance_to_raise(data_dir: Path) -> bool:
    """True when another console owns this data dir (and has been asked to come forward)."""
    socket = QLocalSocket()
    socket.connectToServer(server_name(data_dir))
    if not socket.waitForConnected(CONNECT_TIMEOUT_MS):
        return False
    socket.write(b"raise\n")
    socket.waitForBytesWritten(CONNECT_TIMEOUT_MS)
    socket.disconnectFromServer()
    return True


class InstanceServer(QObject):
    raise_requested = Signal()

    def __init__(self, data_dir: Path) -> None:
        super().__init__()
        self.server = QLocalServer(self)
        # Only this user may connect (the private dir already ensures it outside Windows).
        self.server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        self._pending: list[QLocalSocket] = []
        name = server_name(data_dir)
        if not self.server.listen(name):
            QLocalServer.removeServer(name)  # left over by a console that crashed
            if not self.server.listen(name):
                # The console still works; a second launch just cannot find this one.
                log.warning("A second launch will not find this console: cannot listen "
                            "on %s (%s)", name, self.server.errorString())
        self.server.newConnection.connect(self._connection)

    def _connection(self) -> None:
        while (socket := self.server.nextPendingConnection()) is not None:
            self._pending.append(socket)  # children of the server: freed with it
            socket.readyRead.connect(self._read)

    def _read(self) -> None:
        for socket in [s for s in self._pending if s.bytesAvailable()]:
            self._pending.remove(socket)
            request = bytes(socket.readAll().data()).strip()
            socket.disconnectFromServer()
            if request == b"raise":
                self.raise_requested.emit()

    def close(self) -> None:
        self.server.close()
