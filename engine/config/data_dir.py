"""The data dir holds names, phone numbers, pledge amounts, message bodies, the Redis
append-only file and its password: it is the operator's alone (0700, every file 0600).

``open_data_dir`` runs once per process, before anything is written there: it creates the
dir, makes this process (and every process it starts: workers, Redis, the gateway) create
private files from then on, and tightens what an earlier version left readable.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from engine.domain.errors import OperatorError

log = logging.getLogger(__name__)

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
# Group and others get nothing in whatever this process creates from now on: the database,
# its -wal and -shm files, logs, lock files, Redis's files, exports.
PRIVATE_UMASK = 0o077
# What RelayDesk keeps in a data dir (subdirectories with everything in them). Anything
# else there was put by the operator, and is left as it is.
OWNED_NAMES = frozenset({"logs", "redis", "gateway", "receiver", "run", "console.ini",
                         "callback_token"})
OWNED_PREFIXES = ("relaydesk.", "worker-")


class DataDirError(OperatorError, RuntimeError):
    """The data dir cannot be created or written; the message says which, why and what to do."""


def open_data_dir(path: Path) -> Path:
    """Create ``path`` if needed (0700), check that this process can write there, make
    every file created from now on private, and make RelayDesk's files already there
    private too. Raises DataDirError when the dir cannot be used."""
    os.umask(PRIVATE_UMASK)
    try:
        path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    except OSError as exc:
        raise _unusable(path, exc) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise _unusable(path, PermissionError(13, "Permission denied"))
    if os.name == "posix":
        _make_private(path)
    return path


def _unusable(path: Path, exc: OSError) -> DataDirError:
    reason = (exc.strerror or type(exc).__name__).lower()
    if isinstance(exc, FileExistsError):
        reason = "a file of that name is in the way"
    return DataDirError(
        f"cannot use the data dir {path}: {reason}. Choose a directory you can write to "
        "with --data-dir DIR or RELAYDESK_DATA_DIR, or fix the permissions of this one.")


def _make_private(path: Path) -> None:
    info = path.lstat()
    if info.st_mode & stat.S_ISVTX:
        # /tmp and the like: other users create files there, and making it 0700 would
        # break them. Refuse rather than keep private data in a shared place.
        raise DataDirError(
            f"the data dir {path} is a shared directory (like /tmp) where other users "
            "keep files: choose a directory of your own with --data-dir DIR or "
            f"RELAYDESK_DATA_DIR, e.g. {path / 'relaydesk'}.")
    _chmod(path, info, PRIVATE_DIR)
    for entry in _entries(path):
        if entry.name in OWNED_NAMES or entry.name.startswith(OWNED_PREFIXES):
            _make_tree_private(entry)


def _entries(path: Path) -> list[Path]:
    try:
        return list(path.iterdir())
    except FileNotFoundError:
        return []  # removed meanwhile by another RelayDesk process
    except OSError as exc:
        log.warning("could not look into %s to make it private: %s", path, exc.strerror)
        return []


def _make_tree_private(path: Path) -> None:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return  # removed meanwhile (a lock file, a rotated log)
    if stat.S_ISLNK(info.st_mode):
        return  # not followed: it points outside, at something that is not ours
    if stat.S_ISDIR(info.st_mode):
        _chmod(path, info, PRIVATE_DIR)
        for entry in _entries(path):
            _make_tree_private(entry)
    else:
        _chmod(path, info, PRIVATE_FILE)


def _chmod(path: Path, info: os.stat_result, mode: int) -> None:
    if stat.S_IMODE(info.st_mode) == mode:
        return
    try:
        os.chmod(path, mode)  # never a symlink: lstat said so
    except FileNotFoundError:
        pass
    except PermissionError:
        # Another user's file (a data dir shared on purpose): it still works, it just
        # cannot be made private by this user.
        log.warning("could not make %s private (owned by another user)", path)
