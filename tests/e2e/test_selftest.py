"""``relaydesk selftest`` from the source install: the same check the packaged app runs
(tests/frozen runs it from the bundle)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import psutil
import urllib3

from tests.support import run_cli


def processes_using(directory: Path) -> list[str]:
    """Command lines of live processes that name ``directory`` (Redis, gateway, worker)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if str(directory) in cmdline:
            found.append(cmdline)
    return found


def answers(url: str) -> bool:
    try:
        urllib3.request("GET", url, timeout=2.0, retries=False)
    except urllib3.exceptions.HTTPError:
        return False
    return True


def test_selftest_sends_both_campaigns_exactly_once_and_stops_everything(
        tmp_path: Path) -> None:
    # The operator's settings must not reach the test: a Redis, database and provider
    # that would all fail, and a config file that does not parse.
    bad_config = tmp_path / "broken.toml"
    bad_config.write_text("this is not [toml\n")
    hostile = {"RELAYDESK_REDIS_URL": "redis://127.0.0.1:1/0",
               "RELAYDESK_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
               "RELAYDESK_SMS_PROVIDER": "twilio", "RELAYDESK_BULK_THRESHOLD": "1000",
               "RELAYDESK_PACING_INDIVIDUAL_S": "3600",
               "RELAYDESK_CONFIG_FILE": str(bad_config)}
    result = run_cli("selftest", "--json", "--keep-data", env=hostile)
    assert result.returncode == 0, result.stdout + result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    data_dir = Path(report["data_dir"])
    try:
        assert report["ok"] is True
        assert report["frozen"] is False
        assert (report["expected"], report["delivered_once"]) == (130, 130)
        assert (report["missing"], report["duplicates"], report["unexpected"]) == (0, 0, 0)
        routes = {c["route"]: c for c in report["campaigns"]}
        assert routes["bulk"]["recipients"] == routes["bulk"]["sent"] == 120
        assert routes["individual"]["recipients"] == routes["individual"]["sent"] == 10
        assert all(c["wrong_body"] == 0 and c["ok"] for c in report["campaigns"])

        # Its own data dir, on the sandbox: the gateway's record is in there ...
        gateway = json.loads((data_dir / "data" / "gateway" / "gateway.json").read_text())
        redis_state = json.loads((data_dir / "data" / "redis" / "server.json").read_text())
        # ... and everything it started is stopped again.
        assert processes_using(data_dir) == []
        assert not psutil.pid_exists(redis_state["pid"]) or \
            psutil.Process(redis_state["pid"]).status() == psutil.STATUS_ZOMBIE
        assert not answers(gateway["url"] + "/stats")
        assert "selftest: stopping" in result.stderr
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def test_selftest_without_keep_data_removes_its_data_dir() -> None:
    result = run_cli("selftest")
    assert result.returncode == 0, result.stdout + result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("selftest ok: 130/130 messages delivered exactly once")
    data_line = next(line for line in result.stderr.splitlines() if "data dir" in line)
    data_dir = Path(data_line.split("data dir ", 1)[1]).parent
    assert not data_dir.exists()


def test_a_worker_that_cannot_start_fails_the_selftest_and_everything_is_stopped(
        tmp_path: Path) -> None:
    # Python runs sitecustomize in every process it starts: this one makes only the
    # worker process exit at start, as a packaged app missing a module would.
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(
        "import sys\n"
        "if 'worker' in sys.argv:\n"
        "    sys.exit('worker refused to start (test)')\n")
    result = run_cli("selftest", "--json", "--timeout", "30", env={"PYTHONPATH": str(hooks)})
    assert result.returncode == 1
    report = json.loads(result.stdout)
    data_dir = Path(report["data_dir"])  # kept for a look, as after any failure
    try:
        assert report["ok"] is False
        assert report["error"].startswith("the worker exited at start")
        assert "worker refused to start (test)" in report["error"]  # the log's tail
        assert report["campaigns"] == []
        assert processes_using(data_dir) == []
        gateway = json.loads((data_dir / "data" / "gateway" / "gateway.json").read_text())
        assert not answers(gateway["url"] + "/stats")
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
