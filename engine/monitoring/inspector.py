"""The job inspector (development only): recording job events, SQL and provider calls.

RelayDesk's answer to Laravel Telescope. When the settings turn it on (``RELAYDESK_ENV=
development``; it is refused in production, see ``engine.config.settings``), every process records
into the bounded store of ``engine.infra.inspector_store``: workers their job events (Celery
signals), each message's outcome, the SQL they run and the provider calls they make; the
console and the CLI the SQL they run and the jobs they publish.

Off, the inspector installs nothing: no SQL listener, no HTTP observer, no Celery signal
handler. On, recording never breaks sending: every error is swallowed and logged at debug
level, and a Redis that does not answer is left alone for a few seconds.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.config.masking import scrub_url_secrets
from engine.config.settings import Settings
from engine.domain.phones import mask_phone
from engine.domain.sending import Verdict
from engine.infra.celery_app import PUBLISHED_HEADER
from engine.infra.connections import PROBE, redis_for
from engine.infra.embedded_redis import redis_url
from engine.infra.http_observers import HTTP_OBSERVERS, HttpExchange
from engine.infra.inspector_store import Entry, InspectorStore, safe_payload, safe_text, safe_url
from engine.store.db import ENGINE_WATCHERS

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from engine.domain.sending import SendResult
    from engine.store.delivery_state import Claimed

log = logging.getLogger(__name__)

QUIET_AFTER_ERROR_S = 5.0  # Redis failed: record nothing for this long (sending goes on)


# --- recording, per process -----------------------------------------------------------------

class Recorder:
    """Writes entries for this process; one Redis client per process (made after a fork)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        # A pool process forked while another thread held the lock would wait for ever.
        os.register_at_fork(after_in_child=self._new_lock)
        self._store: InspectorStore | None = None
        self._pid = 0
        self._quiet_until = 0.0

    def _new_lock(self) -> None:
        self._lock = threading.Lock()

    def _current_store(self) -> InspectorStore:
        with self._lock:
            if self._store is None or self._pid != os.getpid():
                # A probe's short timeouts: recording must not hold up what it watches.
                client = redis_for(redis_url(self.settings, start=False), PROBE)
                self._store = InspectorStore.for_settings(self.settings, client)
                self._pid = os.getpid()
            return self._store

    def add(self, entry: Entry) -> None:
        if time.monotonic() < self._quiet_until:
            return
        try:
            self._current_store().add(entry)
        except Exception as exc:  # the inspector must never break what it watches
            self._quiet_until = time.monotonic() + QUIET_AFTER_ERROR_S
            with self._lock:
                self._store = None
            log.debug("inspector: could not record a %s entry (%s: %s)", entry.kind,
                      type(exc).__name__, exc)


_process: dict[str, Recorder] = {}  # "recorder": this process's, while the inspector is on
_process_lock = threading.Lock()


def recorder(settings: Settings) -> Recorder | None:
    """This process's recorder, following the newest ``settings`` it is given (e.g. a new
    Redis after a settings save); None, and recording stops, when they turn it off.

    Every recording process also records the jobs it publishes: the console and the CLI
    publish a bulk campaign's first job themselves, workers the rest."""
    with _process_lock:
        if not settings.inspector_on:
            _process.pop("recorder", None)
            return None
        current = _process.get("recorder")
        if current is None or current.settings != settings:
            current = _process["recorder"] = Recorder(settings)
    from celery import signals

    name, uid = _SIGNALS[0]
    getattr(signals, name).connect(_on_publish, weak=False, dispatch_uid=uid)
    return current


def _active() -> Recorder | None:
    return _process.get("recorder")


def stop() -> None:
    """Stop recording in this process and take the HTTP observer and Celery signal
    handlers away (SQL listeners stay on their engines and record nothing)."""
    with _process_lock:
        _process.pop("recorder", None)
    if _record_http in HTTP_OBSERVERS:
        HTTP_OBSERVERS.remove(_record_http)
    if "celery" in sys.modules:
        from celery import signals

        for signal, uid in _SIGNALS:
            getattr(signals, signal).disconnect(dispatch_uid=uid)


# --- which task a thread works for ----------------------------------------------------------

@dataclass
class _Running:
    task: str
    campaign: int | None
    started: float  # perf_counter


_running: dict[str, _Running] = {}  # task id -> the task running in this process
_local = threading.local()


def _campaign_of(args: Any) -> int | None:
    """Every RelayDesk task takes the campaign id first."""
    if isinstance(args, list | tuple) and args and isinstance(args[0], int):
        return args[0]
    return None


def _context() -> tuple[int | None, str | None]:
    """The campaign and task the calling thread works for: its own task, or the one task
    this process runs (a task's send threads work for it)."""
    running = getattr(_local, "running", None)
    if running is None and len(_running) == 1:
        running = next(iter(_running.values()), None)
    return (running.campaign, running.task) if running else (None, None)


# --- SQL --------------------------------------------------------------------------------------

