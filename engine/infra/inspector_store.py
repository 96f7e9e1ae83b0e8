"""The job inspector's store: what an entry holds, and a bounded Redis home for entries.

One Redis stream per kind (jobs, SQL statements, provider HTTP calls), trimmed to the newest
``RELAYDESK_INSPECTOR_MAX_ENTRIES`` on every write and to ``RELAYDESK_INSPECTOR_MAX_AGE`` on
every write and read; entries are small JSON documents. What is kept is chosen so that the
store holds nothing an operator's log must not: SQL text without its parameters (they hold
phone numbers and message text), provider calls without headers (credentials), URLs
without user info or query, and every phone number in a payload or body masked.

``engine.monitoring.inspector`` records into it; the Inspector page and ``relaydesk inspector`` read
it back, filtered by kind, campaign, task and age.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from engine.config.masking import mask_urls_in_text
from engine.config.settings import Settings
from engine.domain.phones import mask_phones_in_text
from engine.infra.redis_keys import PREFIX

Kind = Literal["job", "sql", "http"]
KINDS: tuple[Kind, ...] = ("job", "sql", "http")

MAX_TEXT = 2000  # characters of a statement or a body kept
MAX_PAYLOAD = 1000
READ_BATCH = 500


def stream_key(kind: Kind) -> str:
    return f"{PREFIX}inspector:{kind}"


def inspector_off_reason(settings: Settings) -> str | None:
    """Why the inspector records nothing with these settings, or None when it is on."""
    if settings.inspector_on:
        return None
    what = ("The inspector records recent job events, SQL statements and provider HTTP calls, "
            "for debugging.")
    if settings.env == "production":
        return (f"{what} It is off in production and cannot be turned on there: set "
                "RELAYDESK_ENV=development, on a machine that sends no real campaigns, to use "
                "it.")
    return f"{what} It is turned off (RELAYDESK_INSPECTOR=off): set it to auto or on to use it."


# --- what is kept ----------------------------------------------------------------------------

def _clip(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[:limit] + f"… ({len(text) - limit} more)"


def safe_text(text: str, limit: int = MAX_TEXT) -> str:
    """Phone numbers and URLs' credentials masked (a body may carry a callback URL with
    its token), then clipped."""
    return _clip(mask_urls_in_text(mask_phones_in_text(text)), limit)


def safe_payload(value: Any) -> str:
    """Task arguments as JSON text with phone numbers masked."""
    try:
        text = json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return safe_text(text, MAX_PAYLOAD)


def _looks_like_token(segment: str) -> bool:
    return len(segment) >= 20 and segment.isalnum() and any(c.isdigit() for c in segment)


def safe_url(url: str) -> str:
    """Scheme, host and path: no user info, no query (either may hold a credential), and
    long token-like path parts (e.g. an account SID) shortened."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
    except ValueError:
        return "(unreadable URL)"
    path = "/".join(s[:4] + "…" if _looks_like_token(s) else s for s in parts.path.split("/"))
    return urlunsplit((parts.scheme, host, path, "", ""))


# --- the store ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    kind: Kind
    time: float  # epoch seconds
    event: str  # job: enqueued, started, ...; sql: the verb; http: the method
    summary: str
    status: str = ""
    campaign: int | None = None
    task: str | None = None
    duration_ms: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    id: str = ""  # the stream ID, set when read back

    def to_json(self) -> str:
        data = asdict(self)
        del data["id"]
        return json.dumps(data, separators=(",", ":"), default=str, ensure_ascii=False)

    @classmethod
    def from_json(cls, entry_id: str, raw: str | bytes) -> Entry:
        data = json.loads(raw)
        return cls(kind=data["kind"], time=float(data["time"]), event=data["event"],
                   summary=data["summary"], status=data.get("status", ""),
                   campaign=data.get("campaign"), task=data.get("task"),
                   duration_ms=data.get("duration_ms"), detail=data.get("detail") or {},
                   id=entry_id)


@dataclass(frozen=True)
class Query:
    kinds: tuple[Kind, ...] = KINDS
    campaign: int | None = None
    task: str | None = None  # any part of the task name, e.g. send_chunk
    since_s: float | None = None  # only entries at most this old
    limit: int = 500
    # Only entries newer than these stream IDs (a previous Reading's cursors): a live view
    # then reads what is new instead of everything again.
    after: tuple[tuple[Kind, str], ...] = ()

    def matches(self, fields: dict[bytes, bytes]) -> bool:
        """Checked on an entry's plain fields, before its JSON is decoded."""
        if self.campaign is not None and fields.get(b"c") != str(self.campaign).encode():
            return False
        return not self.task or self.task.lower() in fields.get(b"t", b"").decode().lower()


