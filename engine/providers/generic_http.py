"""Any gateway that takes a JSON POST: URL, body template and auth header are settings.

The body template is JSON with ``{to}``, ``{body}``, ``{id}`` placeholders, e.g.
``{"to": "{to}", "message": "{body}", "reference": "{id}"}``; values are JSON-escaped.
"""

from __future__ import annotations

import json

from engine.domain.sending import Outcome, SendResult, Sms
from engine.providers.base import (
    classify_status,
    parse_json,
    timed_request,
)
from engine.providers.http_client import ProviderHttp

DEFAULT_BODY_TEMPLATE = '{"to": "{to}", "message": "{body}", "reference": "{id}"}'


class HttpJsonProvider:
    name = "http"
    can_fetch_status = False

    def __init__(self, url: str, http: ProviderHttp, body_template: str | None = None,
                 auth_header: str | None = None) -> None:
        self.url = url
        self.http = http
        self.body_template = body_template or DEFAULT_BODY_TEMPLATE
        self.headers = {"Content-Type": "application/json"}
        if auth_header:
            name, _, value = auth_header.partition(":")
            self.headers[name.strip()] = value.strip()

    def render_body(self, sms: Sms) -> str:
        values = {"{to}": sms.to, "{body}": sms.body, "{id}": sms.idempotency_key}
        text = self.body_template
        for placeholder, value in values.items():
            text = text.replace(placeholder, json.dumps(value)[1:-1])
        return text

    def send(self, sms: Sms, deadline: float | None = None) -> SendResult:
        headers = {**self.headers, "Idempotency-Key": sms.idempotency_key}
        return timed_request(self.http, "POST", self.url, _interpret, deadline=deadline,
                             body=self.render_body(sms), headers=headers)


def _interpret(status: int, data: bytes) -> SendResult:
    outcome = classify_status(status)
    answer = parse_json(data)
    if outcome is Outcome.SENT:
        message_id = answer.get("id") if isinstance(answer, dict) else None
        return SendResult(outcome, provider_message_id=str(message_id) if message_id else None)
    return SendResult(outcome, error_type=f"HTTP {status}",
                      error=data[:300].decode("utf-8", "replace") or f"HTTP {status}")
