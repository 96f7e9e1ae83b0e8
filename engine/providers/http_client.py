"""One pooled HTTP client per process (created after fork: pools must not cross it), whose
every call has a total deadline.

urllib3's timeouts bound each receive, not the call: ``Timeout(total=...)`` only limits
the connect plus the first wait, so a server that drips one byte a second keeps a call
alive for as long as it likes (measured: ``total=2`` and a 20-second drip took 20 s). A
call that outlives the claim lease lets the lease sweep send the message a second time.
So each call is watched: at its deadline a watchdog thread shuts the call's socket down,
which ends any read blocked on it, and the call fails as a timeout.

What the watchdog cannot cut is the time before a socket exists: the name lookup (the
system resolver has no timeout of ours) and, for HTTPS, the handshake (bounded per read
by the connect timeout). A call whose deadline passed meanwhile is shut the moment its
socket is attached, before any request is written, so it can outlast its lease but never
send; the lease's margin is there for such waits.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import socket
import threading
import time
from typing import Any

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.response import HTTPResponse

# Connecting takes at most this long (or what is left of the call's deadline, if less).
CONNECT_TIMEOUT_S = 5.0


class DeadlineExceeded(urllib3.exceptions.TimeoutError):
    """The call had no complete answer by its deadline."""


class _Guard:
    """One call's deadline and the socket it uses; the watchdog shuts it at the deadline."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.expired = False
        self.done = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def attach(self, sock: socket.socket | None) -> None:
        with self._lock:
            self._sock = sock
            if self.expired:
                _shutdown(sock)

    def expire(self) -> None:
        with self._lock:
            if self.done:
                return
            self.expired = True
            _shutdown(self._sock)

    def finish(self) -> None:
        with self._lock:
            self.done = True
            self._sock = None


def _shutdown(sock: socket.socket | None) -> None:
    if sock is None:
        return
    # A read blocked in another thread returns at once; a socket already closed means the
    # call is over anyway.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _Watchdog:
    """A single thread per process that expires the calls whose deadline has passed."""

    def __init__(self) -> None:
        self._order = itertools.count()
        self.reset()

    def reset(self) -> None:
        """A fresh start in a forked child: the parent's thread and calls are not here, and
        its lock may have been held by another thread at the fork."""
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Guard]] = []
        self._pid = 0

    def watch(self, guard: _Guard) -> None:
        with self._cond:
            if self._pid != os.getpid():  # the first call in this process
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="http-deadlines", daemon=True).start()
            heapq.heappush(self._heap, (guard.deadline, next(self._order), guard))
            if self._heap[0][2] is guard:  # the earliest deadline now: wake up sooner
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)  # finished calls leave lazily
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, _, guard = self._heap[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
            guard.expire()


_watchdog = _Watchdog()
if hasattr(os, "register_at_fork"):  # POSIX; Windows has no fork
    os.register_at_fork(after_in_child=_watchdog.reset)
_current = threading.local()  # the guard of the call this thread is making


def _guard_socket(sock: socket.socket | None) -> None:
    guard: _Guard | None = getattr(_current, "guard", None)
    if guard is not None:
        guard.attach(sock)


class _GuardedHTTPConnection(HTTPConnection):
    # A new connection gets its socket in connect(); a reused one already has it. The
    # answer is read whole inside getresponse() (preload), and the connection goes back to
    # the pool only after it: let go of the socket first, it may serve another call next.
    def connect(self) -> None:
        super().connect()
        _guard_socket(self.sock)

    def request(self, *args: Any, **kwargs: Any) -> None:
        if self.sock is not None:
            _guard_socket(self.sock)
        super().request(*args, **kwargs)

    def getresponse(self) -> HTTPResponse:  # type: ignore[override]
        try:
            return super().getresponse()
        finally:
            _guard_socket(None)


class _GuardedHTTPSConnection(_GuardedHTTPConnection, HTTPSConnection):
    # The guard's methods above, around HTTPSConnection's own (the method order puts
    # HTTPSConnection between the guard and HTTPConnection).
    pass


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class ProviderHttp:
    """A pooled client for provider calls; ``request`` never runs past its deadline."""

    def __init__(self, timeout_s: float, pool_size: int) -> None:
        self.timeout_s = timeout_s
        self.pool = urllib3.PoolManager(
            num_pools=8,
            maxsize=pool_size,
            block=True,  # at most pool_size connections per host; threads wait their turn
            retries=False,  # retrying is RelayDesk's job, with backoff and a breaker
        )
        self.pool.pool_classes_by_scheme = {"http": _GuardedHTTPPool,
                                            "https": _GuardedHTTPSPool}

    def request(self, method: str, url: str, *, deadline: float | None = None,
                **kwargs: Any) -> urllib3.BaseHTTPResponse:
        """One call, done (connection, request, whole answer) by ``deadline`` (a
        ``time.monotonic()`` value; default: ``timeout_s`` from now) or DeadlineExceeded."""
        if deadline is None:
            deadline = time.monotonic() + self.timeout_s
        left = deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded("no time left for the call")
        guard = _Guard(deadline)
        _current.guard = guard
        _watchdog.watch(guard)
        try:
            return self.pool.request(
                method, url, preload_content=True, pool_timeout=left,
                timeout=urllib3.Timeout(connect=min(CONNECT_TIMEOUT_S, left), read=left),
                **kwargs)
        except Exception:
            if guard.expired:  # the watchdog cut it: whatever broke, it was the deadline
                raise DeadlineExceeded(f"no complete answer within {left:.3g} s") from None
            raise
        finally:
            _current.guard = None
            guard.finish()


_lock = threading.Lock()
_clients: dict[tuple[int, str, float, int], ProviderHttp] = {}


def http_client(timeout_s: float, pool_size: int, purpose: str = "send") -> ProviderHttp:
    """The process's client for ``purpose``: calls of another purpose (Twilio's status
    look-ups) never share its connections, whatever the sizes, so they never take one that
    a send waits for."""
    key = (os.getpid(), purpose, timeout_s, pool_size)
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = ProviderHttp(timeout_s, pool_size)
            _clients[key] = client
        return client