def watch_sql(engine: Engine, settings: Settings) -> bool:
    """Record the statements ``engine`` runs (text and duration, never parameters)."""
    rec = recorder(settings)
    if rec is None:
        return False
    from sqlalchemy import event

    if event.contains(engine, "before_cursor_execute", _before_sql):
        return True
    event.listen(engine, "before_cursor_execute", _before_sql)
    event.listen(engine, "after_cursor_execute", _after_sql)
    event.listen(engine, "handle_error", _sql_error)
    return True


def _watch_opened(engine: Engine, settings: Settings) -> None:
    if settings.inspector_on:  # development only: statements for the Inspector page
        watch_sql(engine, settings)


# Every process that opens a database imports this module before it does (the CLI's
# commands, the worker's tasks, the console's pages and its helper process), so the store
# hands it each engine from the first one on.
ENGINE_WATCHERS.append(_watch_opened)


def _before_sql(conn: Any, _cursor: Any, _statement: str, _parameters: Any, _context: Any,
                _executemany: bool) -> None:
    conn.info.setdefault("relaydesk_inspector", []).append(time.perf_counter())


def _after_sql(conn: Any, _cursor: Any, statement: str, parameters: Any, _ctx: Any,
               executemany: bool) -> None:
    started = conn.info.get("relaydesk_inspector") or [time.perf_counter()]
    _record_sql(statement, (time.perf_counter() - started.pop()) * 1000,
                len(parameters) if executemany and parameters else 1, "ok")


def _sql_error(context: Any) -> None:
    started = context.connection.info.get("relaydesk_inspector") if context.connection else None
    duration = (time.perf_counter() - started.pop()) * 1000 if started else None
    _record_sql(context.statement or "", duration, 1,
                f"error: {type(context.original_exception).__name__}")


@contextlib.contextmanager
def unrecorded() -> Iterator[None]:
    """The calling thread's statements are not recorded meanwhile: a worker's periodic
    looks (is a scheduled campaign due? did a worker die?) would otherwise fill the SQL
    tab with the same query every second and push out what the operator is looking for."""
    _local.quiet = True
    try:
        yield
    finally:
        _local.quiet = False


def _record_sql(statement: str, duration_ms: float | None, rows: int, status: str) -> None:
    rec = _active()
    if rec is None or getattr(_local, "quiet", False):
        return
    try:
        text = " ".join(statement.split())
        campaign, task = _context()
        summary = safe_text(text, 160)
        if rows > 1:
            summary = f"{summary}  (× {rows})"
        rec.add(Entry("sql", time.time(), text.split(" ", 1)[0].upper() or "SQL", summary,
                      status, campaign, task, duration_ms,
                      {"statement": safe_text(text), "executions": rows}))
    except Exception as exc:
        log.debug("inspector: SQL entry not recorded (%s)", type(exc).__name__)


# --- provider HTTP calls -------------------------------------------------------------------

def watch_http(settings: Settings) -> bool:
    """Record every provider call this process makes (the providers report them to
    engine.infra.http_observers)."""
    if recorder(settings) is None:
        return False
    if _record_http not in HTTP_OBSERVERS:
        HTTP_OBSERVERS.append(_record_http)
    return True


def _idempotency_campaign(headers: Any) -> int | None:
    """``relaydesk-<campaign>-<message>``: the campaign of a call made off a task thread."""
    key = str((headers or {}).get("Idempotency-Key") or "")
    parts = key.split("-")
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def _record_http(call: HttpExchange) -> None:
    rec = _active()
    if rec is None:
        return
    try:
        campaign, task = _context()
        campaign = campaign if campaign is not None else _idempotency_campaign(call.headers)
        url = safe_url(call.url)
        status = str(call.status) if call.status is not None else \
            (call.error or "error").split(":", 1)[0]
        response = call.response_body.decode("utf-8", "replace")
        rec.add(Entry(
            "http", time.time(), call.method, f"{call.method} {url} → {status}", status,
            campaign, task, call.latency_s * 1000,
            {"url": url, "request_body": safe_text(call.request_body),
             "response_body": safe_text(response),
             # urllib3's errors repeat the URL (or its path and query), with whatever
             # credentials it held
             "error": safe_text(scrub_url_secrets(call.error.replace(call.url, url),
                                                  call.url)) if call.error else None}))
    except Exception as exc:
        log.debug("inspector: HTTP entry not recorded (%s)", type(exc).__name__)


# --- job events (Celery signals) and message outcomes ---------------------------------------

def watch_jobs(settings: Settings) -> bool:
    """Record job events in this process (and the pool processes it forks)."""
    if recorder(settings) is None:
        return False
    from celery import signals

    handlers = (_on_publish, _on_prerun, _on_postrun, _on_failure, _on_retry)
    for (signal, uid), handler in zip(_SIGNALS, handlers, strict=True):
        getattr(signals, signal).connect(handler, weak=False, dispatch_uid=uid)
    return True


_SIGNALS = tuple((name, f"relaydesk-inspector-{name}") for name in (
    "before_task_publish", "task_prerun", "task_postrun", "task_failure", "task_retry"))


def _job(event: str, task: str, campaign: int | None, summary: str, status: str,
         duration_ms: float | None, **detail: Any) -> None:
    rec = _active()
    if rec is not None:
        rec.add(Entry("job", time.time(), event, summary, status, campaign, task, duration_ms,
                      {k: v for k, v in detail.items() if v is not None}))


