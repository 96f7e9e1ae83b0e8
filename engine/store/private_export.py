"""Export files: they hold names, phone numbers and error texts, so they are readable by the
operator only (0600), and written whole or not at all (a failed export leaves no half file
and keeps the one it would have replaced)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO


@contextmanager
def written_whole(path: Path) -> Iterator[TextIO]:
    """The file to write (UTF-8, for csv: no newline translation); it becomes ``path`` only
    if the block ends without an error."""
    partial = path.with_name(path.name + ".part")
    partial.unlink(missing_ok=True)
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(fd, "w", encoding="utf-8", newline="") as out:
            yield out
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
