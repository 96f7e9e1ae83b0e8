"""The secret path segment of the callback URLs of providers that do not sign their
callbacks (Africa's Talking, the generic HTTP gateway, the sandbox).

RELAYDESK_CALLBACK_TOKEN when set; otherwise generated once and kept in the data dir
(0600, like the embedded Redis's password), so every process of that data dir (the
receiver, the console showing the URLs, the sandbox gateway posting reports) agrees.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from engine.config.settings import Settings

TOKEN_FILE = "callback_token"


MIN_LENGTH = 16


def callback_token(settings: Settings) -> str:
    if settings.callback_token:
        return settings.callback_token
    path = settings.data_dir / TOKEN_FILE
    try:
        token: str | None = _read(path)
    except FileNotFoundError:
        _write_new(path, replace=False)  # another process may win: then its token is it
    else:
        if token is None:  # not a token (emptied or edited by hand): a new one replaces it
            _write_new(path, replace=True)
    return _read(path) or ""


def _read(path: Path) -> str | None:
    """The token in the file, None if the file holds none; FileNotFoundError if there is
    no file."""
    try:
        token = path.read_text(encoding="ascii").strip()
    except UnicodeDecodeError:
        return None
    return token if len(token) >= MIN_LENGTH else None


def _write_new(path: Path, *, replace: bool) -> None:
    """Write a new token whole into a temporary file, then put it in place: never an empty
    or half-written file for another process to read. A new file is linked in, which fails
    if another process got there first (then its token is the one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(secrets.token_urlsafe(24))
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(temporary, path)
        else:
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
