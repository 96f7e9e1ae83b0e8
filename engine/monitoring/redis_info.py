"""What the console's Redis panel shows: is RelayDesk's Redis up, and how big is it.

Read-only and quick: it never starts a server and never raises; a server that is down
or unreachable is reported as not running, with the reason.
"""

from __future__ import annotations

from typing import Any

import redis

from engine.config.masking import mask_url
from engine.config.settings import Settings
from engine.domain.server_advisories import server_identity
from engine.infra.connections import PROBE, redis_for
from engine.infra.embedded_redis import EmbeddedRedis, RedisUnavailable


def embedded_redis_status(settings: Settings) -> dict[str, Any]:
    """The Redis RelayDesk uses: the embedded one of this data dir, or RELAYDESK_REDIS_URL's.

    Keys: embedded (False when RELAYDESK_REDIS_URL is set), running, url (password masked), port,
    pid, version, server_name, server_version, server_warning (see server_identity),
    uptime_s, used_memory_bytes, used_memory_human, maxmemory_policy, keys (in the broker's
    database), error (why it is not running, else None). One round trip, with a
    probe's short timeouts (connections.PROBE).
    """
    server = EmbeddedRedis.for_settings(settings)
    status: dict[str, Any] = {
        "embedded": not settings.redis_url, "running": False, "url": None,
        "port": None if settings.redis_url else server.port(),
        "pid": None, "version": None, "server_name": None, "server_version": None,
        "server_warning": None, "uptime_s": None, "used_memory_bytes": None,
        "used_memory_human": None, "maxmemory_policy": None, "keys": None, "error": None,
    }
    try:
        url = settings.redis_url or _embedded_url(server)
    except RedisUnavailable as exc:
        status["error"] = str(exc)
        return status
    status["url"] = mask_url(url)
    client = redis_for(url, PROBE)
    try:
        pipe = client.pipeline(transaction=False)
        pipe.info("server")
        pipe.info("memory")
        pipe.dbsize()
        server_info, memory, keys = pipe.execute()
    except (redis.RedisError, OSError) as exc:
        status["error"] = f"not answering: {exc}"
        return status
    finally:
        client.close()
    status.update(
        running=True, port=server_info.get("tcp_port", status["port"]),
        pid=server_info.get("process_id"), version=server_info.get("redis_version"),
        **server_identity(server_info), uptime_s=server_info.get("uptime_in_seconds"),
        used_memory_bytes=memory.get("used_memory"),
        used_memory_human=memory.get("used_memory_human"),
        maxmemory_policy=memory.get("maxmemory_policy"), keys=keys)
    return status


def _embedded_url(server: EmbeddedRedis) -> str:
    # Only read what is there: url() would create the password file of a fresh data dir.
    if not server.port() or not server.password_file.exists():
        raise RedisUnavailable("the embedded Redis has never been started in this data dir")
    return server.url()

