"""Local stand-ins of the SMS providers' APIs, for end-to-end tests.

Each stand-in is a real HTTP server answering RelayDesk's requests exactly as the provider
documents (quoted on each class), and then plays the network's part: it posts the delivery
reports the provider would post, to the URL the provider was given, from a thread of its
own, a little later, in the order they were queued. What was received and what was posted
(with the receiver's answer) is kept for the test to check.

Only the providers are stood in for: RelayDesk's receiver, workers, Redis and database are
the real ones.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import queue
import re
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode

import urllib3

FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Received:
    """One request a stand-in received."""

    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def form(self) -> dict[str, str]:
        """A form-encoded body, each field's (first) value."""
        return {name: values[0] for name, values in
                parse_qs(self.body.decode(), keep_blank_values=True).items()}

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Posted:
    """One callback a stand-in posted, and the receiver's answer (0: no answer)."""

    url: str
    body: bytes
    status: int


@dataclass
class Callbacks:
    """Posts callbacks from one thread, each ``delay_s`` after it was queued, in order (a
    network's delivery reports come after the send's answer, not within it)."""

    delay_s: float = 0.05
    posted: list[Posted] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._queue: queue.Queue[tuple[float, str, bytes, dict[str, str]] | None] = \
            queue.Queue()
        self._lock = threading.Lock()
        self._waiting = 0
        self._stop = threading.Event()
        self._http = urllib3.PoolManager(maxsize=2, retries=False,
                                         timeout=urllib3.Timeout(connect=5, read=15))
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="stand-in-callbacks")
        self._thread.start()

    def later(self, url: str, body: bytes, headers: Mapping[str, str]) -> None:
        with self._lock:
            self._waiting += 1
        self._queue.put((time.monotonic() + self.delay_s, url, body, dict(headers)))

    def now(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        """Post at once (from the caller's thread); the receiver's HTTP status."""
        try:
            status = self._http.request("POST", url, body=body, headers=dict(headers)).status
        except urllib3.exceptions.HTTPError:
            status = 0
        with self._lock:
            self.posted.append(Posted(url, body, status))
        return status

    def settled(self) -> bool:
        """Every queued callback has been posted."""
        with self._lock:
            return self._waiting == 0

    def statuses(self) -> list[int]:
        with self._lock:
            return [p.status for p in self.posted]

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            due, url, body, headers = item
            if self._stop.wait(max(due - time.monotonic(), 0)):
                return
            self.now(url, body, headers)
            with self._lock:
                self._waiting -= 1

    def close(self) -> None:
        self._stop.set()
        self._queue.put(None)
        self._thread.join(10)
        self._http.clear()


class StandIn:
    """A provider's API on a free local port. Subclasses answer in ``answer``."""

    def __init__(self, delay_s: float = 0.05) -> None:
        self.received: list[Received] = []
        self.callbacks = Callbacks(delay_s)
        self.lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body leave at once

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = Received(self.command, self.path,
                                   {k.lower(): v for k, v in self.headers.items()}, body)
                with stand_in.lock:
                    stand_in.received.append(request)
                status, data = stand_in.answer(request)
                raw = data if isinstance(data, bytes) else json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if not isinstance(
                    data, bytes) else "text/plain")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True, name="stand-in")
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, request: Received) -> tuple[int, Any]:
        raise NotImplementedError

    def requests(self, method: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.method == method]

    def close(self) -> None:
        self.callbacks.close()
        self.server.shutdown()
        self.server.server_close()


# --- Twilio -----------------------------------------------------------------------------------

TWILIO_ACCOUNT = "AC" + "0123456789abcdef" * 2
TWILIO_TOKEN = "0123456789abcdef0123456789abcdef"  # an auth token's shape
TWILIO_FROM = "+15005550006"
UNDELIVERED_CODE = "30003"  # "Unreachable destination handset"


