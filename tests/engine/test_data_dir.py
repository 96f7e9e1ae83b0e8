"""The data dir is the operator's alone: created 0700 with every file in it 0600 under the
usual umask (022), tightened when an older one is opened, and a data dir that cannot be
written is one clear error, not a traceback."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
from pathlib import Path

import pytest

from tests.support import RELAYDESK, wait_for, write_contacts

USUAL_UMASK = 0o022  # what an operator's shell has: new files 0644, new dirs 0755


def relaydesk(data_dir: Path, *args: str, timeout: float = 180
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RELAYDESK, "--data-dir", str(data_dir), *args], capture_output=True,
                          text=True, timeout=timeout, check=False, umask=USUAL_UMASK)


def not_private(data_dir: Path) -> list[str]:
    """Everything under ``data_dir`` (itself included) that others could read."""
    found = []
    for path in [data_dir, *data_dir.rglob("*")]:
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            continue
        wanted = 0o700 if stat.S_ISDIR(info.st_mode) else 0o600
        if stat.S_IMODE(info.st_mode) != wanted:
            found.append(f"{oct(stat.S_IMODE(info.st_mode))} {path.relative_to(data_dir)}")
    return found


def test_a_working_data_dir_is_private_under_the_usual_umask(
        tmp_path: Path, fast_pipeline: None) -> None:
    data = tmp_path / "data"
    contacts = write_contacts(tmp_path / "contacts.csv", [
        ("Amina", "0712000001", "5000", "500", "2027-01-01", "")])
    imported = relaydesk(data, "contacts", "import", str(contacts))
    assert imported.returncode == 0, imported.stderr
    supervise = subprocess.Popen([RELAYDESK, "--data-dir", str(data), "supervise"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 umask=USUAL_UMASK)
    try:
        wait_for(lambda: list((data / "logs").glob("worker-*.log")), timeout=90,
                 message="the supervised worker's log")
        sent = relaydesk(data, "campaign", "send", "--template", "Dear #name", "--wait")
        assert sent.returncode == 0, sent.stderr
        exported = relaydesk(data, "failed", "export", "--out", str(tmp_path / "failed.csv"))
        assert exported.returncode == 0, exported.stderr
    finally:
        supervise.send_signal(signal.SIGTERM)
        assert supervise.wait(90) == 0
    names = {str(p.relative_to(data)) for p in data.rglob("*")}
    # What holds private data is all there: the database, logs, Redis's files, locks.
    assert {"relaydesk.db", "redis/password", "redis/appendonlydir", "logs",
            "gateway"} <= names
    assert any(n.endswith(".lock") for n in names)
    assert not_private(data) == []
    assert stat.S_IMODE((tmp_path / "failed.csv").stat().st_mode) == 0o600


def test_an_existing_data_dir_is_made_private_when_opened(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert relaydesk(data, "db", "upgrade").returncode == 0
    # As an earlier version left it: readable by everyone.
    (data / "logs").mkdir()
    (data / "logs" / "console.log").write_text("log line\n")
    (data / "redis" / "appendonlydir").mkdir(parents=True)
    (data / "redis" / "appendonlydir" / "appendonly.aof.1.incr.aof").write_text("*1\r\n")
    for path in [data, *data.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    # The operator's own things are theirs: left as they are, links not followed.
    (data / "notes.txt").write_text("mine\n")
    (data / "notes.txt").chmod(0o644)
    outside = tmp_path / "shared-report.txt"
    outside.write_text("shared\n")
    outside.chmod(0o644)
    (data / "logs" / "report-link").symlink_to(outside)
    listed = relaydesk(data, "contacts", "list")
    assert listed.returncode == 0, listed.stderr
    assert [p for p in not_private(data) if p != "0o644 notes.txt"] == []
    assert stat.S_IMODE((data / "notes.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE(outside.stat().st_mode) == 0o644


@pytest.mark.parametrize("where", ["under-a-file", "proc"])
def test_an_unwritable_data_dir_is_one_clear_error(tmp_path: Path, where: str) -> None:
    (tmp_path / "a-file").write_text("not a folder\n")
    data = tmp_path / "a-file" / "data" if where == "under-a-file" else Path("/proc/1/data")
    for args in (("contacts", "list"), ("settings",)):
        result = relaydesk(data, *args)
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        [line] = result.stderr.strip().splitlines()
        assert line.startswith(f"Error: cannot use the data dir {data}: ")
        assert "--data-dir" in line
    assert not data.exists()


def test_the_data_dir_setting_is_checked_like_the_option(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder\n")
    result = subprocess.run([RELAYDESK, "contacts", "list"], capture_output=True, text=True,
                            timeout=60, check=False,
                            env={**os.environ, "RELAYDESK_DATA_DIR": str(tmp_path / "a-file")})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"cannot use the data dir {tmp_path / 'a-file'}" in result.stderr


def test_a_shared_temp_dir_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    result = relaydesk(shared, "contacts", "list")
    assert result.returncode == 1
    assert "shared directory" in result.stderr
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777  # not taken over
