"""Process records: what a later console may adopt, and what it must leave alone (a pid
reused by an unrelated process, a process another live supervisor owns)."""

from __future__ import annotations

import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from engine.config.settings import load_settings
from engine.infra import process_records
from engine.infra.process_records import ProcessRecord, orphan, read_records, write_record
from engine.operations.supervisor import Supervisor

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen[bytes]]:
    """A process that has nothing to do with RelayDesk."""
    process = subprocess.Popen(SLEEPER)
    yield process
    process.kill()
    process.wait()


def record_for(directory: Path, process: subprocess.Popen[bytes], **changes: object
               ) -> ProcessRecord:
    """A worker record as a supervisor that has since died wrote it."""
    record = ProcessRecord(f"worker-{process.pid}", "worker", process.pid,
                           psutil.Process(process.pid).create_time(), str(directory),
                           owner_pid=2**22 + 1, owner_create_time=0.0, command=SLEEPER,
                           details={"id": "local-1", "hostname": "relaydesk-local-1-ab@x"})
    record = replace(record, **changes)  # type: ignore[arg-type]
    write_record(directory, record)
    return record


def test_a_recorded_orphan_is_recognised(isolated_env: Path,
                                         stranger: subprocess.Popen[bytes]) -> None:
    record = record_for(isolated_env, stranger)
    found = orphan(record, isolated_env)
    assert found is not None
    assert found.pid == stranger.pid
    directory = isolated_env / "run"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / f"{record.name}.json").stat().st_mode) == 0o600


def test_a_reused_pid_is_never_adopted(isolated_env: Path,
                                       stranger: subprocess.Popen[bytes]) -> None:
    # The recorded process exited and the pid went to another: its start time differs.
    record = record_for(isolated_env, stranger,
                        create_time=psutil.Process(stranger.pid).create_time() - 5)
    assert orphan(record, isolated_env) is None
    assert read_records(isolated_env, "worker") == []  # the stale record is dropped


def test_another_command_line_is_never_adopted(isolated_env: Path,
                                               stranger: subprocess.Popen[bytes]) -> None:
    record = record_for(isolated_env, stranger,
                        command=[sys.executable, "-m", "engine", "worker"])
    assert orphan(record, isolated_env) is None


def test_a_process_with_a_live_owner_is_left_to_it(isolated_env: Path,
                                                   stranger: subprocess.Popen[bytes]) -> None:
    me = psutil.Process()
    record = record_for(isolated_env, stranger, owner_pid=me.pid,
                        owner_create_time=me.create_time())
    assert orphan(record, isolated_env) is None


def test_another_data_dirs_process_is_not_adopted(isolated_env: Path, tmp_path: Path,
                                                  stranger: subprocess.Popen[bytes]) -> None:
    record = record_for(isolated_env, stranger, data_dir=str(tmp_path / "elsewhere"))
    assert orphan(record, isolated_env) is None


def test_the_supervisor_neither_adopts_nor_kills_an_unrelated_process(
        isolated_env: Path, stranger: subprocess.Popen[bytes]) -> None:
    record_for(isolated_env, stranger,
               create_time=psutil.Process(stranger.pid).create_time() + 3)
    sup = Supervisor(load_settings(), workers=0)
    assert sup.adopt_workers() == []
    assert sup.snapshot() == []
    sup.stop()
    assert stranger.poll() is None  # still running: not ours to stop


def test_forget_record_leaves_a_newer_record_alone(isolated_env: Path,
                                                   stranger: subprocess.Popen[bytes]) -> None:
    record = record_for(isolated_env, stranger)
    process_records.forget_record(isolated_env, record.name, pid=record.pid + 1)
    assert read_records(isolated_env, "worker") == [record]
    process_records.forget_record(isolated_env, record.name, pid=record.pid)
    assert read_records(isolated_env, "worker") == []
