"""The engine handles the console works with. Every method here may block: call them only
through :class:`desktop.background.Background`, never on the UI thread."""

from __future__ import annotations

import subprocess
import threading

import redis

from engine.celery_app import configure
from engine.db import Database, open_database
from engine.embedded_redis import EmbeddedRedis, redis_url
from engine.local_gateway import LocalGateway
from engine.settings import Settings

REDIS_TIMEOUT_S = 3.0


class Services:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._redis: redis.Redis | None = None
        self._redis_url: str | None = None
        self._own_redis: subprocess.Popen[bytes] | None = None
        self._own_gateway: subprocess.Popen[bytes] | None = None

    def db(self) -> Database:
        return open_database(self.settings)

    def redis(self) -> redis.Redis:
        """A client for the configured Redis (RedisUnavailable when the embedded one is down)."""
        url = redis_url(self.settings, start=False)
        with self._lock:
            if self._redis is None or url != self._redis_url:
                if self._redis is not None:
                    self._redis.close()
                self._redis = redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT_S,
                                                   socket_connect_timeout=REDIS_TIMEOUT_S)
                self._redis_url = url
                configure(url)  # campaigns are published through Celery
            return self._redis

    def start_local_services(self) -> None:
        """Start the embedded Redis and the sandbox gateway where the settings use them
        (and are not running yet); the console then owns them."""
        with self._lock:
            if not self.settings.redis_url and self._own_redis is None:
                self._own_redis, _ = EmbeddedRedis.for_settings(self.settings).start()
            if self.settings.sms_provider == "sandbox" and not self.settings.sms_gateway_url \
                    and self._own_gateway is None:
                self._own_gateway, _ = LocalGateway.for_settings(self.settings).start(
                    self.settings)

    def stop_local_services(self) -> None:
        """Stop the Redis and gateway this console started (not ones it found running)."""
        with self._lock:
            if self._own_gateway is not None:
                self._own_gateway.terminate()
                self._own_gateway.wait(10)
                self._own_gateway = None
            if self._own_redis is not None:
                EmbeddedRedis.for_settings(self.settings).stop()  # flushes its AOF
                self._own_redis.wait(10)
                self._own_redis = None

    def close(self) -> None:
        with self._lock:
            if self._redis is not None:
                self._redis.close()
                self._redis = None
