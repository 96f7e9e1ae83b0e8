"""The engine handles the console works with. Every method here may block: call them only
through :class:`desktop.background.Background`, never on the UI thread."""

from __future__ import annotations

import threading

import redis
from celery import Celery

from engine.config.settings import Settings
from engine.infra.connections import CONSOLE, celery_for, redis_for
from engine.infra.embedded_redis import redis_url
from engine.infra.worker_registry import live_workers
from engine.operations.supervisor import Supervisor
from engine.store.db import Database, open_database

WORKER_NICE = 10


class Services:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._redis: redis.Redis | None = None
        self._celery: Celery | None = None
        self.starting = False  # start_local_pipeline() is under way
        # Workers yield the CPU to the window: a busy machine must not freeze the console.
        self.supervisor = Supervisor(settings, min_processes=settings.min_processes,
                                     max_processes=settings.max_processes, nice=WORKER_NICE)

    @property
    def settings(self) -> Settings:
        return self._settings

    @settings.setter
    def settings(self, settings: Settings) -> None:
        """New settings (saved on the Settings page): new connections and workers use them."""
        self._settings = settings
        self.forget_redis()
        self.supervisor.settings = settings
        self.supervisor.min_processes = settings.min_processes
        self.supervisor.max_processes = settings.max_processes

    def db(self) -> Database:
        return open_database(self.settings)

    def redis(self) -> redis.Redis:
        """A client for the configured Redis (RedisUnavailable when the embedded one is down).
        Kept until forget_redis(): finding the embedded server's URL costs a ping."""
        return self._connect()[0]

    def celery(self) -> Celery:
        """The Celery app pointed at that Redis: campaigns are published and workers are
        controlled through it."""
        return self._connect()[1]

    def _connect(self) -> tuple[redis.Redis, Celery]:
        with self._lock:
            if self._redis is None or self._celery is None:
                url = redis_url(self.settings, start=False)
                self._redis = redis_for(url, CONSOLE)
                self._celery = celery_for(url)
            return self._redis, self._celery

    def forget_redis(self) -> None:
        """Look the server up again next time (it stopped, moved, or the settings changed)."""
        with self._lock:
            if self._redis is not None:
                self._redis.close()
                self._redis = None

    def start_local_services(self) -> None:
        """Start the embedded Redis, the report receiver and the sandbox gateway where the
        settings use them (and they are not running yet); the console's supervisor then
        owns them. The receiver runs with RELAYDESK_RECEIVER_PORT, or on a free port for the
        embedded sandbox gateway, whose delivery reports and replies it takes in."""
        self.supervisor.start_services()

    def start_local_pipeline(self) -> int:
        """The services, plus the configured number of workers when none is online on this
        Redis (a console reopened over workers it left running adds none). Returns how many
        workers it started."""
        self.starting = True
        try:
            # What a console that died left running is this console's again.
            self.supervisor.adopt_orphans()
            self.start_local_services()
            if live_workers(self.redis()):
                return 0
            for _ in range(self.settings.workers):
                self.supervisor.add_worker()
            return self.settings.workers
        finally:
            self.starting = False

    def owns_anything(self) -> bool:
        """Workers, or a Redis, receiver or gateway, that this console started and that
        still run."""
        return bool(self.supervisor.running) or self.supervisor.owns_services()

    def stop_local_services(self) -> None:
        """Warm-stop the local workers, then the gateway, receiver and Redis this console
        started (not ones it found running)."""
        self.supervisor.stop()

    def close(self) -> None:
        self.forget_redis()
