"""Records of the long-running processes RelayDesk starts for a data dir (workers, the
sandbox gateway, the callback receiver, the embedded Redis), so that a later console or
``relaydesk supervise`` can take back what an earlier one left running when it died without closing.

One small JSON file per process in ``DATA_DIR/run``, written when it is launched: its pid,
its creation time, its command line, the data dir, and the process that owns it. A record
is trusted only when psutil finds that pid with the same creation time (a reused pid has
another), the same command line where the process keeps it, and no live owner: a process
another supervisor still looks after is never taken over, and an unrelated process that
happens to have the pid is never adopted, stopped or killed.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import psutil

from engine.config.config_document import write_private_file

RECORDS_DIR = "run"
# psutil derives creation times from boot time plus clock ticks: equal for one process,
# whatever reads it; a process that reused the pid started at least a tick later.
SAME_START_S = 0.01


@dataclass(frozen=True)
class ProcessRecord:
    name: str  # the file's stem: "worker-local-1", "gateway", "receiver", "redis"
    role: str  # "worker", "gateway", "receiver" or "redis"
    pid: int
    create_time: float
    data_dir: str
    owner_pid: int
    owner_create_time: float
    # What the process was started with; None for one that rewrites its title (Redis).
    command: list[str] | None = None
    details: dict[str, Any] = field(default_factory=dict)  # e.g. a worker's id and spec


def records_dir(data_dir: Path) -> Path:
    return data_dir / RECORDS_DIR


def _this_process() -> tuple[int, float]:
    return os.getpid(), psutil.Process().create_time()


def record_process(data_dir: Path, name: str, role: str, pid: int,
                   command: list[str] | None = None, **details: Any) -> ProcessRecord | None:
    """Write the record of a process this process just started (and now owns). None when
    the process is already gone."""
    try:
        created = psutil.Process(pid).create_time()
    except psutil.Error:
        return None
    owner_pid, owner_created = _this_process()
    record = ProcessRecord(name, role, pid, created, str(data_dir), owner_pid, owner_created,
                           command, details)
    write_record(data_dir, record)
    return record


def take_over(data_dir: Path, record: ProcessRecord) -> ProcessRecord:
    """Make this process the owner of an adopted process (a later adopter then sees a live
    owner and leaves it alone)."""
    owner_pid, owner_created = _this_process()
    mine = replace(record, owner_pid=owner_pid, owner_create_time=owner_created)
    write_record(data_dir, mine)
    return mine


def write_record(data_dir: Path, record: ProcessRecord) -> None:
    path = records_dir(data_dir) / f"{record.name}.json"
    write_private_file(path, json.dumps(asdict(record)))  # readers never see half a record


def forget_record(data_dir: Path, name: str, pid: int | None = None) -> None:
    """Remove a record (only if it is still about ``pid``, when given)."""
    path = records_dir(data_dir) / f"{name}.json"
    if pid is not None:
        record = _read(path)
        if record is None or record.pid != pid:
            return
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _read(path: Path) -> ProcessRecord | None:
    try:
        data = json.loads(path.read_text())
        return ProcessRecord(**data)
    except (OSError, ValueError, TypeError):
        return None


def read_records(data_dir: Path, role: str) -> list[ProcessRecord]:
    directory = records_dir(data_dir)
    if not directory.is_dir():
        return []
    records = [_read(path) for path in sorted(directory.glob("*.json"))]
    return [r for r in records if r is not None and r.role == role]


def same_process(pid: int, create_time: float) -> psutil.Process | None:
    """The running process with this pid and creation time, or None (gone, a zombie, or
    the pid now belongs to another process)."""
    try:
        process = psutil.Process(pid)
        if abs(process.create_time() - create_time) > SAME_START_S:
            return None
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
    except psutil.Error:
        return None
    return process


def orphan(record: ProcessRecord, data_dir: Path) -> psutil.Process | None:
    """The recorded process when it still runs, is the one recorded, belongs to this data
    dir, and its owner is gone; else None (and a stale record is removed)."""
    if Path(record.data_dir) != data_dir:
        return None  # a data dir copied from elsewhere: not ours to touch
    process = same_process(record.pid, record.create_time)
    if process is None:
        forget_record(data_dir, record.name, record.pid)
        return None
    if record.command is not None:
        try:
            if process.cmdline() != record.command:
                return None
        except psutil.Error:
            return None
    if same_process(record.owner_pid, record.owner_create_time) is not None:
        return None  # still looked after by the process that started (or adopted) it
    return process
