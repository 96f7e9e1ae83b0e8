"""Africa's Talking SMS: ``POST /version1/messaging``, form-encoded, ``apiKey`` header.

A 201 answer still carries a per-recipient ``statusCode``: 100-102 mean accepted, the
others say why not (documented in the SMS API reference).
"""

from __future__ import annotations

from engine.domain.sending import Outcome, SendResult, Sms
from engine.providers.base import (
    classify_status,
    parse_json,
    timed_request,
)
from engine.providers.http_client import ProviderHttp

DEFAULT_API_URL = "https://api.africastalking.com"
SENT_CODES = {100, 101, 102}
ACCOUNT_CODES = {401, 402, 405}  # RiskHold, InvalidSenderId, InsufficientBalance
PERMANENT_CODES = {403, 404, 409}  # InvalidPhoneNumber, UnsupportedNumberType, DND
# UserInBlacklist: the recipient opted out of this sender; the number joins the opt-out list.
OPTED_OUT_CODES = {406}
# 407 CouldNotRoute, 500 InternalServerError, 501 GatewayError, 502 RejectedByGateway: retry


class AfricasTalkingProvider:
    name = "africastalking"
    can_fetch_status = False

    def __init__(self, username: str, api_key: str, http: ProviderHttp,
                 sender_id: str | None = None, api_url: str | None = None) -> None:
        self.url = (api_url or DEFAULT_API_URL).rstrip("/") + "/version1/messaging"
        self.username = username
        self.sender_id = sender_id
        self.http = http
        self.headers = {"apiKey": api_key, "Accept": "application/json"}

    def send(self, sms: Sms, deadline: float | None = None) -> SendResult:
        fields = {"username": self.username, "to": sms.to, "message": sms.body}
        if self.sender_id:
            fields["from"] = self.sender_id
        return timed_request(self.http, "POST", self.url, _interpret, deadline=deadline,
                             fields=fields, encode_multipart=False, headers=self.headers)


def _interpret(status: int, data: bytes) -> SendResult:
    outcome = classify_status(status)
    answer = parse_json(data)
    if outcome is not Outcome.SENT:
        text = data[:300].decode("utf-8", "replace")
        return SendResult(outcome, error_type=f"HTTP {status}", error=text or f"HTTP {status}")
    try:
        recipient = answer["SMSMessageData"]["Recipients"][0]
        code = int(recipient["statusCode"])
    except (TypeError, KeyError, IndexError, ValueError):
        message = ""
        if isinstance(answer, dict):
            message = str(answer.get("SMSMessageData", {}).get("Message", ""))
        return SendResult(Outcome.PERMANENT, error_type="NoRecipient",
                          error=message or "the answer listed no recipient")
    if code in SENT_CODES:
        return SendResult(Outcome.SENT, provider_message_id=str(recipient.get("messageId", "")))
    if code in ACCOUNT_CODES:
        outcome = Outcome.ACCOUNT
    elif code in PERMANENT_CODES:
        outcome = Outcome.PERMANENT
    elif code in OPTED_OUT_CODES:
        outcome = Outcome.OPTED_OUT
    else:
        outcome = Outcome.TRANSIENT
    return SendResult(outcome, error_type=f"AT {code} {recipient.get('status', '')}".strip(),
                      error=str(recipient.get("status") or code))
