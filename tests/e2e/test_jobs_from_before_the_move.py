"""Work queued before the engine moved into layers is delivered after it (issue 12).

Scheduled jobs and Celery messages name their task by an explicit string
(``relaydesk.send_message``, ``relaydesk.send_chunk``, ``relaydesk.process_bulk``), never
by a module path, so jobs waiting in Redis across an upgrade still find their task. The
entries below are literal bytes in the formats the code before the move (commit 4733c1a)
wrote; a real worker of today runs them.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from engine.config.settings import load_settings
from engine.infra.sandbox_gateway import GatewayServer
from engine.store.db import open_database
from engine.store.models import OutgoingMessage
from tests.conftest import Workers
from tests.support import http_json, run_cli, run_cli_json, wait_for, write_contacts

# The durable schedule (sorted set relaydesk:scheduled) as 4733c1a's scheduler.Job.encode
# wrote it: compact JSON with id, task, args, queue.
OLD_SCHEDULED = [
    # Campaign 1 (individual route): message 1, paced.
    b'{"id":"4b7e0c1d9a3f4e5b8c2d1e0f9a8b7c6d","task":"relaydesk.send_message",'
    b'"args":[1,1,false],"queue":"messages"}',
    # Campaign 3 (bulk route): its chunk, as 4733c1a's process_bulk scheduled it.
    b'{"id":"9c8b7a6f5e4d4c3b2a1f0e9d8c7b6a59","task":"relaydesk.send_chunk",'
    b'"args":[3,[6,7,8]],"queue":"bulk_messages"}',
]

# Celery messages as kombu's Redis transport keeps them in a queue list, published by
# 4733c1a's celery_app.publish (protocol 2, the body base64 JSON [args, kwargs, embed],
# the relaydesk_published header).
OLD_BROKER = {
    # Campaign 1, message 2: released from the schedule, waiting in the queue.
    "messages": (
        b'{"body": "W1sxLCAyLCBmYWxzZV0sIHt9LCB7ImNhbGxiYWNrcyI6IG51bGwsICJlcnJiYWNrcyI6IG51bGws'
        b'ICJjaGFpbiI6IG51bGwsICJjaG9yZCI6IG51bGx9XQ==", "content-encoding": "utf-8", '
        b'"content-type": "application/json", "headers": {"lang": "py", "task": '
        b'"relaydesk.send_message", "id": "0b6f4a0e-5d1c-4c8e-9a57-3f2d1c0b9e81", "shadow": '
        b'null, "eta": null, "expires": null, "group": null, "group_index": null, "retries": 0, '
        b'"timelimit": [null, null], "root_id": "0b6f4a0e-5d1c-4c8e-9a57-3f2d1c0b9e81", '
        b'"parent_id": null, "argsrepr": "[1, 2, False]", "kwargsrepr": "{}", "origin": '
        b'"gen14801@vm", "ignore_result": null, "replaced_task_nesting": 0, "stamped_headers": '
        b'null, "stamps": {}, "relaydesk_published": 1796149084.108592}, "properties": '
        b'{"correlation_id": "0b6f4a0e-5d1c-4c8e-9a57-3f2d1c0b9e81", "reply_to": '
        b'"5995b67a-34ed-3d20-a49a-13ff17a9c1eb", "delivery_mode": 2, "delivery_info": '
        b'{"exchange": "", "routing_key": "messages"}, "priority": 0, "body_encoding": '
        b'"base64", "delivery_tag": "b39e18bf-1e97-4348-a5f6-ee246e0f8533"}}'),
    # Campaign 2 (bulk route): its bulk job, not yet split into chunks.
    "bulk_messages": (
        b'{"body": "W1syXSwge30sIHsiY2FsbGJhY2tzIjogbnVsbCwgImVycmJhY2tzIjogbnVsbCwgImNoYWluIjog'
        b'bnVsbCwgImNob3JkIjogbnVsbH1d", "content-encoding": "utf-8", "content-type": '
        b'"application/json", "headers": {"lang": "py", "task": "relaydesk.process_bulk", "id": '
        b'"7d2e9c4a-1b3f-4e6d-8a0c-5f9b2e7d4c13", "shadow": null, "eta": null, "expires": null, '
        b'"group": null, "group_index": null, "retries": 0, "timelimit": [null, null], '
        b'"root_id": "7d2e9c4a-1b3f-4e6d-8a0c-5f9b2e7d4c13", "parent_id": null, "argsrepr": '
        b'"[2]", "kwargsrepr": "{}", "origin": "gen14801@vm", "ignore_result": null, '
        b'"replaced_task_nesting": 0, "stamped_headers": null, "stamps": {}, '
        b'"relaydesk_published": 1796149084.1094785}, "properties": {"correlation_id": '
        b'"7d2e9c4a-1b3f-4e6d-8a0c-5f9b2e7d4c13", "reply_to": '
        b'"5995b67a-34ed-3d20-a49a-13ff17a9c1eb", "delivery_mode": 2, "delivery_info": '
        b'{"exchange": "", "routing_key": "bulk_messages"}, "priority": 0, "body_encoding": '
        b'"base64", "delivery_tag": "1065b7b5-cf57-4c0d-9ed6-d7f6e395c384"}}'),
}

RECIPIENTS = {"solo": 2, "bulk": 3, "chunk": 3}  # campaigns 1, 2 and 3, in this order


def message_ids() -> dict[int, list[int]]:
    db = open_database(load_settings())
    with db.session() as session:
        ids: dict[int, list[int]] = {}
        for campaign, message in session.execute(
                select(OutgoingMessage.campaign_id, OutgoingMessage.id)
                .order_by(OutgoingMessage.id)):
            ids.setdefault(campaign, []).append(message)
        return ids


def test_jobs_queued_before_the_move_are_delivered(
        tmp_path: Path, gateway: GatewayServer, workers: Workers, redis_client: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYDESK_BULK_THRESHOLD", "3")
    due = (date.today() + timedelta(days=5)).isoformat()
    rows = [(f"{tag} {i}", f"07{n}{i:04d}55", "500", "0", due, tag)
            for n, (tag, count) in enumerate(RECIPIENTS.items(), start=11)
            for i in range(count)]
    assert run_cli("contacts", "import", str(write_contacts(tmp_path / "c.csv", rows))
                   ).returncode == 0
    # The campaigns' rows, as the code before the move left them; no worker runs yet.
    campaigns = [int(run_cli_json("campaign", "send", "--template", "Hi #name", "--tag",
                                  tag)["campaign"]) for tag in RECIPIENTS]
    assert campaigns == [1, 2, 3]
    assert message_ids() == {1: [1, 2], 2: [3, 4, 5], 3: [6, 7, 8]}
    # Today's jobs out, the old ones in: what Redis held when the new version started.
    redis_client.flushdb()
    redis_client.zadd("relaydesk:scheduled", {raw: time.time() for raw in OLD_SCHEDULED})
    for queue, raw in OLD_BROKER.items():
        redis_client.lpush(queue, raw)

    workers.start()

    def status(campaign: int) -> dict[str, Any]:
        return run_cli_json("campaign", "status", str(campaign))

    wait_for(lambda: all(status(c)["status"] == "completed" for c in campaigns),
             timeout=120, message="the campaigns queued before the move to complete")
    for campaign, count in zip(campaigns, RECIPIENTS.values(), strict=True):
        summary = status(campaign)
        assert (summary["sent"], summary["dead"]) == (count, 0)
    delivered = [(m["campaign"], m["to"]) for m in http_json(gateway.url + "/messages")]
    assert Counter(c for c, _ in delivered) == {"1": 2, "2": 3, "3": 3}
    assert len(set(delivered)) == len(delivered), "someone got a message twice"
