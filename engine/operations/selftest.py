"""``relaydesk selftest``: prove that this installation can send, end to end.

It starts everything a real send uses, in a temporary data dir on free ports, through the
same code the console uses: the embedded Redis, the sandbox gateway and one worker, both
started by running this installation's own ``relaydesk`` (in the packaged app, the bundle's
executable: no Python needed). It imports 130 generated contacts, sends a 120-recipient
campaign (the bulk route) and a 10-recipient one (individual jobs), and checks the
gateway's own record of what it received: every recipient got exactly their message, once.
Everything it started is stopped again, also when a step fails.

The operator's settings, config file, keyring and env file are kept out: the test always
runs on the sandbox and a fresh SQLite database, so it can neither send real messages nor
touch real data.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import urllib3
from sqlalchemy import select

from engine import __version__
from engine.config.settings import ENV_FILE_VARIABLE, Settings, load_settings, setting_names
from engine.domain.audience import Audience
from engine.infra.connections import WORK, celery_for, redis_for
from engine.infra.embedded_redis import EmbeddedRedis
from engine.infra.local_gateway import LocalGateway
from engine.operations.campaigns import send_campaign
from engine.operations.supervisor import Supervisor
from engine.store.campaign_state import campaign_summary, is_settled
from engine.store.contacts_import import import_contacts
from engine.store.db import Database, close_databases, open_database
from engine.store.models import OutgoingMessage

BULK_RECIPIENTS = 120
FEW_RECIPIENTS = 10
TEMPLATE = "Dear #name, #balance of your #pledge pledge remains, #days_remain days to go."
WORKER_START_TIMEOUT_S = 90.0  # a packaged worker unpacks nothing, but a cold disk is slow
DEFAULT_TIMEOUT_S = 180.0
POLL_S = 0.2

# The settings the test runs with, whatever the operator configured: the sandbox, SQLite,
# the embedded Redis, no pacing (the test is about delivery, not about waiting), a bulk
# threshold the 120-recipient campaign crosses and the 10-recipient one does not.
SELFTEST_SETTINGS = {
    "RELAYDESK_ENV": "production",
    "RELAYDESK_SMS_PROVIDER": "sandbox",
    "RELAYDESK_BULK_THRESHOLD": "100",
    "RELAYDESK_CHUNK_SIZE": "50",
    "RELAYDESK_PACING_INDIVIDUAL_S": "0",
    "RELAYDESK_PACING_CHUNK_S": "0",
    "RELAYDESK_RETRY_BACKOFF": "0.1",
    "RELAYDESK_WORKER_CONCURRENCY": "2",
}

Progress = Callable[[str], None]


class SelftestFailed(RuntimeError):
    """A step of the self-test failed; the message says which and what was seen."""


@dataclass
class CampaignCheck:
    campaign: int
    route: str
    recipients: int
    sent: int
    dead: int
    delivered_once: int  # recipients the gateway received exactly one message for
    missing: int  # recipients the gateway received nothing for
    duplicates: int  # recipients the gateway received more than one message for
    wrong_body: int  # delivered, but not the text rendered for that recipient

    @property
    def ok(self) -> bool:
        return (self.sent == self.delivered_once == self.recipients
                and self.dead == self.missing == self.duplicates == self.wrong_body == 0)


@dataclass
class SelftestReport:
    ok: bool = False
    version: str = __version__
    frozen: bool = field(default_factory=lambda: bool(getattr(sys, "frozen", False)))
    executable: str = sys.executable
    expected: int = BULK_RECIPIENTS + FEW_RECIPIENTS
    delivered_once: int = 0
    missing: int = 0
    duplicates: int = 0
    unexpected: int = 0  # messages the gateway got for no recipient of these campaigns
    campaigns: list[CampaignCheck] = field(default_factory=list)
    worker_pool: str | None = None
    seconds: float = 0.0
    error: str | None = None
    data_dir: str | None = None  # kept (and shown) only when asked or on failure

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for check, shown in zip(self.campaigns, data["campaigns"], strict=True):
            shown["ok"] = check.ok
        return data


def run_selftest(*, timeout: float = DEFAULT_TIMEOUT_S, keep_data: bool = False,
                 pool: str | None = None, progress: Progress | None = None) -> SelftestReport:
    """Run the whole check; never raises for a failed step (the report says what failed).
    ``pool``: the worker's execution pool (default: the platform's, as for any worker)."""
    say = progress or (lambda _: None)
    report = SelftestReport()
    started = time.monotonic()
    work_dir = Path(tempfile.mkdtemp(prefix="relaydesk-selftest-"))
    try:
        with _isolated_environment(work_dir):
            settings = load_settings()
            supervisor = Supervisor(settings, workers=1, pool=pool)
            try:
                _run(settings, supervisor, report, work_dir, timeout, say)
            finally:
                say("stopping the worker, the gateway and Redis")
                supervisor.stop()
                close_databases()
    except SelftestFailed as exc:
        report.error = str(exc)
    except Exception as exc:  # any other failure is a failed test, reported, not raised
        report.error = f"{type(exc).__name__}: {exc}"
    report.ok = report.error is None and len(report.campaigns) == 2 and \
        all(check.ok for check in report.campaigns) and report.unexpected == 0
    report.seconds = round(time.monotonic() - started, 1)
    if keep_data or not report.ok:
        report.data_dir = str(work_dir)
    else:
        shutil.rmtree(work_dir, ignore_errors=True)
    return report


@contextmanager
def _isolated_environment(work_dir: Path) -> Iterator[None]:
    """This process and every process it starts see only the self-test's settings: none
    of the operator's environment, env file, or config file (so no keyring)."""
    saved_env = dict(os.environ)
    saved_cwd = Path.cwd()
    for name in [*setting_names(), ENV_FILE_VARIABLE]:
        os.environ.pop(name, None)
    os.environ.update(SELFTEST_SETTINGS)
    os.environ["RELAYDESK_DATA_DIR"] = str(work_dir / "data")
    os.environ["RELAYDESK_CONFIG_FILE"] = str(work_dir / "config.toml")  # never written
    os.chdir(work_dir)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)


