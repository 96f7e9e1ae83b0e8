"""Twilio Programmable Messaging: ``POST /2010-04-01/Accounts/{Sid}/Messages.json``,
form-encoded, HTTP Basic auth with the account SID and auth token."""

from __future__ import annotations

import urllib3

from engine.domain.sending import Outcome, SendResult, Sms
from engine.providers.base import (
    classify_status,
    parse_json,
    timed_request,
)
from engine.providers.http_client import ProviderHttp

DEFAULT_API_URL = "https://api.twilio.com"
# Twilio error codes that mean no message can go out until the account is fixed.
ACCOUNT_CODES = {20003, 20005, 20008, 21606, 30002}
# Codes that mean this recipient cannot be messaged (invalid, blocked, unreachable).
PERMANENT_CODES = {21211, 21214, 21408, 21612, 21614, 30003, 30004, 30005, 30006}
# 21610 "Attempt to send to unsubscribed recipient": the recipient replied STOP; Twilio
# refuses every message until they reply START, so the number joins the opt-out list.
OPTED_OUT_CODES = {21610}


class TwilioProvider:
    name = "twilio"
    can_fetch_status = False

    def __init__(self, account_sid: str, auth_token: str, sender: str,
                 http: ProviderHttp, api_url: str | None = None) -> None:
        base = (api_url or DEFAULT_API_URL).rstrip("/")
        self.url = f"{base}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self.sender = sender
        self.http = http
        self.headers = urllib3.make_headers(basic_auth=f"{account_sid}:{auth_token}")

    def send(self, sms: Sms, deadline: float | None = None) -> SendResult:
        # A Messaging Service SID (MG...) stands in for a From number.
        sender_field = "MessagingServiceSid" if self.sender.startswith("MG") else "From"
        fields = {"To": sms.to, "Body": sms.body, sender_field: self.sender}
        return timed_request(self.http, "POST", self.url, _interpret, deadline=deadline,
                             fields=fields, encode_multipart=False, headers=self.headers)


def _interpret(status: int, data: bytes) -> SendResult:
    answer = parse_json(data)
    answer = answer if isinstance(answer, dict) else {}
    outcome = classify_status(status)
    if outcome is Outcome.SENT:
        return SendResult(outcome, provider_message_id=str(answer.get("sid") or ""))
    code = answer.get("code")
    if code in ACCOUNT_CODES:
        outcome = Outcome.ACCOUNT
    elif code in PERMANENT_CODES:
        outcome = Outcome.PERMANENT
    elif code in OPTED_OUT_CODES:
        outcome = Outcome.OPTED_OUT
    return SendResult(outcome, error_type=f"Twilio {code}" if code else f"HTTP {status}",
                      error=str(answer.get("message") or f"HTTP {status}"))
