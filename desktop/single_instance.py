"""One console per data dir: a second launch asks the first to show itself, then exits."""

from __future__ import annotations

import hashlib
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket

CONNECT_TIMEOUT_MS = 500


def server_name(data_dir: Path) -> str:
    digest = hashlib.sha1(str(data_dir.resolve()).encode(), usedforsecurity=False).hexdigest()
    return f"relaydesk-{digest[:16]}"


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
        self._pending: list[QLocalSocket] = []
        name = server_name(data_dir)
        if not self.server.listen(name):
            QLocalServer.removeServer(name)  # left over by a console that crashed
            self.server.listen(name)
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
