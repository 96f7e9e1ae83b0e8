"""Two bulk campaigns on one worker, the second queued behind the first: how many bulk jobs
the worker runs against how many the two campaigns need, and how often the stalled-campaign
sweep took the waiting campaign for lost (issue 11, item 1). Prints one JSON object.

The first campaign's length comes from the global rate limit, so on any machine it lasts
first / rate seconds; above the stall time (60 s), the second waits longer than that.

Usage: python benchmarks/queued_behind.py [--first 6000] [--second 500] [--rate 40/s]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import redis
import urllib3
from sqlalchemy import func, select

from engine.config.settings import load_settings
from engine.domain.audience import Audience
from engine.domain.planning import chunk_bounds
from engine.infra.connections import celery_for
from engine.infra.embedded_redis import EmbeddedRedis, free_port
from engine.infra.worker_registry import live_workers
from engine.monitoring.queue_status import broker_load
from engine.operations.campaigns import send_campaign
from engine.operations.supervisor import Supervisor
from engine.pipeline.dispatcher import STALL_S
from engine.store.contacts_import import import_contacts
from engine.store.db import Database, close_databases, open_database
from engine.store.models import Campaign, CampaignStatus, OutgoingMessage


def write_contacts(path: Path, counts: dict[str, int]) -> None:
    due = (date.today() + timedelta(days=30)).isoformat()
    with path.open("w") as f:
        f.write("name,phone,pledge,paid_amount,due_date,tags\n")
        n = 0
        for tag, count in counts.items():
            for _ in range(count):
                # ends in 5: never one of the sandbox gateway's failing test numbers
                f.write(f"Member {n},07{n:07d}5,10000,2500,{due},{tag}\n")
                n += 1


def settled(db: Database, client: Any, ids: list[int]) -> bool:
    with db.session() as session:
        done = session.scalar(select(func.count(Campaign.id)).where(
            Campaign.id.in_(ids), Campaign.status == CampaignStatus.COMPLETED))
    load = broker_load(client)
    return done == len(ids) and load.in_flight == 0 and load.scheduled == 0 and \
        all(q.waiting == 0 for q in load.queues.values())


def waited_s(db: Database, campaign_id: int) -> float:
    """From the campaign's creation to its first message sent."""
    with db.session() as session:
        created = session.scalar(select(Campaign.created_at).where(Campaign.id == campaign_id))
        first = session.scalar(select(func.min(OutgoingMessage.sent_at)).where(
            OutgoingMessage.campaign_id == campaign_id))
    assert created is not None
    assert first is not None
    return (first - created).total_seconds()


def run(first: int, second: int, rate: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        os.environ.update({
            "RELAYDESK_DATA_DIR": tmp, "RELAYDESK_PACING_CHUNK_S": "0",
            "RELAYDESK_SMS_GATEWAY_URL": f"http://127.0.0.1:{port}",
            "RELAYDESK_RATE_LIMIT": rate,
        })
        settings = load_settings()
        gateway = subprocess.Popen([sys.executable, "-m", "engine", "gateway", "--port",
                                    str(port)], stderr=subprocess.DEVNULL)
        csv = Path(tmp) / "contacts.csv"
        write_contacts(csv, {"first": first, "second": second})
        db = open_database(settings)
        import_contacts(db, csv, settings.default_region)
        supervisor = Supervisor(settings, workers=1)
        supervisor.start()
        url = EmbeddedRedis.for_settings(settings).url()
        client = redis.Redis.from_url(url)
        celery_for(url)
        try:
            while not live_workers(client):
                time.sleep(0.2)
            ids = [send_campaign(db, client, settings, "Hello #name",
                                 audience=Audience(tags=(tag,))).id
                   for tag in ("first", "second")]
            while not settled(db, client, ids):
                time.sleep(1.0)
            metrics = subprocess.run(
                [sys.executable, "-m", "engine", "metrics", "--since", "1h", "--queue",
                 "bulk_messages", "--json"], capture_output=True, text=True, check=True)
            jobs = sum(int(b["jobs"]) for b in json.loads(metrics.stdout)["buckets"])
            stats = json.loads(urllib3.request("GET", f"http://127.0.0.1:{port}/stats").data)
            log = "".join(p.read_text(errors="replace")
                          for p in (Path(tmp) / "logs").glob("worker-*.log"))
            result = {
                "first": first, "second": second, "rate_limit": rate,
                "worker_concurrency": settings.worker_concurrency, "stall_s": STALL_S,
                "second_waited_s": round(waited_s(db, ids[1]), 1),
                "bulk_jobs_needed": 2 + sum(len(chunk_bounds(n, settings.chunk_size))
                                            for n in (first, second)),
                "bulk_jobs_run": jobs,
                "campaigns_taken_for_lost": log.count("lost its jobs"),
                "delivered": stats.get("delivered"), "duplicates": stats.get("duplicates"),
            }
        finally:
            supervisor.stop()
            gateway.terminate()
            gateway.wait()
            close_databases()
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--first", type=int, default=6000)
    parser.add_argument("--second", type=int, default=500)
    parser.add_argument("--rate", default="40/s", help="global send rate limit")
    args = parser.parse_args()
    print(json.dumps(run(args.first, args.second, args.rate), indent=2))


if __name__ == "__main__":
    main()
