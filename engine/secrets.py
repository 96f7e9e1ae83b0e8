"""Masking for secrets (passwords, tokens, DSNs) before anything is shown or logged."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

MASK = "****"


def mask_secret(value: str) -> str:
    """Hide a secret, keeping its last 4 characters only when it is long enough to spare them."""
    if not value:
        return value
    return MASK + value[-4:] if len(value) >= 16 else MASK


def mask_url(url: str) -> str:
    """Replace the password in a URL (``scheme://user:password@host/...``) with a mask."""
    try:
        parts = urlsplit(url)
        password = parts.password
        port = parts.port
    except ValueError:
        return MASK  # unparseable: it may hold anything, show nothing
    if password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if port is not None:
        host = f"{host}:{port}"
    netloc = f"{parts.username or ''}:{MASK}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
