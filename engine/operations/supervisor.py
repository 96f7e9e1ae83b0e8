"""Local worker processes kept running: the headless counterpart of the console, and the
engine behind its Workers page.

Starts the embedded Redis, the report receiver and the sandbox gateway when they are
needed and not running (and stops them again at the end, as their owner), starts workers
through RelayDesk's own entry point, restarts any that die, and lets an operator add, stop,
kill and restart them. The receiver runs when RELAYDESK_RECEIVER_PORT is set, or on a free
port when the supervisor runs the sandbox gateway itself: it starts after Redis (where it
stores every report) and before the gateway, which posts its simulated reports to it.

What an earlier console or supervisor of the same data dir left running when it died
without closing (workers, gateway, receiver, Redis) is adopted on start: recognised from the records
in ``DATA_DIR/run`` (``engine.infra.process_records``), verified with psutil, and from then on
looked after as if started here.

Each worker runs in its own process group (session) so that a kill takes its pool
processes with it and a Ctrl-C in the terminal reaches only the supervisor, which then
stops the workers warm. Thread-safe: one thread may poll ``snapshot()``/``check()`` while
another calls the actions; no lock is held while waiting for a process to exit or for
Redis (starting one, a fork and exec, happens under the lock).
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import psutil
import redis
from celery import Celery
from kombu.exceptions import OperationalError

from engine.config.settings import Settings
from engine.domain.queues import ALL_QUEUES
from engine.infra import process_records, redis_keys
from engine.infra.connections import PROBE, celery_for, redis_for
from engine.infra.embedded_redis import EmbeddedRedis, RedisUnavailable
from engine.infra.local_gateway import LocalGateway
from engine.infra.local_receiver import LocalReceiver
from engine.infra.process_handles import AdoptedProcess, ChildProcess, ProcessHandle
from engine.infra.process_launch import relaydesk_command
from engine.monitoring import worker_control
from engine.pipeline.worker import default_pool, worker_name

log = logging.getLogger(__name__)

StateName = Literal["starting", "online", "busy", "stopping", "stopped", "dead"]
POOLS = ("prefork", "threads", "solo")

STOP_TIMEOUT_S = 30.0
EVENTS_KEPT = 200
# A worker that dies sooner than this after starting is failing at start: restart it with
# a growing delay instead of every check().
QUICK_EXIT_S = 30.0
MAX_RESTART_DELAY_S = 60.0
DEFAULT_MIN_PROCESSES = 2
DEFAULT_MAX_PROCESSES = 20
PROBE_TIMEOUT_S = 0.5


class UnknownWorker(KeyError):
    """No local worker has this id."""


@dataclass(frozen=True)
class WorkerSpec:
    """How to run one local worker."""

    queues: tuple[str, ...] | None = None  # None: all, most urgent first
    concurrency: int | None = None  # None: RELAYDESK_WORKER_CONCURRENCY
    pool: str | None = None  # prefork, threads or solo; None: prefork (threads on Windows)
    autoscale: bool = False  # scale between the supervisor's min and max processes
    autoscale_range: tuple[int, int] | None = None  # (max, min) for this worker instead

    def __post_init__(self) -> None:
        if self.pool is not None and self.pool not in POOLS:
            raise ValueError(f"unknown pool {self.pool!r}; use one of {', '.join(POOLS)}")
        unknown = [q for q in self.queues or () if q not in ALL_QUEUES]
        if unknown:
            raise ValueError(f"unknown queue(s) {', '.join(unknown)}; "
                             f"known: {', '.join(ALL_QUEUES)}")
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError("concurrency must be 1 or more")
        if self.autoscale_range is not None:
            high, low = self.autoscale_range
            if high < 1 or not 0 <= low <= high:
                raise ValueError("autoscale_range is (max, min) with max >= 1, "
                                 "0 <= min <= max")
        if self.autoscales and (self.pool or default_pool()) != "prefork":
            raise ValueError("autoscaling needs the prefork pool")

    @property
    def autoscales(self) -> bool:
        return self.autoscale or self.autoscale_range is not None

    @classmethod
    def from_record(cls, data: Any) -> WorkerSpec | None:
        """The spec saved in a worker's process record, or None when it does not read."""
        try:
            queues, scale = data.get("queues"), data.get("autoscale_range")
            return cls(queues=tuple(queues) if queues else None,
                       concurrency=data.get("concurrency"), pool=data.get("pool"),
                       autoscale=bool(data.get("autoscale")),
                       autoscale_range=(int(scale[0]), int(scale[1])) if scale else None)
        except (AttributeError, TypeError, ValueError, IndexError):
            return None