def _run(settings: Settings, supervisor: Supervisor, report: SelftestReport, work_dir: Path,
         timeout: float, say: Progress) -> None:
    say(f"data dir {settings.data_dir}")
    say("starting the embedded Redis, the receiver and the sandbox gateway")
    supervisor.start_services()
    say("starting one worker")
    worker_id = supervisor.add_worker()
    report.worker_pool = supervisor.default_spec.pool or _default_pool()
    _wait_for_worker(supervisor, worker_id)

    db = open_database(settings)
    contacts = _write_contacts(work_dir / "contacts.csv")
    imported = import_contacts(db, contacts, settings.default_region)
    if imported.rejected or imported.imported != BULK_RECIPIENTS + FEW_RECIPIENTS:
        raise SelftestFailed(f"importing the generated contacts failed: {imported.as_dict()}")
    say(f"imported {imported.imported} contacts")

    url = EmbeddedRedis.for_settings(settings).url()
    celery_for(url)
    client = redis_for(url, WORK)
    try:
        bulk = send_campaign(db, client, settings, TEMPLATE, audience=Audience(tags=("bulk",)),
                             name="selftest bulk")
        few = send_campaign(db, client, settings, TEMPLATE, audience=Audience(tags=("few",)),
                            name="selftest few")
    finally:
        client.close()
    say(f"sent campaign {bulk.id} ({bulk.plan.route}, {bulk.plan.recipients} recipients) "
        f"and campaign {few.id} ({few.plan.route}, {few.plan.recipients} recipients)")

    deadline = time.monotonic() + timeout
    for campaign_id in (bulk.id, few.id):
        _wait_until_settled(db, supervisor, worker_id, campaign_id, deadline)
    say("both campaigns settled; checking what the gateway received")
    _check_deliveries(db, settings, report, [bulk.id, few.id])


def _default_pool() -> str:
    from engine.pipeline.worker import default_pool

    return default_pool()


def _worker_log_tail(supervisor: Supervisor, worker_id: str) -> str:
    state = next(s for s in supervisor.snapshot() if s.id == worker_id)
    try:
        text = state.log_path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return text[-1500:].strip()


