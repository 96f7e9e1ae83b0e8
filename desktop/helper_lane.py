"""A helper process of its own for one kind of CPU-heavy call whose newer asking makes the
older answer worthless: Compose's totals over every recipient, asked again after each pause
in typing.

Each call carries a ticket, a number that grows with each new question. The console writes
the newest ticket into memory it shares with the process; the call running there is handed
a ``stale()`` function that compares the two, checks it between batches of its work, and
stops early (raising :class:`Superseded`) once a newer question has come. So the process
stays warm (no new process, imports and database connection per question) and is free for
the next question within one batch. A stale call that has not stopped STOP_GRACE_S later
(it does not check, or is stuck in one long step) is stopped by ending its process, and a
fresh one is started at once: that costs a process start (about a second of CPU), but
never leaves the next question waiting behind a stale one. Being its own process, a long
import or send in the console's other helper process never holds these calls up.

No Qt here: the helper process imports this module (for :func:`serve`), and must stay
light. Calls block, so they run on a thread of the console, never on the UI thread; see
``desktop.background.LatestInProcess``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from ctypes import c_longlong
from multiprocessing import get_context
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

WarmUp = tuple[Callable[..., Any], tuple[Any, ...]]
Stale = Callable[[], bool]

# How long a stale call may take to notice before its process is ended: many batches of
# the totals (tens of ms each at 100,000 recipients), so a call that checks is never cut.
STOP_GRACE_S = 1.0
POLL_S = 0.05  # how often the console looks whether a stale call has outstayed that


class Superseded(Exception):
    """The call was stopped, or never started, because a newer one replaced it."""


class HelperCrashed(RuntimeError):
    """The helper process died while running a call."""


def serve(conn: Connection, wanted: c_longlong, began: c_longlong,
          warm_up: WarmUp | None) -> None:
    """The helper process: run each ``(ticket, fn, args)`` received as ``fn(stale, *args)``
    and send back ``("ok", result)`` or ``("error", exception)``; ``stale()`` is true once
    the console wants a newer ticket. ``began`` holds the ticket of the call under way (-1
    between calls). Stops when the console's end of the pipe closes."""
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

        began.value = ticket
        try:
            if stale():  # superseded while it waited here (e.g. behind the warm-up)
                raise Superseded
            reply: tuple[str, Any] = ("ok", fn(stale, *args))
        except Exception as exc:  # every error goes back to the console
            reply = ("error", exc)
        began.value = -1
        try:
            conn.send(reply)
        except Exception:  # an exception that cannot be pickled
            # Its type only: its text could quote a phone number or a message body.
            failed = type(reply[1]).__name__
            conn.send(("error", RuntimeError(f"the helper process's call failed ({failed})")))


class HelperLane:
    """One helper process running one call at a time; :meth:`supersede` makes every call
    with a smaller ticket stale: the one running stops at its next check (or its process is
    ended STOP_GRACE_S later), queued ones never start.

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
        # The ticket of the call the process is inside (written by the process): a stale
        # call's grace runs only once the process has begun it, not while it warms up.
        self._began: c_longlong = self._context.RawValue(c_longlong, -1)
        self._lock = threading.Lock()
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._running: int | None = None  # the ticket of the call under way
        self._stale_since: float | None = None  # when the call under way became stale
        self._closed = False
        # For tests and benchmarks: calls handed to the process; of those, calls that
        # stopped early on their own, and calls whose process had to be ended.
        self.calls = 0
        self.stopped = 0
        self.ended = 0

    @property
    def pid(self) -> int | None:
        """The helper process's id, None before it starts."""
        process = self._process
        return process.pid if process is not None else None

    @property
    def busy(self) -> bool:
        """A call is under way (handed to the helper process)."""
        return self._running is not None

    @property
    def begun(self) -> bool:
        """The helper process is inside a call (past its warm-up and the stale check)."""
        return self._began.value >= 0

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
            self._running, self._stale_since = ticket, None
            self.calls += 1
        try:
            conn.send((ticket, fn, args))
            status, value = self._answer(conn, ticket)
        except (EOFError, OSError):
            with self._lock:
                stopped = self._closed or ticket < self._wanted.value
            self._forget_process()
            if not stopped:
                raise HelperCrashed("the console's helper process for the totals stopped "
                                    "unexpectedly (out of memory?). Change the message or "
                                    "the recipients to count again.") from None
            with contextlib.suppress(Superseded):  # (closed: no new process)
                self._pipe()  # a fresh process, warm for the next question
            raise Superseded from None
        finally:
            with self._lock:
                self._running = self._stale_since = None
        if status == "error":
            if isinstance(value, Superseded):
                self.stopped += 1
            raise value
        return value

    def _answer(self, conn: Connection, ticket: int) -> tuple[str, Any]:
        """The call's answer; ends the process of a call stale for longer than the grace
        (the receive then finds the pipe closed)."""
        while not conn.poll(POLL_S):
            with self._lock:
                since, process = self._stale_since, self._process
                if since is not None and self._began.value != ticket:
                    # Not begun yet (the process still warms up): it sees that it is stale
                    # before it starts. The grace counts from when it begins.
                    since = self._stale_since = time.monotonic()
            if since is not None and process is not None and \
                    time.monotonic() - since > STOP_GRACE_S:
                process.terminate()
                self.ended += 1
                process.join()  # its end of the pipe closes: poll() says so
        status, value = conn.recv()
        return status, value

    def supersede(self, ticket: int) -> None:
        """Calls with a ticket below ``ticket`` are stale."""
        with self._lock:
            self._wanted.value = max(self._wanted.value, ticket)
            if self._running is not None and self._running < ticket and \
                    self._stale_since is None:
                self._stale_since = time.monotonic()

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
        self._began.value = -1  # a process that died inside a call left its ticket there
        ours, theirs = self._context.Pipe()
        process = self._context.Process(target=serve, daemon=True, name="relaydesk-lane",
                                        args=(theirs, self._wanted, self._began,
                                              self._warm_up))
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