class WorkerAction(StrEnum):
    """What happened to a local worker; the value is what the Workers page shows."""

    RESTARTED = "restarted"  # by check(), after the worker died
    RESTART_FAILED = "restart failed"
    ADOPTED = "adopted"  # left running by an earlier console
    # The operator's actions.
    ADDED = "added"
    STOPPED = "stopped"
    KILLED = "killed"
    RESTARTED_BY_OPERATOR = "restarted by operator"
    REMOVED = "removed"


@dataclass(frozen=True)
class WorkerEvent:
    time: float  # epoch seconds
    worker_id: str
    pid: int | None  # the process the event is about (the one that exited, for restarts)
    exit_code: int | None  # negative: killed by that signal
    action: WorkerAction


@dataclass(frozen=True)
class LocalWorkerState:
    id: str
    hostname: str  # Celery node name of the current (or last) process
    pid: int | None
    spec: WorkerSpec
    state: StateName
    restarts: int  # automatic restarts after the worker died
    started_at: float | None  # epoch seconds, current (or last) process
    uptime_s: float | None  # None when not running
    cpu_percent: float | None  # worker plus its pool processes; 100 = one core busy
    rss_bytes: int | None  # worker plus its pool processes
    processes: int  # OS processes: the worker and its pool
    active_tasks: int
    exit_code: int | None  # of the last process, once it exited (None: unknown, adopted)
    log_path: Path
    adopted: bool = False  # the current process was left running by an earlier owner


@dataclass
class _Worker:
    id: str
    spec: WorkerSpec
    log_path: Path
    hostname: str = ""
    process: ProcessHandle | None = None
    started_at: float | None = None
    started_mono: float = 0.0
    restarts: int = 0
    wanted: bool = True  # False once the operator stopped or killed it
    stopping: bool = False  # a warm stop was asked and the process has not exited yet
    generation: int = 0  # bumped by every operator action; a stale restart gives way
    exit_code: int | None = None
    died_noticed: bool = False
    restart_at: float = 0.0
    quick_exits: int = 0
    online: bool = False
    active: int = 0
    samplers: dict[int, psutil.Process] = field(default_factory=dict)

    def alive(self) -> bool:
        return self.process is not None and self.process.running()


