"""The secret path segment of the callback URLs of providers that do not sign their
callbacks (Africa's Talking, the generic HTTP gateway, the sandbox).

RELAYDESK_CALLBACK_TOKEN when set; otherwise generated once and kept in the data dir
(0600, like the embedded Redis's password), so every process of that data dir (the
receiver, the console showing the URLs, the sandbox gateway posting reports) agrees.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from engine.config.settings import Settings

TOKEN_FILE = "callback_token"


def callback_token(settings: Settings) -> str:
    if settings.callback_token:
        return settings.callback_token
    path = settings.data_dir / TOKEN_FILE
    _create_once(path)
    return path.read_text(encoding="ascii").strip()


def _create_once(path: Path) -> None:
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # O_EXCL: two processes starting at once keep the first one's token
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(secrets.token_urlsafe(24))
