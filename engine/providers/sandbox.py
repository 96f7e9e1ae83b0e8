"""The sandbox gateway (``relaydesk gateway``), RelayDesk's default provider.

Its test numbers, by their last four digits: 0001 invalid (permanent), 0002 fail twice then
succeed, 0003 always transient, 0004 an empty balance (account-level), 0008 opted out (the
number joins the opt-out list). With a receiver it reports every accepted message delivered,
except 0006 (undelivered, "absent subscriber") and 0007 (never reported): reports arrive at
the receiver's sandbox callbacks, matched by the id ``send`` returns. It cannot be asked for
a message's status (``can_fetch_status``), as Africa's Talking cannot."""

from __future__ import annotations

import json

from engine.domain.sending import Outcome, SendResult, Sms
from engine.infra.sandbox_gateway import OPTED_OUT_ERROR
from engine.providers.base import (
    classify_status,
    parse_json,
    timed_request,
)
from engine.providers.http_client import ProviderHttp


class SandboxProvider:
    name = "sandbox"
    can_fetch_status = False

    def __init__(self, base_url: str, http: ProviderHttp) -> None:
        self.url = base_url.rstrip("/") + "/messages"
        self.http = http

    def send(self, sms: Sms, deadline: float | None = None) -> SendResult:
        body = json.dumps({"to": sms.to, "body": sms.body, "campaign": str(sms.campaign_id),
                           "idempotency_key": sms.idempotency_key})
        return timed_request(self.http, "POST", self.url, _interpret, deadline=deadline,
                             body=body, headers={"Content-Type": "application/json",
                                                 "Idempotency-Key": sms.idempotency_key})


def _interpret(status: int, data: bytes) -> SendResult:
    answer = parse_json(data)
    answer = answer if isinstance(answer, dict) else {}
    outcome = classify_status(status)
    if outcome is Outcome.SENT:
        return SendResult(outcome, provider_message_id=str(answer.get("id") or ""))
    if answer.get("error") == OPTED_OUT_ERROR:
        outcome = Outcome.OPTED_OUT
    return SendResult(outcome, error_type=str(answer.get("error") or f"HTTP {status}"),
                      error=str(answer.get("message") or f"HTTP {status}"))
