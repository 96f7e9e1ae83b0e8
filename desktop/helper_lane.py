"""A helper process of its own for one kind of CPU-heavy call whose newer asking makes the
older answer worthless: Compose's totals over every recipient, asked again after each pause
in typing.

Each call carries a ticket, a number that grows with each new question. The console writes
the newest ticket into memory it shares with the process; the call running there is handed
a ``stale()`` function that compares the two, checks it between batches of its work, and
stops early (raising :class:`Superseded`) once a newer question has come. So the process
stays warm (no new process, imports and database connection per question) and is free for
the next question within one batch. Being its own process, a long import or send in the
console's other helper process never holds these calls up.

No Qt here: the helper process imports this module (for :func:`serve`), and must stay
light. Calls block, so they run on a thread of the console, never on the UI thread; see
``desktop.background.LatestInProcess``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from ctypes import c_longlong
from multiprocessing import get_context
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

WarmUp = tuple[Callable[..., Any], tuple[Any, ...]]
Stale = Callable[[], bool]


class Superseded(Exception):
    """The call was stopped, or never started, because a newer one replaced it."""


class HelperCrashed(RuntimeError):
    """The helper process died while running a call."""


def serve(conn: Connection, wanted: c_longlong, warm_up: WarmUp | None) -> None:
    """The helper process: run each ``(ticket, fn, args)`` received as ``fn(stale, *args)``
    and send back ``("ok", result)`` or ``("error", exception)``; ``stale()`` is true once
    the console wants a newer ticket. Stops when the console's end of the pipe closes."""
    if warm_up is not None:
        # Imports and a database connection, before the first call needs them; when it
        # fails, the first real call reports what is wrong.
        with contextlib.suppress(Exception):
            warm_up[0](*warm_up[1])
    while True:
        try:
            ticket, fn, args = conn.recv()
        except (EOFError, OSError):
            return  # the console closed the lane, or went away

        def stale(ticket: int = ticket) -> bool:
            return wanted.value > ticket

        try:
            reply: tuple[str, Any] = ("ok", fn(stale, *args))
        except Exception as exc:  # every error goes back to the console
            reply = ("error", exc)
        try:
            conn.send(reply)
        except Exception:  # an exception that cannot be pickled
            # Its type only: its text could quote a phone number or a message body.
            failed = type(reply[1]).__name__
            conn.send(("error", RuntimeError(f"the helper process's call failed ({failed})")))


class HelperLane:
    """One helper process running one call at a time; :meth:`supersede` makes every call
    with a smaller ticket stale: the one running stops at its next check, queued ones never
    start.

    call() and start() block: make them from one thread of the console at a time (never the
    UI thread). supersede() and close() never wait: the UI thread may call them.
    """

    def __init__(self, warm_up: WarmUp | None = None) -> None:
        self._warm_up = warm_up
        self._context = get_context("spawn")  # fork is unsafe in a process running Qt
        # The newest ticket, shared with every process this lane starts. Only the console
        # writes it, one aligned word at a time: no lock, which a process that died holding
        # it would keep locked, and the UI thread would then wait on forever.
        self._wanted: c_longlong = self._context.RawValue(c_longlong, 0)
        self._lock = threading.Lock()
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._running: int | None = None  # the ticket of the call under way
        self._closed = False
        # For tests and benchmarks: calls handed to the process, and of those, calls that
        # stopped early, superseded.
        self.calls = 0
        self.stopped = 0

    @property
    def pid(self) -> int | None:
        """The helper process's id, None before it starts."""
        process = self._process
        return process.pid if process is not None else None

    @property
    def busy(self) -> bool:
        """A call is under way in the helper process."""
        return self._running is not None

    def start(self) -> None:
        """Start the helper process now (if it is not running), so that the first call does
        not wait for its imports."""
        self._pipe()

    def call(self, ticket: int, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(stale, *args)`` in the helper process: ``fn`` module-level, its arguments
        and result picklable; a long ``fn`` checks ``stale()`` now and then and raises
        Superseded when it is true. Raises Superseded when a newer ticket came first."""
        if ticket < self._wanted.value:
            raise Superseded  # never started: nothing to count
        conn = self._pipe()
        with self._lock:
            self._running = ticket
            self.calls += 1
        try:
            conn.send((ticket, fn, args))
            status, value = conn.recv()
        except (EOFError, OSError):
            with self._lock:
                closed = self._closed
            self._forget_process()
            if closed:
                raise Superseded from None
            raise HelperCrashed("the console's helper process for the totals stopped "
                                "unexpectedly (out of memory?). Change the message or the "
                                "recipients to count again.") from None
        finally:
            with self._lock:
                self._running = None
        if status == "error":
            if isinstance(value, Superseded):
                self.stopped += 1
            raise value
        return value

    def supersede(self, ticket: int) -> None:
        """Calls with a ticket below ``ticket`` are stale."""
        with self._lock:
            self._wanted.value = max(self._wanted.value, ticket)

    def close(self, wait: bool = False) -> None:
        """Stop the helper process: it only reads, and a call under way is not wanted any
        more, so it is ended rather than waited for."""
        with self._lock:
            self._closed = True
            process = self._process
        if process is None:
            return
        process.terminate()
        if wait:
            process.join()

    def _pipe(self) -> Connection:
        """The helper process's pipe, after starting one if there is none (or it died)."""
        with self._lock:
            if self._closed:
                raise Superseded
            process, conn = self._process, self._conn
        if process is not None and conn is not None and process.is_alive():
            return conn
        self._forget_process()
        ours, theirs = self._context.Pipe()
        process = self._context.Process(target=serve, daemon=True, name="relaydesk-lane",
                                        args=(theirs, self._wanted, self._warm_up))
        process.start()
        theirs.close()  # only the helper holds its end now: its exit ends our recv()
        with self._lock:
            self._process, self._conn = process, ours
            closed = self._closed
        if closed:  # closed while it started
            process.terminate()
            raise Superseded
        return ours

    def _forget_process(self) -> None:
        """The process died (or was never started): let it go."""
        with self._lock:
            process, conn = self._process, self._conn
            self._process = self._conn = None
        if process is not None:
            process.join()  # it has ended: quick
        if conn is not None:
            conn.close()
