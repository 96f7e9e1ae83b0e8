"""Run engine calls off the UI thread and deliver the result (or the error) back on it.

The console never waits on Redis, SQL, HTTP or a process on the UI thread. Every such call
goes through :class:`Background`: the call runs on a thread pool, and its callback runs on
the UI thread through a queued signal. Callbacks that are methods of a widget deleted
meanwhile, and every callback once the window has closed, are dropped instead of crashing.
:class:`Latest` drops the answers to questions the operator has moved on from;
:class:`LatestInProcess` also stops the call still working on one, in a helper process of
its own (desktop.helper_lane).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import Any

import shiboken6
from PySide6.QtCore import QObject, Signal

from desktop.helper_lane import HelperCrashed, HelperLane, Superseded, WarmUp

__all__ = ["Background", "HelperCrashed", "Latest", "LatestInProcess", "Superseded"]

log = logging.getLogger(__name__)

Callback = Callable[[Any], None]
ErrorCallback = Callable[[BaseException], None]


class Background(QObject):
    """A thread pool whose results come back on the UI thread."""

    _finished = Signal(object, object, object)  # callback, value, error
    busy_changed = Signal(int)  # number of calls in flight
    error = Signal(BaseException)  # an error nobody handled

    def __init__(self, threads: int = 4, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="relaydesk-bg")
        # CPU-heavy calls run in a helper process: a thread of ours would hold the
        # interpreter lock for long stretches and freeze the window (measured: 100-200 ms).
        self._process: ProcessPoolExecutor | None = None
        self._process_feeder = ThreadPoolExecutor(1, thread_name_prefix="relaydesk-helper")
        # Ordered work (e.g. saving settings) runs one call at a time, in submission order.
        self._serial = ThreadPoolExecutor(1, thread_name_prefix="relaydesk-serial")
        self._lock = threading.Lock()
        self._in_flight = 0
        self._closed = False
        self._lanes: list[HelperLane] = []  # helper processes of one kind of call each
        self._feeders: list[ThreadPoolExecutor] = []
        self._finished.connect(self._deliver)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def run(self, fn: Callable[..., Any], *args: Any, on_done: Callback | None = None,
            on_error: ErrorCallback | None = None, serial: bool = False,
            executor: ThreadPoolExecutor | None = None, **kwargs: Any) -> Future[Any]:
        """Run ``fn(*args, **kwargs)`` on a background thread; callbacks run on the UI thread.

        Without ``on_error`` an exception goes to the :attr:`error` signal (the app shows it).
        After shutdown() the call is dropped: the window is closing.
        """
        if self._closed:
            dropped: Future[Any] = Future()
            dropped.cancel()
            return dropped
        self._change_in_flight(+1)
        executor = executor or (self._serial if serial else self._pool)
        future = executor.submit(fn, *args, **kwargs)
        future.add_done_callback(lambda f: self._done(f, on_done, on_error))
        return future

    def run_in_process(self, fn: Callable[..., Any], *args: Any,
                       on_done: Callback | None = None,
                       on_error: ErrorCallback | None = None) -> Future[Any]:
        """Like run(), in the helper process: ``fn`` must be a module-level function and
        its arguments and result picklable. Calls run one at a time, in order. Starting the
        helper (and handing it work) happens on a thread of ours too, not the UI thread."""
        return self.run(self._in_process, fn, *args, on_done=on_done, on_error=on_error,
                        executor=self._process_feeder)

    def dedicated_process(self, warm_up: WarmUp | None = None
                          ) -> tuple[HelperLane, ThreadPoolExecutor]:
        """A helper process of its own for one kind of call (see LatestInProcess), with the
        one thread that hands it work; both stop at shutdown(). ``warm_up``: a module-level
        function and its arguments, run in the process as soon as it starts."""
        lane = HelperLane(warm_up)
        feeder = ThreadPoolExecutor(1, thread_name_prefix="relaydesk-lane")
        self._lanes.append(lane)
        self._feeders.append(feeder)
        return lane, feeder

    def _in_process(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._process is None:
            # spawn, not fork: forking a process that runs Qt and threads is unsafe
            self._process = ProcessPoolExecutor(1, mp_context=get_context("spawn"))
        try:
            return self._process.submit(fn, *args).result()
        except BrokenProcessPool:
            self._process = None  # the next call starts a new helper
            raise HelperCrashed("the console's helper process stopped unexpectedly (out of "
                                "memory?); nothing it was doing was kept. Try again.") from None

    def _done(self, future: Future[Any], on_done: Callback | None,
              on_error: ErrorCallback | None) -> None:
        if future.cancelled():  # dropped at shutdown
            return
        error = future.exception()
        if error is not None:
            self._finished.emit(on_error or self.error.emit, None, error)
        else:
            self._finished.emit(on_done, future.result(), None)

    def _deliver(self, callback: Callable[[Any], None] | None, value: Any,
                 error: BaseException | None) -> None:
        self._change_in_flight(-1)
        if callback is None or self._closed:
            return  # nothing to tell, or the window is gone
        if _owner_gone(callback):
            return  # the widget went away while the call ran
        callback(error if error is not None else value)

    def _change_in_flight(self, delta: int) -> None:
        with self._lock:
            self._in_flight += delta
            count = self._in_flight
        if threading.current_thread() is threading.main_thread():
            self.busy_changed.emit(count)

    def shutdown(self, wait: bool = False) -> None:
        """Stop taking work; calls already running finish on their own threads (the window
        closes without waiting for them unless ``wait``)."""
        self._closed = True
        self._pool.shutdown(wait=wait, cancel_futures=True)
        self._serial.shutdown(wait=wait, cancel_futures=True)
        self._process_feeder.shutdown(wait=wait, cancel_futures=True)
        if self._process is not None:  # a call under way finishes: nothing half-imported
            self._process.shutdown(wait=wait, cancel_futures=True)
        for lane in self._lanes:  # only reads: stopped at once
            lane.close(wait=wait)
        for feeder in self._feeders:
            feeder.shutdown(wait=wait, cancel_futures=True)


class Latest:
    """Calls whose question can change while they run: only the newest answers count.

    ``start()`` says the question changed (a range switch, new filters, a new selection):
    calls submitted before it are stale, and their answers and errors are dropped. A page
    that asks anew on every change calls ``start()`` then ``submit()``; one that keeps
    asking the same question (a refresh tick) only calls ``submit()``.
    """

    def __init__(self, background: Background) -> None:
        self._background = background
        self._generation = 0
        self._pending = 0

    @property
    def pending(self) -> bool:
        """A call submitted since the last start() has not answered yet."""
        return self._pending > 0

    def start(self) -> None:
        """The question changed: answers to the calls under way will be dropped."""
        self._generation += 1
        self._pending = 0

    def submit(self, fn: Callable[..., Any], *args: Any, on_done: Callback | None = None,
               on_error: ErrorCallback | None = None) -> Future[Any]:
        """Background.run(fn, *args), delivering only if start() is not called meanwhile.
        Without ``on_error`` a current call's error goes to the runner's error signal."""
        generation = self._generation
        self._pending += 1
        report = on_error or self._background.error.emit

        def answered(callback: Callable[[Any], None] | None, answer: Any) -> None:
            if generation != self._generation:
                return  # the question changed since: a newer answer counts, not this one
            self._pending -= 1
            # A bound method of a widget deleted meanwhile is dropped, as Background does.
            if callback is not None and not _owner_gone(callback):
                callback(answer)

        return self._run(fn, *args, on_done=lambda v: answered(on_done, v),
                         on_error=lambda e: answered(report, e))

    def _run(self, fn: Callable[..., Any], *args: Any, on_done: Callback,
             on_error: ErrorCallback) -> Future[Any]:
        return self._background.run(fn, *args, on_done=on_done, on_error=on_error)


class LatestInProcess(Latest):
    """Latest, for CPU-heavy calls: they run in a helper process of their own (a thread of
    the console would stall the window: the interpreter lock), one at a time. start() makes
    the call under way stale: it stops at its next check of ``stale()`` (its first argument:
    ``fn(stale, *args)``), and queued stale calls never start. Its own process: a long
    import or send in the console's other helper never holds these calls up. ``fn`` must be
    a module-level function, its arguments and result picklable.
    """

    def __init__(self, background: Background, warm_up: WarmUp | None = None) -> None:
        super().__init__(background)
        self.lane, self._feeder = background.dedicated_process(warm_up)

    def warm(self) -> None:
        """Start the helper process now (off the UI thread), before the first question."""
        self._background.run(self.lane.start, on_error=lambda _: None, executor=self._feeder)

    def start(self) -> None:
        super().start()
        self.lane.supersede(self._generation)

    def _run(self, fn: Callable[..., Any], *args: Any, on_done: Callback,
             on_error: ErrorCallback) -> Future[Any]:
        # A stopped call answers Superseded, which start() has already made stale: dropped.
        return self._background.run(self.lane.call, self._generation, fn, *args,
                                    on_done=on_done, on_error=on_error,
                                    executor=self._feeder)


def _owner_gone(callback: Callable[..., Any]) -> bool:
    """The callback is a method of a Qt object that has been deleted."""
    owner = getattr(callback, "__self__", None)
    return isinstance(owner, QObject) and not shiboken6.isValid(owner)