class Supervisor:
    def __init__(self, settings: Settings, workers: int = 1, concurrency: int | None = None,
                 pool: str | None = None, queues: list[str] | None = None, *,
                 min_processes: int = DEFAULT_MIN_PROCESSES,
                 max_processes: int = DEFAULT_MAX_PROCESSES, autoscale: bool = False,
                 stop_timeout: float = STOP_TIMEOUT_S, nice: int = 0) -> None:
        if not 0 <= min_processes <= max_processes or max_processes < 1:
            raise ValueError(f"min_processes ({min_processes}) must be at most "
                             f"max_processes ({max_processes})")
        self.settings = settings
        self.workers = workers  # how many start() launches
        self.default_spec = WorkerSpec(tuple(queues) if queues else None, concurrency, pool,
                                       autoscale)
        self.min_processes = min_processes
        self.max_processes = max_processes
        self.stop_timeout = stop_timeout
        self.nice = nice  # CPU priority of the workers: lower (higher nice) yields the CPU
        # Set when we started (or adopted) them: stop() stops them.
        self.own_redis: ProcessHandle | None = None
        self.own_gateway: ProcessHandle | None = None
        self.own_receiver: ProcessHandle | None = None
        self._lock = threading.RLock()
        self._workers: dict[str, _Worker] = {}
        self._ids = itertools.count(1)
        self._events: deque[WorkerEvent] = deque(maxlen=EVENTS_KEPT)
        self._broker: tuple[str, Any, Celery] | None = None  # (url, redis client, app)

    # --- services and the whole set -----------------------------------------------------

    def start(self) -> None:
        """Adopt what an earlier supervisor of this data dir left running, start the
        services it needs, then default workers until ``workers`` run."""
        self.adopt_orphans()
        self.start_services()
        for _ in range(self.workers - len(self.running)):
            self.add_worker(self.default_spec)

    def runs_gateway(self) -> bool:
        """The settings send through the sandbox gateway of this data dir."""
        return self.settings.sms_provider == "sandbox" and not self.settings.sms_gateway_url

    def runs_receiver(self) -> bool:
        """A receiver on RELAYDESK_RECEIVER_PORT is asked for, or the gateway run here has
        reports to post (the embedded default: on a free port)."""
        return self.settings.receiver_port is not None or self.runs_gateway()

    def adopt_orphans(self) -> list[str]:
        """Take over what an earlier console or supervisor of this data dir left running
        when it died without closing (Redis, receiver, gateway, workers): from now on they
        are this supervisor's, stopped by stop(). Returns the ids of the adopted workers."""
        if not self.settings.redis_url and self.own_redis is None:
            self.own_redis = self._adopt_service("redis")
        if self.runs_receiver() and self.own_receiver is None:
            self.own_receiver = self._adopt_service("receiver")
        if self.runs_gateway() and self.own_gateway is None:
            self.own_gateway = self._adopt_service("gateway")
        return self.adopt_workers()

    def start_services(self) -> None:
        """The embedded Redis, the receiver and the sandbox gateway, when used and not yet
        running, in that order: the receiver stores reports in Redis, and the gateway is
        started with --reports-url pointing at the receiver."""
        data_dir = self.settings.data_dir
        if not self.settings.redis_url:
            redis_process, _ = EmbeddedRedis.for_settings(self.settings).start()
            if redis_process is not None:
                # EmbeddedRedis.start() returns a process only when it started one.
                self.own_redis = ChildProcess(redis_process)
                process_records.record_process(data_dir, "redis", "redis", redis_process.pid)
        reports: str | None = None
        if self.runs_receiver():
            receiver, reports = LocalReceiver.for_settings(self.settings).start(self.settings)
            if receiver is not None:  # recorded by LocalReceiver.start()
                self.own_receiver = ChildProcess(receiver)
        if self.runs_gateway():
            self._start_gateway(reports)

    def _start_gateway(self, reports: str | None) -> None:
        gateway = LocalGateway.for_settings(self.settings)
        port: int | None = None
        if reports and self.own_gateway is not None and self.own_gateway.running() and \
                gateway.reports_url() != reports:
            # Adopted from an owner that ran it without this receiver (a command line run
            # before the console): run it again, reporting, on the same port, so that
            # workers holding its URL keep it.
            port = urlsplit(gateway.url() or "").port
            log.info("restarting the sandbox gateway (pid %s) to post its delivery reports to "
                     "the receiver", self.own_gateway.pid)
            self._stop_service("gateway", self.own_gateway)
            self.own_gateway = None
        process, _ = gateway.start(self.settings, port=port)
        if process is not None:  # recorded by LocalGateway.start()
            self.own_gateway = ChildProcess(process)

    def adopt_workers(self) -> list[str]:
        """Take over the local workers of this data dir whose supervisor is gone; returns
        their ids. Each keeps its id, name, spec and log; from now on it is restarted when
        it dies and stopped with the others."""
        adopted = []
        with self._lock:
            known = {w.process.pid for w in self._workers.values() if w.process is not None}
            for record in process_records.read_records(self.settings.data_dir, "worker"):
                if record.pid in known:
                    continue
                process = process_records.orphan(record, self.settings.data_dir)
                if process is None:
                    continue
                adopted.append(self._adopt_worker(record, process))
        return adopted

    @property
    def restarts(self) -> int:
        with self._lock:
            return sum(w.restarts for w in self._workers.values())

    @property
    def running(self) -> list[_Worker]:
        """The workers whose process is alive."""
        with self._lock:
            return [w for w in self._workers.values() if w.alive()]

    def stop(self) -> None:
        """Warm shutdown: workers finish their current task, then the owned services stop."""
        with self._lock:
            workers = list(self._workers.values())
            for worker in workers:
                worker.generation += 1
                worker.wanted = False
                if worker.alive():
                    worker.stopping = True
                    self._ask_to_stop(worker)
        deadline = time.monotonic() + self.stop_timeout
        for worker in workers:
            if worker.process is not None and \
                    not worker.process.wait(max(deadline - time.monotonic(), 0.1)):
                log.warning("worker %s did not stop within %s s; killing it",
                            worker.id, self.stop_timeout)
                worker.process.kill_tree()
        with self._lock:
            for worker in workers:
                self._reap(worker)
        # The gateway before the receiver it posts to, the receiver before its Redis.
        self._stop_service("gateway", self.own_gateway)
        self.own_gateway = None
        self._stop_service("receiver", self.own_receiver)
        self.own_receiver = None
        if self.own_redis is not None:
            EmbeddedRedis.for_settings(self.settings).stop()  # SHUTDOWN flushes the AOF
            self.own_redis.wait(10)
            process_records.forget_record(self.settings.data_dir, "redis", self.own_redis.pid)
            self.own_redis = None
        self._close_broker()

    def owns_services(self) -> bool:
        """A Redis, receiver or gateway this supervisor started (or adopted) still runs."""
        return any(p is not None and p.running()
                   for p in (self.own_redis, self.own_receiver, self.own_gateway))

    def _stop_service(self, role: str, process: ProcessHandle | None) -> None:
        """Stop a gateway or receiver this supervisor owns (SIGTERM: a clean shutdown)."""
        if process is not None:
            process.terminate()
            if not process.wait(10):
                log.warning("the %s (pid %s) did not stop within 10 s; killing it", role,
                            process.pid)
                process.kill_tree()
            process_records.forget_record(self.settings.data_dir, role, process.pid)

    # --- operator actions ---------------------------------------------------------------

    def add_worker(self, spec: WorkerSpec | None = None) -> str:
        """Start one more local worker; returns its id, e.g. "local-3"."""
        with self._lock:
            worker_id = f"local-{next(self._ids)}"
            logs = self.settings.data_dir / "logs"
            worker = _Worker(worker_id, spec or self.default_spec,
                             logs / f"worker-{worker_id}.log")
            self._spawn(worker)
            self._workers[worker_id] = worker
            self._event(worker, WorkerAction.ADDED)
            return worker_id

    def stop_worker(self, worker_id: str, wait_s: float = 0.0) -> int | None:
        """Warm stop (current tasks finish); the worker stays stopped. Returns the exit
        code if it exited within ``wait_s``, else None (the snapshot shows "stopping")."""
        with self._lock:
            worker = self._get(worker_id)
            worker.generation += 1
            worker.wanted = False
            process = worker.process
            if worker.alive():
                worker.stopping = True
                self._ask_to_stop(worker)
            self._event(worker, WorkerAction.STOPPED)
        if process is None:
            return None
        if wait_s > 0:
            process.wait(wait_s)
        return process.exit_code()

    def kill_worker(self, worker_id: str) -> int | None:
        """SIGKILL the worker and its pool processes; it stays stopped. Returns its exit
        code."""
        with self._lock:
            worker = self._get(worker_id)
            worker.generation += 1
            worker.wanted = False
            process = worker.process
            self._event(worker, WorkerAction.KILLED)
        if process is None:
            return None
        process.kill_tree()
        with self._lock:
            self._reap(worker)
        return process.exit_code()

    def restart_worker(self, worker_id: str) -> None:
        """Warm stop (killing it after the stop timeout), then start it again with the same
        spec. Also starts a stopped or dead worker. Blocks while the old process finishes
        its tasks: call it from a background thread."""
        with self._lock:
            worker = self._get(worker_id)
            worker.generation += 1
            generation = worker.generation
            worker.wanted = True
            process = worker.process
            if worker.alive():
                worker.stopping = True
                self._ask_to_stop(worker)
        if process is not None and process.running() and not process.wait(self.stop_timeout):
            log.warning("worker %s did not stop within %s s; killing it", worker_id,
                        self.stop_timeout)
            process.kill_tree()
        with self._lock:
            if worker.generation != generation or worker_id not in self._workers:
                return  # another action on this worker came in meanwhile: it decides
            self._reap(worker)
            self._spawn(worker)
            self._event(worker, WorkerAction.RESTARTED_BY_OPERATOR)

    def remove_worker(self, worker_id: str) -> None:
        """Forget a worker that is not running (stop or kill it first)."""
        with self._lock:
            worker = self._get(worker_id)
            if worker.alive():
                raise RuntimeError(f"worker {worker_id} still runs: stop or kill it first")
            self._reap(worker)
            del self._workers[worker_id]
            self._event(worker, WorkerAction.REMOVED)

    # --- polling -------------------------------------------------------------------------

    def check(self) -> list[WorkerEvent]:
        """Restart workers that died unexpectedly (not ones the operator stopped or
        killed); call this periodically. Returns the events it recorded."""
        events: list[WorkerEvent] = []
        now = time.monotonic()
        with self._lock:
            for worker in self._workers.values():
                if worker.process is None or not worker.wanted or worker.stopping:
                    continue
                if worker.process.running():
                    continue
                code = worker.process.exit_code()  # None: an adopted worker's is unknown
                if not worker.died_noticed:
                    self._note_death(worker, code, now)
                if now < worker.restart_at:
                    continue
                pid = worker.process.pid
                log.warning("worker %s (pid %s) exited with %s; restarting", worker.id, pid,
                            code)
                try:
                    self._spawn(worker)
                except OSError as exc:
                    log.error("could not restart worker %s: %s", worker.id, exc)
                    worker.restart_at = now + MAX_RESTART_DELAY_S
                    events.append(self._event(worker, WorkerAction.RESTART_FAILED, pid, code))
                    continue
                worker.restarts += 1
                events.append(self._event(worker, WorkerAction.RESTARTED, pid, code))
        return events

    def snapshot(self, probe_timeout: float = PROBE_TIMEOUT_S) -> list[LocalWorkerState]:
        """Every local worker: state, pid, restarts, CPU and memory of its process tree.

        Costs one Redis MGET of the workers' heartbeats and, when any is online, one
        ``inspect active`` round trip to them (milliseconds; at most ``probe_timeout``),
        plus psutil reads of a few processes. When Redis cannot be reached the workers
        keep their last known online/busy state.
        """
        with self._lock:
            running = {w.hostname: w.process.pid for w in self._workers.values()
                       if w.process is not None and w.alive()}
        probe = self._probe(running, probe_timeout)
        now = time.time()
        with self._lock:
            return [self._state(worker, probe, now) for worker in self._workers.values()]

    def events(self) -> list[WorkerEvent]:
        """Recent worker events, oldest first (the last EVENTS_KEPT)."""
        with self._lock:
            return list(self._events)

    # --- internals ----------------------------------------------------------------------

    def _get(self, worker_id: str) -> _Worker:
        try:
            return self._workers[worker_id]
        except KeyError:
            raise UnknownWorker(f"no local worker {worker_id!r}") from None

    def _command(self, worker: _Worker) -> list[str]:
        spec = worker.spec
        args = ["worker", "--name", worker.hostname]
        if self.nice:
            args += ["--nice", str(self.nice)]
        if spec.autoscales:
            high, low = spec.autoscale_range or (self.max_processes, self.min_processes)
            args += ["--autoscale", f"{high},{low}"]
        elif spec.concurrency:
            args += ["--concurrency", str(spec.concurrency)]
        if spec.pool:
            args += ["--pool", spec.pool]
        if spec.queues:
            args += ["--queues", ",".join(spec.queues)]
        return relaydesk_command(self.settings, *args)

    def _spawn(self, worker: _Worker) -> None:
        self._reap(worker)  # the previous process's record goes
        worker.hostname = worker_name(worker.id)
        worker.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = self._command(worker)
        with worker.log_path.open("ab") as log_file:
            popen = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log_file,
                                     stderr=log_file, **_own_process_group())
        worker.process = ChildProcess(popen)
        # Written at launch: a later console finds it again if this one dies.
        process_records.record_process(
            self.settings.data_dir, f"worker-{popen.pid}", "worker", popen.pid, command,
            id=worker.id, hostname=worker.hostname, spec=asdict(worker.spec),
            log_path=str(worker.log_path))
        worker.started_at = time.time()
        worker.started_mono = time.monotonic()
        worker.stopping = False
        worker.exit_code = None
        worker.died_noticed = False
        worker.online = False
        worker.active = 0
        worker.samplers = {}

    def _note_death(self, worker: _Worker, code: int | None, now: float) -> None:
        worker.died_noticed = True
        worker.exit_code = code
        quick = now - worker.started_mono < QUICK_EXIT_S
        worker.quick_exits = worker.quick_exits + 1 if quick else 0
        # The first death restarts at once; repeated quick ones wait 2, 4, 8 … 60 s.
        delay = 0.0 if worker.quick_exits <= 1 else \
            min(2.0 ** (worker.quick_exits - 1), MAX_RESTART_DELAY_S)
        worker.restart_at = now + delay

    def _reap(self, worker: _Worker) -> None:
        if worker.process is not None and not worker.process.running():
            worker.exit_code = worker.process.exit_code()
            worker.stopping = False
            process_records.forget_record(self.settings.data_dir,
                                          f"worker-{worker.process.pid}", worker.process.pid)

    def _adopt_worker(self, record: process_records.ProcessRecord,
                      process: psutil.Process) -> str:
        details = record.details
        worker_id = str(details.get("id") or "")
        if not re.fullmatch(r"local-\d+", worker_id) or worker_id in self._workers:
            worker_id = f"local-{next(self._ids)}"
        else:  # new workers are numbered after the adopted ones
            number = int(worker_id.removeprefix("local-"))
            self._ids = itertools.count(max(number + 1, next(self._ids)))
        spec = WorkerSpec.from_record(details.get("spec") or {}) or self.default_spec
        logs = self.settings.data_dir / "logs"
        worker = _Worker(worker_id, spec, Path(str(details.get("log_path") or
                                                   logs / f"worker-{worker_id}.log")),
                         hostname=str(details.get("hostname") or ""),
                         process=AdoptedProcess(process), started_at=process.create_time(),
                         started_mono=time.monotonic())
        self._workers[worker_id] = worker
        process_records.take_over(self.settings.data_dir, record)
        log.info("adopted worker %s (pid %s) left running by an earlier console", worker_id,
                 process.pid)
        self._event(worker, WorkerAction.ADOPTED)
        return worker_id

    def _adopt_service(self, role: str) -> ProcessHandle | None:
        """The data dir's Redis, receiver or gateway, when an earlier owner left it
        running."""
        data_dir = self.settings.data_dir
        for record in process_records.read_records(data_dir, role):
            process = process_records.orphan(record, data_dir)
            if process is None or not self._is_the_service(role, process):
                continue
            process_records.take_over(data_dir, record)
            log.info("adopted the %s (pid %s) left running by an earlier console", role,
                     process.pid)
            return AdoptedProcess(process)
        return None

    def _is_the_service(self, role: str, process: psutil.Process) -> bool:
        """The recorded process is the one serving this data dir now."""
        if role == "redis":
            # Redis rewrites its command line: its name and the data dir's record decide.
            try:
                name = str(process.name())
            except psutil.Error:
                return False
            return name.startswith(("redis-server", "valkey-server")) and \
                EmbeddedRedis.for_settings(self.settings).pid() == process.pid
        service = LocalReceiver.for_settings(self.settings) if role == "receiver" else \
            LocalGateway.for_settings(self.settings)
        return bool(service.pid() == process.pid)

    def _ask_to_stop(self, worker: _Worker) -> None:
        assert worker.process is not None
        if sys.platform == "win32":
            # No SIGTERM on Windows: ask the worker itself through Celery's remote control.
            try:
                _, _, app = self._connect()
                worker_control.shutdown(app, worker.hostname)
            except (worker_control.WorkerControlError, RedisUnavailable, redis.RedisError):
                log.warning("worker %s did not take the shutdown command; terminating it",
                            worker.id)
                worker.process.terminate()
        else:
            worker.process.send_signal(signal.SIGTERM)  # Celery: warm shutdown

    def _event(self, worker: _Worker, action: WorkerAction, pid: int | None = None,
               exit_code: int | None = None) -> WorkerEvent:
        if pid is None and worker.process is not None:
            pid = worker.process.pid
        event = WorkerEvent(time.time(), worker.id, pid, exit_code, action)
        self._events.append(event)
        return event

    def _connect(self) -> tuple[str, Any, Celery]:
        url = self.settings.redis_url or EmbeddedRedis.for_settings(self.settings).url()
        with self._lock:
            if self._broker is None or self._broker[0] != url:
                self._close_broker()
                self._broker = (url, redis_for(url, PROBE), celery_for(url))
            return self._broker

    def _close_broker(self) -> None:
        with self._lock:
            if self._broker is not None:
                self._broker[1].close()
                self._broker = None

    def _probe(self, running: dict[str, int],
               timeout: float) -> tuple[set[str], dict[str, int]] | None:
        """(hostnames with a heartbeat from their current pid, active task counts), or
        None when Redis cannot be asked."""
        if not running:
            return set(), {}
        names = sorted(running)
        try:
            _, client, app = self._connect()
            beats = client.mget([redis_keys.WORKER_HEARTBEAT + name for name in names])
            online = {name for name, beat in zip(names, beats, strict=True)
                      if beat and json.loads(beat).get("pid") == running[name]}
            if not online:
                return online, {}
            replies = app.control.inspect(destination=sorted(online), timeout=timeout,
                                          limit=len(online)).active() or {}
        except (RedisUnavailable, redis.RedisError, OperationalError, ValueError) as exc:
            log.debug("cannot probe the workers: %s", exc)
            return None
        active = {name: len(tasks) for name, tasks in replies.items()
                  if isinstance(tasks, list)}
        return online, active

    def _state(self, worker: _Worker, probe: tuple[set[str], dict[str, int]] | None,
               now: float) -> LocalWorkerState:
        alive = worker.alive()
        if not alive:
            self._reap(worker)
        elif probe is not None:
            online, active = probe
            worker.online = worker.hostname in online
            worker.active = active.get(worker.hostname, 0)
        cpu, rss, count = self._usage(worker) if alive else (None, None, 0)
        state: StateName
        if not alive:
            state = "dead" if worker.wanted and worker.process is not None else "stopped"
        elif worker.stopping:
            state = "stopping"
        elif worker.online:
            state = "busy" if worker.active else "online"
        else:
            state = "starting"
        return LocalWorkerState(
            id=worker.id, hostname=worker.hostname,
            pid=worker.process.pid if worker.process is not None else None,
            spec=worker.spec, state=state, restarts=worker.restarts,
            started_at=worker.started_at,
            uptime_s=now - worker.started_at if alive and worker.started_at else None,
            cpu_percent=cpu, rss_bytes=rss, processes=count,
            active_tasks=worker.active if alive else 0,
            exit_code=None if alive else worker.exit_code, log_path=worker.log_path,
            adopted=worker.process is not None and worker.process.adopted)

    @staticmethod
    def _usage(worker: _Worker) -> tuple[float | None, int | None, int]:
        """CPU % (since the previous snapshot; 0 on the first) and RSS of the worker and
        its descendants. The psutil objects are kept so that CPU % has a baseline."""
        assert worker.process is not None
        try:
            main = worker.samplers.get(worker.process.pid) or psutil.Process(worker.process.pid)
            tree = [main, *main.children(recursive=True)]
        except psutil.Error:
            return None, None, 0
        # Reuse the objects of the previous snapshot (a reused pid is a new process).
        samplers = {p.pid: old if (old := worker.samplers.get(p.pid)) == p else p
                    for p in tree}
        cpu, rss, count = 0.0, 0, 0
        for process in samplers.values():
            try:
                with process.oneshot():
                    cpu += process.cpu_percent(None)
                    rss += process.memory_info().rss
                count += 1
            except psutil.Error:
                continue  # exited meanwhile
        worker.samplers = samplers
        return round(cpu, 1), rss, count


def _own_process_group() -> dict[str, Any]:
    if sys.platform == "win32":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}
