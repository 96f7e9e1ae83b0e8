"""The plain Celery baseline of benchmarks/throughput.py: what "one task per message" costs
with nothing of RelayDesk in it.

One task, ``plain.send``, per message, published with one ``apply_async`` each. Its body
only makes the HTTP call the sandbox provider makes (engine/providers/sandbox.py: POST
{gateway}/messages with JSON ``{"to", "body", "campaign", "idempotency_key"}``) over a
module-level reused urllib3 pool (each prefork child opens its own connection on first
use): no claim, no database, no metrics, no pacing, no rate limit, no breaker. Celery's
defaults otherwise (prefetch multiplier 4, ack on receipt, no result backend). It is fixed
on purpose: it does not follow RelayDesk's code.

throughput.py starts it as its own ``celery worker`` processes (as many, with the same
prefork concurrency, as RelayDesk's run, on the same Redis, on queue QUEUE) with
PLAIN_CELERY_BROKER and PLAIN_CELERY_GATEWAY set, and counts completions by the
gateway's GET /stats.
"""

from __future__ import annotations

import json
import os

import urllib3
from celery import Celery

QUEUE = "plain_celery"
TASK = "plain.send"

app = Celery("plain_celery", broker=os.environ.get("PLAIN_CELERY_BROKER"))
app.conf.update(task_default_queue=QUEUE, task_ignore_result=True,
                worker_hijack_root_logger=False)

GATEWAY = os.environ.get("PLAIN_CELERY_GATEWAY", "http://127.0.0.1:8025").rstrip("/")
HTTP = urllib3.PoolManager(maxsize=1, retries=False,
                           timeout=urllib3.Timeout(connect=5.0, read=30.0))


@app.task(name=TASK)
def send(to: str, body: str, campaign: str, idempotency_key: str) -> None:
    payload = json.dumps({"to": to, "body": body, "campaign": campaign,
                          "idempotency_key": idempotency_key})
    response = HTTP.request("POST", f"{GATEWAY}/messages", body=payload,
                            headers={"Content-Type": "application/json",
                                     "Idempotency-Key": idempotency_key})
    if response.status != 200:
        raise RuntimeError(f"the gateway answered HTTP {response.status}")
