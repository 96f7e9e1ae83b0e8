"""Masking for secrets (passwords, tokens, DSNs, credentials in URLs' query strings) before
anything is shown or logged."""

from __future__ import annotations

import re
from urllib.parse import (
    SplitResult,
    quote,
    quote_plus,
    unquote,
    unquote_plus,
    urlsplit,
)

MASK = "****"

# Query parameters that are connection options, never credentials: their values stay
# readable (``?sslmode=require``, ``redis://…/0?db=2``). Every other value is masked: a
# gateway's ``?api_key=`` or ``?token=`` can be called anything, so naming the secret ones
# would miss the next provider's spelling.
PUBLIC_QUERY_KEYS = frozenset({
    "sslmode", "ssl_cert_reqs", "db", "connect_timeout", "application_name",
    "target_session_attrs", "host", "port", "protocol",
})
# A URL inside other text (an error, a log line) and a bare query string after a path
# (urllib3 writes "… with url: /send?api_key=…").
# (A scheme starts a word: trying every letter of a long word would cost O(n²).)
_URL_IN_TEXT = re.compile(r"(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")
_QUERY_IN_TEXT = re.compile(r"(?<=[\w/.\-])\?([^\s'\"<>#?=]*=[^\s'\"<>#]*)")
# The receiver's token routes (/callbacks/<provider>/<token>/delivery): the token is the
# secret that lets anyone post reports.
_CALLBACK_TOKEN_IN_TEXT = re.compile(r"(/callbacks/[a-z_]+/)[^/\s?#'\"<>]+(?=/)")
# A secret this short cannot be replaced inside free text without garbling it (and
# protects nothing anyway); it is still masked wherever a URL is.
_MIN_SCRUBBED = 4


def mask_secret(value: str) -> str:
    """Hide a secret, keeping its last 4 characters only when it is long enough to spare them."""
    if not value:
        return value
    return MASK + value[-4:] if len(value) >= 16 else MASK


def mask_url(url: str) -> str:
    """``url`` with its password, its query values (except PUBLIC_QUERY_KEYS) and its
    fragment replaced by a mask: ``https://gw/send?api_key=****``."""
    try:
        parts = urlsplit(url)
        password = parts.password
        port = parts.port
    except ValueError:
        return MASK  # unparseable: it may hold anything, show nothing
    netloc = parts.netloc
    if password is not None:
        host = parts.hostname or ""
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        if port is not None:
            host = f"{host}:{port}"
        netloc = f"{parts.username or ''}:{MASK}@{host}"
    return _with_parts(url, parts, netloc, mask_query(parts.query),
                       MASK if parts.fragment else "")


def _with_parts(url: str, parts: SplitResult, netloc: str, query: str, fragment: str) -> str:
    """``url`` (split as ``parts``) with those three parts replaced, and otherwise exactly
    as written: urlunsplit would turn ``sqlite:///relaydesk.db`` into ``sqlite:/…``."""
    head, hashed, _ = url.partition("#")
    base, asked, _ = head.partition("?")
    if netloc != parts.netloc:
        base = base.replace(parts.netloc, netloc, 1)  # the first thing after "scheme://"
    return base + (f"?{query}" if asked else "") + (f"#{fragment}" if hashed else "")


def mask_query(query: str) -> str:
    """``a=1&api_key=s3cret`` -> ``a=****&api_key=****``; keys stay, so the operator can
    tell what is set. A bare item (``?s3cret``) may itself be the secret."""
    if not query:
        return query
    items = []
    for item in query.split("&"):
        key, sep, value = item.partition("=")
        if not sep:
            items.append(MASK if key else key)
        elif value and unquote_plus(key).lower() not in PUBLIC_QUERY_KEYS:
            items.append(f"{key}={MASK}")
        else:
            items.append(item)
    return "&".join(items)


def url_secrets(url: str | None) -> set[str]:
    """The secret parts of ``url`` (password, masked query values, fragment) in every
    spelling they may take in an error text: as written, decoded and encoded."""
    try:
        parts = urlsplit(url or "")
        found = [parts.password or ""]
    except ValueError:
        return set()
    for item in parts.query.split("&"):
        key, sep, value = item.partition("=")
        if not sep:
            found.append(key)
        elif unquote_plus(key).lower() not in PUBLIC_QUERY_KEYS:
            found.append(value)
    found.append(parts.fragment)
    spellings = set()
    for secret in found:
        spellings |= {secret, unquote(secret), unquote_plus(secret), quote(unquote(secret)),
                      quote_plus(unquote_plus(secret))}
    return {s for s in spellings if len(s) >= _MIN_SCRUBBED and s != MASK}


def scrub_url_secrets(text: str, url: str | None) -> str:
    """``text`` (e.g. a library's error about ``url``) with every secret part of ``url``
    masked, wherever and however it appears, and any other URL in it masked too."""
    # Longest first: a secret that contains another is replaced whole.
    for secret in sorted(url_secrets(url), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return mask_urls_in_text(text)


def mask_urls_in_text(text: str) -> str:
    """``text`` with every URL in it masked (mask_url), every query string after a path
    (``/send?api_key=…``) and every callback token in a path (``/callbacks/http/…/``)
    masked: for logs, errors and Sentry, where no URL is known."""
    text = _URL_IN_TEXT.sub(lambda m: mask_url(m.group()), text)
    text = _CALLBACK_TOKEN_IN_TEXT.sub(lambda m: m.group(1) + MASK, text)
    return _QUERY_IN_TEXT.sub(lambda m: "?" + mask_query(m.group(1)), text)


def restore_masked_url(url: str, current: str | None) -> str:
    """``url`` as a form showed it (mask_url) with the masked parts given back from
    ``current``, the value in force: the operator kept them, they did not type ``****``.

    Nothing comes back when the URL now names another server: the secrets in force are
    never sent to an address the operator has just typed. Otherwise the password comes back
    when both name the same user, a query value when ``current`` has the same key (its n-th
    occurrence for the n-th), the fragment when it was masked.
    """
    try:
        new, old = urlsplit(url), urlsplit(current or "")
        new_password, old_password = new.password, old.password
        if (new.scheme, new.hostname, new.port) != (old.scheme, old.hostname, old.port):
            return url
    except ValueError:
        return url
    netloc = new.netloc
    if new_password == MASK and old_password is not None and new.username == old.username:
        netloc = old.netloc.rpartition("@")[0] + "@" + new.netloc.rpartition("@")[2]
    fragment = old.fragment if new.fragment == MASK else new.fragment
    return _with_parts(url, new, netloc, _restore_query(new.query, old.query), fragment)


def still_masked(url: str) -> bool:
    """Whether ``url`` holds a mask where a secret belongs (one restore_masked_url could
    not give back): saved like that, the literal ``****`` would be used as the secret."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return False
    items = parts.query.split("&") if parts.query else []
    return MASK in (password, parts.fragment) or any(
        item.partition("=")[2 if "=" in item else 0] == MASK for item in items)

def _restore_query(shown: str, current: str) -> str:
    if MASK not in shown:
        return shown
    kept: dict[str, list[str]] = {}
    for item in current.split("&") if current else []:
        key, sep, value = item.partition("=")
        kept.setdefault(key if sep else "", []).append(value if sep else item)
    items = []
    for item in shown.split("&"):
        key, sep, value = item.partition("=")
        # The n-th occurrence of a key pairs with its n-th occurrence in force.
        previous = kept.get(key if sep else "")
        before = previous.pop(0) if previous else None
        if before is not None and (value if sep else key) == MASK:
            items.append(f"{key}={before}" if sep else before)
        else:
            items.append(item)
    return "&".join(items)