@dataclass(frozen=True)
class Reading:
    entries: list[Entry]  # newest first
    cursors: tuple[tuple[Kind, str], ...]  # the newest stream ID of each kind read


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _id_parts(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _after(entry_id: str) -> str:
    """The smallest stream ID after ``entry_id`` (an inclusive bound for XRANGE; the
    exclusive "(" form needs Redis 6.2)."""
    ms, seq = _id_parts(entry_id)
    return f"{ms}-{seq + 1}"


def _before(entry_id: str) -> str:
    ms, seq = _id_parts(entry_id)
    return f"{ms}-{seq - 1}" if seq else f"{ms - 1}-18446744073709551615"


class InspectorStore:
    """The bounded Redis store: one stream per kind."""

    def __init__(self, client: Any, max_entries: int, max_age_s: float) -> None:
        self.client = client
        self.max_entries = max_entries
        self.max_age_s = max_age_s

    @classmethod
    def for_settings(cls, settings: Settings, client: Any) -> InspectorStore:
        return cls(client, settings.inspector_max_entries, settings.inspector_max_age_s)

    def _cutoff_id(self, now: float | None = None) -> str:
        return f"{int(((now or time.time()) - self.max_age_s) * 1000)}-0"

    def add(self, entry: Entry) -> None:
        """Store one entry and trim its stream to both bounds, in one round trip."""
        key = stream_key(entry.kind)
        pipe = self.client.pipeline(transaction=False)
        fields = {"c": "" if entry.campaign is None else str(entry.campaign),
                  "t": entry.task or "", "e": entry.to_json()}
        pipe.xadd(key, fields, maxlen=self.max_entries, approximate=False)
        pipe.xtrim(key, minid=self._cutoff_id(), approximate=False)
        pipe.execute()

    def prune(self, now: float | None = None) -> int:
        """Remove entries older than the age bound (and beyond the count bound); how many."""
        pipe = self.client.pipeline(transaction=False)
        for kind in KINDS:
            pipe.xtrim(stream_key(kind), minid=self._cutoff_id(now), approximate=False)
            pipe.xtrim(stream_key(kind), maxlen=self.max_entries, approximate=False)
        return sum(int(n) for n in pipe.execute())

    def clear(self) -> int:
        return int(self.client.delete(*(stream_key(k) for k in KINDS)))

    def counts(self) -> dict[str, int]:
        pipe = self.client.pipeline(transaction=False)
        for kind in KINDS:
            pipe.xlen(stream_key(kind))
        return {kind: int(n) for kind, n in zip(KINDS, pipe.execute(), strict=True)}

    def entries(self, query: Query = Query()) -> list[Entry]:
        """The newest entries matching ``query``, newest first (old ones pruned first)."""
        return self.read(query).entries

    def read(self, query: Query = Query()) -> Reading:
        """entries(), and where this read got to in each stream, for the next ``after``."""
        self.prune()
        found: list[Entry] = []
        cursors = dict(query.after)
        for kind in query.kinds:
            found.extend(self._newest(kind, query, cursors))
        found.sort(key=lambda e: e.time, reverse=True)
        return Reading(found[:query.limit], tuple(cursors.items()))

    def _newest(self, kind: Kind, query: Query, cursors: dict[Kind, str]) -> Iterator[Entry]:
        key = stream_key(kind)
        oldest = "-"
        if query.since_s is not None:
            oldest = f"{int((time.time() - query.since_s) * 1000)}-0"
        after = dict(query.after).get(kind)
        if after is not None and (oldest == "-" or _id_parts(_after(after)) > _id_parts(oldest)):
            oldest = _after(after)
        newest, taken = "+", 0
        while taken < query.limit:
            batch = self.client.xrevrange(key, max=newest, min=oldest, count=READ_BATCH)
            if batch and newest == "+":
                cursors[kind] = _text(batch[0][0])
            for raw_id, fields in batch:
                if query.matches(fields):
                    taken += 1
                    yield Entry.from_json(_text(raw_id), fields[b"e"])
            if len(batch) < READ_BATCH:
                return
            newest = _before(_text(batch[-1][0]))
