"""Twilio Programmable Messaging: ``POST /2010-04-01/Accounts/{Sid}/Messages.json``,
form-encoded, HTTP Basic auth with the account SID and auth token; and the status of a
sent message, ``GET /2010-04-01/Accounts/{Sid}/Messages/{MessageSid}.json``, for the
messages whose status callback never reached us (engine.pipeline.report_poller)."""

from __future__ import annotations

import logging
import time
from http.client import HTTPException
from urllib.parse import quote

import urllib3

from engine.domain.delivery import DeliveryStatus, Report, ReportKind
from engine.domain.sending import Outcome, SendResult, Sms
from engine.providers.base import (
    classify_status,
    describe_request_error,
    parse_json,
    timed_request,
)
from engine.providers.http_client import ProviderHttp

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.twilio.com"
# Where the receiver takes Twilio's status callbacks, under RELAYDESK_PUBLIC_URL.
STATUS_CALLBACK_PATH = "/callbacks/twilio/status"
# Twilio error codes that mean no message can go out until the account is fixed.
ACCOUNT_CODES = {20003, 20005, 20008, 21606, 30002}
# Codes that mean this recipient cannot be messaged (invalid, blocked, unreachable).
PERMANENT_CODES = {21211, 21214, 21408, 21612, 21614, 30003, 30004, 30005, 30006}
# 21610 "Attempt to send to unsubscribed recipient": the recipient replied STOP; Twilio
# refuses every message until they reply START, so the number joins the opt-out list.
OPTED_OUT_CODES = {21610}

# The Message resource's final statuses, the same words in a status callback's
# MessageStatus (https://www.twilio.com/docs/messaging/api/message-resource#message-status-
# values; the rest: accepted, scheduled, queued, sending, sent, receiving, received,
# partially_delivered are on the way, or not about delivery). "read" (channels with read
# receipts) comes after "delivered"; "canceled" is a scheduled message that never went.
DELIVERED_STATUSES = frozenset({"delivered", "read"})
UNDELIVERED_STATUSES = frozenset({"undelivered", "failed", "canceled"})
# What Twilio's documentation calls its delivery error codes
# (https://www.twilio.com/docs/api/errors). A status callback carries only ErrorCode (a
# look-up also error_message): the text comes from the code alone, so the operator reads
# the same reason whichever of the two reported it.
DELIVERY_ERRORS = {
    "30001": "Queue overflow", "30002": "Account suspended",
    "30003": "Unreachable destination handset", "30004": "Message blocked",
    "30005": "Unknown destination handset", "30006": "Landline or unreachable carrier",
    "30007": "Message filtered", "30008": "Unknown error", "30009": "Missing segment",
    "30010": "Message price exceeds max price",
}
# Status look-ups get their own connections: one never waits for a send's, nor holds one.
STATUS_POOL_SIZE = 2


def status_callback_url(public_url: str | None) -> str | None:
    """The StatusCallback every send carries when the receiver is reachable from outside."""
    if not public_url or not public_url.strip():
        return None
    return public_url.strip().rstrip("/") + STATUS_CALLBACK_PATH


def twilio_status(provider_status: str) -> DeliveryStatus | None:
    """Twilio's word for a message's status (a callback's MessageStatus, a look-up's
    status), as a delivery status (None: not final)."""
    word = provider_status.lower()
    if word in DELIVERED_STATUSES:
        return DeliveryStatus.DELIVERED
    if word in UNDELIVERED_STATUSES:
        return DeliveryStatus.UNDELIVERED
    return None


def twilio_error(provider_status: str, code: object) -> str:
    """Why Twilio did not deliver, the same from a callback and a look-up: "Twilio 30003:
    Unreachable destination handset" (a code described in DELIVERY_ERRORS), "Twilio
    63999" (any other code), "Twilio: failed" (no code)."""
    number = "" if code is None else str(code).strip()
    if not number:
        return f"Twilio: {provider_status.lower()}"
    description = DELIVERY_ERRORS.get(number)
    return f"Twilio {number}: {description}" if description else f"Twilio {number}"


class TwilioProvider:
    name = "twilio"
    can_fetch_status = True

    def __init__(self, account_sid: str, auth_token: str, sender: str,
                 http: ProviderHttp, api_url: str | None = None,
                 status_callback: str | None = None,
                 status_http: ProviderHttp | None = None) -> None:
        base = (api_url or DEFAULT_API_URL).rstrip("/")
        self.messages_url = f"{base}/2010-04-01/Accounts/{account_sid}/Messages"
        self.url = self.messages_url + ".json"
        self.sender = sender
        self.http = http
        self.status_callback = status_callback
        # Not the send pool: look-ups must never take a connection a send waits for.
        self.status_http = status_http or ProviderHttp(http.timeout_s, STATUS_POOL_SIZE)
        self.headers = urllib3.make_headers(basic_auth=f"{account_sid}:{auth_token}")

    def send(self, sms: Sms, deadline: float | None = None) -> SendResult:
        # A Messaging Service SID (MG...) stands in for a From number.
        sender_field = "MessagingServiceSid" if self.sender.startswith("MG") else "From"
        fields = {"To": sms.to, "Body": sms.body, sender_field: self.sender}
        if self.status_callback:
            fields["StatusCallback"] = self.status_callback
        return timed_request(self.http, "POST", self.url, _interpret, deadline=deadline,
                             fields=fields, encode_multipart=False, headers=self.headers)

    def fetch_status(self, provider_message_id: str, deadline: float | None = None
                     ) -> Report | None:
        """The message's status as Twilio has it now, or None when there is nothing to
        learn this time: not found (404: Twilio does not know the SID; the message expires
        in time), throttled, Twilio's own trouble or no answer (asked again later)."""
        url = f"{self.messages_url}/{quote(provider_message_id, safe='')}.json"
        try:
            response = self.status_http.request("GET", url, deadline=deadline,
                                                headers=self.headers)
        except (urllib3.exceptions.HTTPError, HTTPException, OSError, ValueError) as exc:
            error_type, error = describe_request_error(exc, url)
            log.warning("Twilio status look-up failed (%s: %s); it is tried again later",
                        error_type, error)
            return None
        if response.status != 200:
            if response.status in (401, 403):
                log.error("Twilio refused a status look-up (HTTP %d): check "
                          "RELAYDESK_TWILIO_ACCOUNT_SID and RELAYDESK_TWILIO_AUTH_TOKEN",
                          response.status)
            elif response.status != 404:
                log.info("Twilio answered a status look-up with HTTP %d; it is tried "
                         "again later", response.status)
            return None
        answer = parse_json(response.data)
        if not isinstance(answer, dict) or not isinstance(answer.get("status"), str):
            log.warning("Twilio's answer to a status look-up has no status; it is tried "
                        "again later")
            return None
        provider_status = answer["status"]
        status = twilio_status(provider_status)
        error = twilio_error(provider_status, answer.get("error_code"))
        return Report(kind=ReportKind.STATUS, provider=self.name,
                      message_id=provider_message_id, status=status,
                      provider_status=provider_status,
                      error=error if status is DeliveryStatus.UNDELIVERED else "",
                      received_at=time.time())


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
