"""The archive a prune writes before it deletes: compressed JSON lines (``.jsonl.gz``),
readable with ``gzip -dc FILE | jq``.

One JSON object a line, each with a ``type``:

- ``prune``: the first line: ``format`` (1), ``created_at``, ``cutoff`` (what settled
  before it was pruned) and ``older_than_s``.
- ``message``: a pruned outgoing message, every column of outgoing_messages by its name,
  with ``delivery_attempts`` (its failed attempts: id, attempt, at, error) and
  ``delivery_reports`` (the reports received for it: id, receipt, provider,
  provider_message_id, status, provider_status, error, received_at) as lists.
- ``failed_job``: a pruned failed job, every column of failed_jobs by its name.

Times are ISO 8601 in UTC. The file is the operator's alone (0600: it holds phone numbers
and message texts), is never overwritten, and each batch is flushed and synced to disk
before the transaction deleting the batch's rows commits: a crash can leave lines for rows
that were not deleted (archived again by the next prune, into its own file), never a
deleted row that is not in a file. A file cut short by a crash still decompresses up to its
last batch.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from engine.domain.errors import OperatorError

FORMAT = 1
# Fast enough not to hold a batch's lock for long; archives compress ~10x all the same.
COMPRESS_LEVEL = 6


class ArchiveError(OperatorError, RuntimeError):
    """The archive cannot be written; the message says what to do."""


def refuse_existing(path: Path) -> None:
    if path.exists():
        raise ArchiveError(f"the archive file {path} already exists and is never overwritten: "
                           "give a new file name (nothing was pruned)")


def jsonable(row: Mapping[Any, Any]) -> dict[str, Any]:
    """A database row as JSON takes it: times as ISO 8601 text."""
    return {key: value.isoformat() if isinstance(value, datetime | date) else value
            for key, value in row.items()}


class Archive:
    """A new archive file at ``path``, created on the first write (a prune that finds
    nothing leaves no file); None: nothing is archived and every call does nothing."""

    def __init__(self, path: Path | None, header: Mapping[str, Any]) -> None:
        self.path = path
        self.header = {"type": "prune", "format": FORMAT, **jsonable(header)}
        self._raw: IO[bytes] | None = None
        self._gzip: gzip.GzipFile | None = None
        self.written = False  # whether the file exists (this archive made it)

    def __enter__(self) -> Archive:
        if self.path is not None:
            refuse_existing(self.path)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _open(self, path: Path) -> gzip.GzipFile:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # O_EXCL: never another file, even one that appeared since the check.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            refuse_existing(path)
            raise
        except OSError as exc:
            raise ArchiveError(f"cannot create the archive file {path}: {exc.strerror}. "
                               "Choose a folder you can write to (nothing was pruned).") from None
        self._raw = os.fdopen(fd, "wb")
        self.written = True
        self._gzip = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw,
                                   compresslevel=COMPRESS_LEVEL)
        self._gzip.write(_line(self.header))
        return self._gzip

    def write(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Write these lines and make them durable before returning (the caller deletes
        their rows next)."""
        if self.path is None:
            return
        out = self._gzip or self._open(self.path)
        for record in records:
            out.write(_line(record))
        out.flush(zlib.Z_SYNC_FLUSH)  # a whole deflate block: readable up to here
        assert self._raw is not None
        self._raw.flush()
        os.fsync(self._raw.fileno())

    def close(self) -> None:
        if self._gzip is not None:
            self._gzip.close()  # the gzip trailer
            self._gzip = None
        if self._raw is not None:
            self._raw.flush()
            os.fsync(self._raw.fileno())
            self._raw.close()
            self._raw = None


def _line(record: Mapping[str, Any]) -> bytes:
    return (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