def _wait_for_worker(supervisor: Supervisor, worker_id: str) -> None:
    deadline = time.monotonic() + WORKER_START_TIMEOUT_S
    while True:
        state = next(s for s in supervisor.snapshot() if s.id == worker_id)
        if state.state in ("online", "busy"):
            return
        if state.state in ("dead", "stopped"):
            raise SelftestFailed(f"the worker exited at start (code {state.exit_code}); its "
                                 f"log ends:\n{_worker_log_tail(supervisor, worker_id)}")
        if time.monotonic() > deadline:
            raise SelftestFailed(f"the worker did not come online within "
                                 f"{WORKER_START_TIMEOUT_S:g} s; its log ends:\n"
                                 f"{_worker_log_tail(supervisor, worker_id)}")
        time.sleep(POLL_S)


def _wait_until_settled(db: Database, supervisor: Supervisor, worker_id: str, campaign_id: int,
                        deadline: float) -> None:
    while True:
        with db.session() as session:
            summary = campaign_summary(session, campaign_id)
        assert summary is not None
        if is_settled(summary):
            return
        if not any(w.id == worker_id for w in supervisor.running):  # no Redis round trip
            worker = next(s for s in supervisor.snapshot() if s.id == worker_id)
            raise SelftestFailed(f"the worker died while sending (code {worker.exit_code}); "
                                 f"its log ends:\n{_worker_log_tail(supervisor, worker_id)}")
        if time.monotonic() > deadline:
            raise SelftestFailed(
                f"campaign {campaign_id} did not finish in time: {summary['sent']} of "
                f"{summary['recipients']} sent, {summary['pending']} pending, "
                f"{summary['retrying']} retrying, {summary['dead']} dead")
        time.sleep(POLL_S)


def _check_deliveries(db: Database, settings: Settings, report: SelftestReport,
                      campaign_ids: list[int]) -> None:
    """Compare the gateway's record of every message it accepted with the rows each
    campaign was created with: same recipients, each once, each with its own text."""
    gateway_url = LocalGateway.for_settings(settings).url()
    if gateway_url is None:
        raise SelftestFailed("the sandbox gateway left no address in the data dir")
    response = urllib3.request("GET", gateway_url + "/messages", timeout=10.0, retries=False)
    if response.status != 200:
        raise SelftestFailed(f"the sandbox gateway answered {response.status} to GET /messages")
    received: list[dict[str, Any]] = response.json()
    wanted = {str(c) for c in campaign_ids}
    report.unexpected = sum(1 for m in received if m.get("campaign") not in wanted)
    for campaign_id in campaign_ids:
        with db.session() as session:
            summary = campaign_summary(session, campaign_id)
            rows = session.execute(select(OutgoingMessage.phone, OutgoingMessage.body)
                                   .where(OutgoingMessage.campaign_id == campaign_id))
            expected: dict[str, str] = dict(rows.tuples().all())
        assert summary is not None
        mine = [m for m in received if m.get("campaign") == str(campaign_id)]
        counts = Counter(str(m["to"]) for m in mine)
        bodies = {str(m["to"]): m["body"] for m in mine}
        report.campaigns.append(CampaignCheck(
            campaign=campaign_id, route=str(summary["route"]),
            recipients=int(summary["recipients"]), sent=int(summary["sent"]),
            dead=int(summary["dead"]),
            delivered_once=sum(1 for p in expected if counts[p] == 1),
            missing=sum(1 for p in expected if counts[p] == 0),
            duplicates=sum(1 for p in expected if counts[p] > 1),
            wrong_body=sum(1 for p, body in expected.items()
                           if counts[p] and bodies[p] != body)))
        report.unexpected += sum(n for p, n in counts.items() if p not in expected)
    report.delivered_once = sum(c.delivered_once for c in report.campaigns)
    report.missing = sum(c.missing for c in report.campaigns)
    report.duplicates = sum(c.duplicates for c in report.campaigns)


def selftest_phone(group: int, index: int) -> str:
    """A Kenyan mobile number in E.164 that never ends like one of the sandbox's failure
    numbers (…0001 to …0004): every generated number ends in 55."""
    return f"+2547{group}{index:04d}55"


def _write_contacts(path: Path) -> Path:
    due = (date.today() + timedelta(days=20)).isoformat()
    lines = ["name,phone,pledge,paid_amount,due_date,tags"]
    lines += [f"Bulk {i},{selftest_phone(10, i)},1000,250,{due},bulk"
              for i in range(BULK_RECIPIENTS)]
    lines += [f"Few {i},{selftest_phone(20, i)},1000,250,{due},few"
              for i in range(FEW_RECIPIENTS)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