def _on_publish(sender: Any = None, body: Any = None, headers: Any = None,
                routing_key: Any = None, **_: Any) -> None:
    try:
        headers = headers if isinstance(headers, dict) else {}
        headers.setdefault(PUBLISHED_HEADER, time.time())  # publish() sets it already
        args = body[0] if isinstance(body, list | tuple) and body else []
        task = str(sender or headers.get("task") or "?")
        _job("enqueued", task, _campaign_of(args), f"{task} enqueued on {routing_key}",
             "enqueued", None, task_id=headers.get("id"), queue=routing_key,
             payload=safe_payload(args))
    except Exception as exc:
        log.debug("inspector: publish not recorded (%s)", type(exc).__name__)


def _on_prerun(task_id: str = "", task: Any = None, args: Any = None, **_: Any) -> None:
    try:
        name = str(getattr(task, "name", "?"))
        running = _Running(name, _campaign_of(args), time.perf_counter())
        _running[task_id] = running
        _local.running = running
        request = getattr(task, "request", None)
        published = getattr(request, PUBLISHED_HEADER, None)
        wait_ms = (time.time() - float(published)) * 1000 if published else None
        queue = ((getattr(request, "delivery_info", None) or {}).get("routing_key"))
        waited = f" after {wait_ms:,.0f} ms in the queue" if wait_ms is not None else ""
        _job("started", name, running.campaign, f"{name} started{waited}", "started", None,
             task_id=task_id, queue=queue, wait_ms=wait_ms, payload=safe_payload(args),
             retries=getattr(request, "retries", None), pid=os.getpid())
    except Exception as exc:
        log.debug("inspector: task start not recorded (%s)", type(exc).__name__)


def _runtime_ms(task_id: str) -> float | None:
    running = _running.get(task_id)
    return (time.perf_counter() - running.started) * 1000 if running else None


def _on_postrun(task_id: str = "", task: Any = None, args: Any = None, state: Any = None,
                **_: Any) -> None:
    try:
        if state == "SUCCESS":
            name = str(getattr(task, "name", "?"))
            runtime = _runtime_ms(task_id)
            _job("succeeded", name, _campaign_of(args), f"{name} succeeded in "
                 f"{runtime or 0:,.0f} ms", "succeeded", runtime, task_id=task_id,
                 runtime_ms=runtime, payload=safe_payload(args))
    except Exception as exc:
        log.debug("inspector: task end not recorded (%s)", type(exc).__name__)
    finally:
        _running.pop(task_id, None)
        _local.running = None


def _on_failure(sender: Any = None, task_id: str = "", exception: Any = None, args: Any = None,
                **_: Any) -> None:
    try:
        name = str(getattr(sender, "name", "?"))
        runtime = _runtime_ms(task_id)
        error = safe_text(f"{type(exception).__name__}: {exception}", 500)
        _job("failed", name, _campaign_of(args), f"{name} failed: {error}", "failed", runtime,
             task_id=task_id, runtime_ms=runtime, error=error, payload=safe_payload(args))
    except Exception as exc:
        log.debug("inspector: task failure not recorded (%s)", type(exc).__name__)


def _on_retry(sender: Any = None, request: Any = None, reason: Any = None, **_: Any) -> None:
    try:
        name = str(getattr(sender, "name", "?"))
        args = getattr(request, "args", None)
        task_id = str(getattr(request, "id", ""))
        runtime = _runtime_ms(task_id)
        _job("retried", name, _campaign_of(args), f"{name} retried: {safe_text(str(reason))}",
             "retried", runtime, task_id=task_id, runtime_ms=runtime,
             payload=safe_payload(args))
    except Exception as exc:
        log.debug("inspector: task retry not recorded (%s)", type(exc).__name__)


# The word the inspector shows for each of the sender's verdicts.
_EVENT = {Verdict.SENT: "sent", Verdict.RETRY: "retried", Verdict.DEAD: "failed",
          Verdict.PAUSE: "paused", Verdict.SUPPRESSED: "suppressed"}


def record_message(claimed: Claimed, result: SendResult, verdict: Verdict) -> None:
    """One message's outcome as the sender decided and recorded it."""
    rec = _active()
    if rec is None:
        return
    try:
        sms, attempts = claimed.sms, claimed.attempts
        outcome = str(result.outcome)
        event = _EVENT[verdict]
        why = f": {result.error_type}" if result.error_type else ""
        _, task = _context()
        _job(event, task or "message", sms.campaign_id,
             f"message {sms.message_id} to {mask_phone(sms.to)} {event} "
             f"(attempt {attempts} of {rec.settings.max_attempts}){why}", event,
             result.latency_s * 1000, message_id=sms.message_id, to=mask_phone(sms.to),
             attempt=attempts, outcome=outcome, error_type=result.error_type,
             error=safe_text(result.error, 500) if result.error else None,
             provider_message_id=result.provider_message_id)
    except Exception as exc:
        log.debug("inspector: message outcome not recorded (%s)", type(exc).__name__)