def twilio_signature(url: str, params: Mapping[str, str], auth_token: str = TWILIO_TOKEN
                     ) -> str:
    """``X-Twilio-Signature`` as Twilio documents it
    (https://www.twilio.com/docs/usage/security#validating-requests): "take the full URL of
    the request URL you specify for your phone number or app, including the query string;
    if the request is a POST, sort all of the POST parameters alphabetically (using
    Unix-style case-sensitive sorting order); iterate through the sorted list of POST
    parameters, and append the variable name and value (with no delimiters) to the end of
    the URL string; sign the resulting string with HMAC-SHA1 using your AuthToken as the
    key; Base64 encode the resulting hash value"."""
    signed = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(auth_token.encode(), signed.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def twilio_headers(url: str, params: Mapping[str, str], auth_token: str = TWILIO_TOKEN
                   ) -> dict[str, str]:
    return {"Content-Type": FORM,
            "X-Twilio-Signature": twilio_signature(url, params, auth_token)}


def twilio_basic_auth() -> str:
    return "Basic " + base64.b64encode(f"{TWILIO_ACCOUNT}:{TWILIO_TOKEN}".encode()).decode()


@dataclass
class TwilioMessage:
    sid: str
    to: str
    body: str
    final: str  # delivered or undelivered
    lookups: int = 0


class TwilioStandIn(StandIn):
    """Twilio's Programmable Messaging REST API
    (https://www.twilio.com/docs/messaging/api/message-resource), as documented:

    - ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``, form-encoded ``To``,
      ``From`` (or ``MessagingServiceSid``), ``Body``, optional ``StatusCallback``, HTTP
      Basic auth with the account SID and auth token ("401 ... code 20003 Authenticate"
      otherwise). Answers 201 with the new Message resource: ``sid`` ("SM" and 32 hex
      digits), ``status`` "queued" ("Message created without a Messaging Service: queued").
    - ``GET /2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json`` answers 200 with the
      resource; ``error_code`` "The error code returned if the Message status is failed or
      undelivered", ``error_message`` its description. An unknown SID: 404 with
      ``code`` 20404.
    - Status callbacks (https://www.twilio.com/docs/messaging/guides/
      outbound-message-status-in-status-callbacks): "A status callback request is not sent
      for the initial status of a newly created Message resource"; then Twilio POSTs
      form-encoded ``MessageSid, MessageStatus, AccountSid, From, To, ApiVersion, SmsSid,
      SmsStatus`` (and ``ErrorCode`` for failed or undelivered messages) to the
      ``StatusCallback`` URL, for sent, then delivered or undelivered, signed with
      ``X-Twilio-Signature`` (``twilio_signature``).

    A message to a number in ``undelivered`` ends "undelivered" with ErrorCode 30003
    ("Unreachable destination handset"); the others "delivered". For numbers in
    ``duplicated`` the final callback is posted twice; for ``reordered`` the final one comes
    before "sent"; for ``late`` the first look-up (GET) still answers "sent".
    """

    MESSAGES = re.compile(rf"^/2010-04-01/Accounts/{TWILIO_ACCOUNT}/Messages\.json$")
    MESSAGE = re.compile(rf"^/2010-04-01/Accounts/{TWILIO_ACCOUNT}/Messages/(\w+)\.json$")

    def __init__(self, *, undelivered: Iterable[str] = (), duplicated: Iterable[str] = (),
                 reordered: Iterable[str] = (), late: Iterable[str] = (),
                 delay_s: float = 0.05) -> None:
        self.undelivered = frozenset(undelivered)
        self.duplicated = frozenset(duplicated)
        self.reordered = frozenset(reordered)
        self.late = frozenset(late)
        self.messages: dict[str, TwilioMessage] = {}
        super().__init__(delay_s)

    def answer(self, request: Received) -> tuple[int, Any]:
        if request.headers.get("authorization") != twilio_basic_auth():
            return 401, {"code": 20003, "message": "Authenticate", "status": 401,
                         "more_info": "https://www.twilio.com/docs/errors/20003"}
        if request.method == "POST" and self.MESSAGES.match(request.path):
            return self._create(request.form())
        match = self.MESSAGE.match(request.path)
        if request.method == "GET" and match:
            with self.lock:
                message = self.messages.get(match.group(1))
                if message is not None:
                    message.lookups += 1
            if message is not None:
                status = "sent" if message.to in self.late and message.lookups == 1 \
                    else message.final
                return 200, self.resource(message, status)
        return 404, {"code": 20404, "message": f"The requested resource {request.path} was "
                     "not found", "more_info": "https://www.twilio.com/docs/errors/20404",
                     "status": 404}

    def _create(self, form: dict[str, str]) -> tuple[int, Any]:
        if not form.get("To"):
            return 400, {"code": 21604, "message": "A 'To' phone number is required.",
                         "status": 400}
        final = "undelivered" if form["To"] in self.undelivered else "delivered"
        message = TwilioMessage(f"SM{uuid.uuid4().hex}", form["To"], form.get("Body", ""),
                                final)
        with self.lock:
            self.messages[message.sid] = message
        callback = form.get("StatusCallback")
        if callback:
            order = ["sent", final]
            if message.to in self.reordered:
                order = [final, "sent"]
            if message.to in self.duplicated:
                order.append(final)
            for status in order:
                params = self.status_params(message, status)
                self.callbacks.later(callback, urlencode(params).encode(),
                                     twilio_headers(callback, params))
        return 201, self.resource(message, "queued")

    @staticmethod
    def status_params(message: TwilioMessage, status: str) -> dict[str, str]:
        params = {"MessageSid": message.sid, "MessageStatus": status, "SmsSid": message.sid,
                  "SmsStatus": status, "AccountSid": TWILIO_ACCOUNT, "From": TWILIO_FROM,
                  "To": message.to, "ApiVersion": "2010-04-01"}
        if status in ("undelivered", "failed"):
            params["ErrorCode"] = UNDELIVERED_CODE
        return params

    @staticmethod
    def resource(message: TwilioMessage, status: str) -> dict[str, Any]:
        failed = status in ("undelivered", "failed")
        return {"sid": message.sid, "account_sid": TWILIO_ACCOUNT, "status": status,
                "to": message.to, "from": TWILIO_FROM, "body": message.body,
                "direction": "outbound-api", "num_segments": "1", "api_version": "2010-04-01",
                "error_code": int(UNDELIVERED_CODE) if failed else None,
                "error_message": "Unreachable destination handset" if failed else None,
                "uri": f"/2010-04-01/Accounts/{TWILIO_ACCOUNT}/Messages/{message.sid}.json"}

    def post_signed(self, url: str, params: Mapping[str, str],
                    auth_token: str = TWILIO_TOKEN) -> int:
        """Post a callback now, signed with ``auth_token`` (another one forges it)."""
        return self.callbacks.now(url, urlencode(params).encode(),
                                  twilio_headers(url, params, auth_token))

    def reply(self, url: str, sender: str, text: str) -> int:
        """A member's SMS to our number, as Twilio posts it to the number's messaging
        webhook (https://www.twilio.com/docs/messaging/guides/webhook-request): form-encoded
        ``MessageSid, SmsSid, AccountSid, From, To, Body, NumMedia``, signed."""
        sid = f"SM{uuid.uuid4().hex}"
        return self.post_signed(url, {"MessageSid": sid, "SmsSid": sid, "SmsMessageSid": sid,
                                      "AccountSid": TWILIO_ACCOUNT, "From": sender,
                                      "To": TWILIO_FROM, "Body": text, "NumMedia": "0",
                                      "ApiVersion": "2010-04-01"})

    def sent_to(self) -> list[str]:
        """Who each create request was for, in order."""
        return [r.form().get("To", "") for r in self.requests("POST")]

    def by_number(self) -> dict[str, TwilioMessage]:
        with self.lock:
            return {m.to: m for m in self.messages.values()}


# --- Africa's Talking -------------------------------------------------------------------------

AT_USERNAME = "relaydesk"
AT_API_KEY = "atsk_0123456789abcdef0123456789abcdef"
AT_FAILURE = "DeliveryFailure"
AT_NETWORK = "63902"  # Safaricom


class AfricasTalkingStandIn(StandIn):
    """Africa's Talking's SMS API (https://developers.africastalking.com/docs/sms/sending),
    as documented:

    - ``POST /version1/messaging``, form-encoded ``username``, ``to``, ``message``, optional
      ``from``, with the ``apiKey`` header ("The supplied authentication is invalid", 401,
      otherwise). Answers 201 with ``{"SMSMessageData": {"Message": "Sent to 1/1 Total
      Cost: KES 0.8000", "Recipients": [{"statusCode": 101, "number": "+254711XXXYYY",
      "status": "Success", "cost": "KES 0.8000", "messageId": "ATPid_SampleTxnId123"}]}}``;
      statusCode "100: Processed, 101: Sent, 102: Queued" (401-409 and 5xx: refusals).
    - Delivery reports (https://developers.africastalking.com/docs/sms/notifications),
      unsigned, POSTed form-encoded to the delivery report callback URL set in the
      dashboard: ``id`` ("the same as the one in the response when a message is sent"),
      ``status`` ("Sent", "Submitted", "Buffered", then "Rejected", "Success" or "Failed":
      "This is a final status"), ``phoneNumber``, ``networkCode``, ``failureReason`` ("Only
      provided if status is Rejected or Failed"), ``retryCount``.
    - Bulk SMS opt-out notifications: "Sent whenever a user opts out of receiving messages
      from your alphanumeric sender ID", form-encoded ``senderId``, ``phoneNumber``.

    Messages to numbers in ``failed`` end "Failed" (failureReason DeliveryFailure); the
    others "Success". Each first gets "Submitted" (for ``duplicated`` numbers the final
    report comes twice).
    """

    def __init__(self, reports_url: str, *, failed: Iterable[str] = (),
                 duplicated: Iterable[str] = (), delay_s: float = 0.05) -> None:
        self.reports_url = reports_url  # the delivery report callback URL
        self.failed = frozenset(failed)
        self.duplicated = frozenset(duplicated)
        self.ids: dict[str, str] = {}  # number -> messageId
        super().__init__(delay_s)

    def answer(self, request: Received) -> tuple[int, Any]:
        if request.method != "POST" or request.path != "/version1/messaging":
            return 404, b"Not Found"
        if request.headers.get("apikey") != AT_API_KEY:
            return 401, b"The supplied authentication is invalid"
        form = request.form()
        if form.get("username") != AT_USERNAME:
            return 401, b"The supplied authentication is invalid"
        number = form.get("to", "")
        message_id = f"ATXid_{uuid.uuid4().hex}"
        with self.lock:
            self.ids[number] = message_id
        final = ["Failed" if number in self.failed else "Success"]
        for status in ["Submitted", *(final * (2 if number in self.duplicated else 1))]:
            self.callbacks.later(self.reports_url, urlencode(
                self.report(message_id, number, status)).encode(), {"Content-Type": FORM})
        return 201, {"SMSMessageData": {
            "Message": "Sent to 1/1 Total Cost: KES 0.8000",
            "Recipients": [{"statusCode": 101, "number": number, "status": "Success",
                            "cost": "KES 0.8000", "messageId": message_id}]}}

    @staticmethod
    def report(message_id: str, number: str, status: str) -> dict[str, str]:
        fields = {"id": message_id, "status": status, "phoneNumber": number,
                  "networkCode": AT_NETWORK, "retryCount": "0"}
        if status in ("Failed", "Rejected"):
            fields["failureReason"] = AT_FAILURE
        return fields

    def post_form(self, url: str, fields: Mapping[str, str]) -> int:
        return self.callbacks.now(url, urlencode(fields).encode(), {"Content-Type": FORM})

    def sent_to(self) -> list[str]:
        return [r.form().get("to", "") for r in self.requests("POST")]


# --- the generic HTTP gateway ---------------------------------------------------------------

HTTP_AUTH = "Bearer gw-0123456789abcdef"


class HttpGatewayStandIn(StandIn):
    """A gateway for RelayDesk's generic HTTP provider, as RelayDesk documents it
    (engine/providers/generic_http.py and the README):

    - ``POST /send`` with the JSON body of RELAYDESK_SMS_HTTP_BODY_TEMPLATE (by default
      ``{"to": "{to}", "message": "{body}", "reference": "{id}"}``), the
      RELAYDESK_SMS_HTTP_AUTH_HEADER and an ``Idempotency-Key``; any 2xx with
      ``{"id": "<the gateway's message id>"}`` is accepted.
    - Delivery reports: JSON ``{"id": ..., "status": "delivered" | "undelivered" | "failed"
      | "rejected" | "expired" | "sent" | ..., "reason": ...}`` POSTed to
      ``/callbacks/http/{token}/delivery``; anything but the final words is intermediate.

    Numbers in ``failed`` end "failed" (reason "absent subscriber"), after "sent".
    """

    def __init__(self, reports_url: str, *, failed: Iterable[str] = (),
                 delay_s: float = 0.05) -> None:
        self.reports_url = reports_url
        self.failed = frozenset(failed)
        self.ids: dict[str, str] = {}
        self._next = itertools.count(1)
        super().__init__(delay_s)

    def answer(self, request: Received) -> tuple[int, Any]:
        if request.method != "POST" or request.path != "/send":
            return 404, {"error": "not found"}
        if request.headers.get("authorization") != HTTP_AUTH:
            return 401, {"error": "unauthorized"}
        body = request.json()
        message_id = f"gw-{next(self._next)}-{uuid.uuid4().hex[:8]}"
        with self.lock:
            self.ids[body["to"]] = message_id
        final: dict[str, str] = {"id": message_id, "status": "delivered"}
        if body["to"] in self.failed:
            final = {"id": message_id, "status": "failed", "reason": "absent subscriber"}
        for report in ({"id": message_id, "status": "sent"}, final):
            self.callbacks.later(self.reports_url, json.dumps(report).encode(),
                                 {"Content-Type": "application/json"})
        return 200, {"id": message_id}

    def post_json(self, url: str, data: Mapping[str, str]) -> int:
        return self.callbacks.now(url, json.dumps(data).encode(),
                                  {"Content-Type": "application/json"})

    def sent_to(self) -> list[str]:
        return [r.json()["to"] for r in self.requests("POST")]
