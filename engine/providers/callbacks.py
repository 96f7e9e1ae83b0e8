"""What providers post to the receiver, turned into Reports: parsing and verification only.

No I/O here: the receiver (engine.pipeline.receiver) reads the request and stores the
Report; these functions decide what the request says, or raise a CallbackError carrying
the HTTP status to answer. Every message in a CallbackError names fields, never their
values, so it can be logged and answered as it is.

Formats, as each provider documents them:

- Twilio (form-encoded, signed with ``X-Twilio-Signature``): status callbacks carry
  ``MessageSid``, ``MessageStatus`` (queued, sending, sent, delivered, undelivered,
  failed, read, ...) and ``ErrorCode``; incoming messages ``MessageSid``, ``From``, ``To``,
  ``Body``.
- Africa's Talking (form-encoded, unsigned: guarded by the secret token in the path):
  delivery reports ``id, status, phoneNumber, networkCode, failureReason, retryCount``;
  incoming messages ``from, to, text, date, id, linkId``; bulk SMS opt-outs
  ``phoneNumber, senderId``.
- The generic HTTP gateway and the sandbox (JSON, token in the path): delivery
  ``{"id", "status", "reason"}``, incoming ``{"from", "text", "id", "to"}``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from engine.domain.delivery import DeliveryStatus, Report, ReportKind
from engine.domain.phones import PhoneError, normalize_phone
from engine.providers import twilio

# --- the routes (the receiver serves them; the Settings page and the providers name them) -

DEFAULT_PORT = 8026  # the receiver's, when RELAYDESK_RECEIVER_PORT is not set
CALLBACKS = "/callbacks"
TWILIO_STATUS_PATH = twilio.STATUS_CALLBACK_PATH  # every send's StatusCallback names it
TWILIO_INBOUND_PATH = f"{CALLBACKS}/twilio/inbound"
# Providers whose callbacks carry the secret token in their path, and what each posts.
TOKEN_ROUTES: dict[str, tuple[str, ...]] = {
    "africastalking": ("delivery", "inbound", "optout"),
    "http": ("delivery", "inbound"),
    "sandbox": ("delivery", "inbound"),
}


def token_path(provider: str, token: str, what: str) -> str:
    """``/callbacks/africastalking/{token}/delivery`` and the like."""
    return f"{CALLBACKS}/{provider}/{token}/{what}"


# --- errors -------------------------------------------------------------------------------

class CallbackError(Exception):
    """A callback the receiver refuses; ``status`` is the HTTP status to answer.

    400: malformed or missing a required field (the provider should not retry);
    403: Twilio signature missing or wrong; 404: wrong token; 413: body too large;
    415: wrong content type.
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


# --- bounds (the database columns' sizes: engine/store/models.py) --------------------------

MAX_ID = 128  # delivery_reports.provider_message_id, inbound_messages.provider_ref
MAX_STATUS = 32  # delivery_reports.provider_status
MAX_PHONE = 20  # inbound_messages.phone, opt_out_events.phone
MAX_TO = 32  # inbound_messages.to
MAX_ERROR = 300
MAX_TEXT = 4000  # Twilio takes at most 1600 characters; a provider's reply is far below
MAX_FIELDS = 100  # Twilio posts about 20 fields; a form with hundreds is not a callback

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_DIALLABLE = re.compile(r"\+?[0-9 ().\-]+")
_NUL = re.compile(r"\x00")  # PostgreSQL text cannot hold it; a message body may hold the rest


def _line(value: str, limit: int) -> str:
    """A one-line field: control characters removed, surrounding spaces stripped, bounded."""
    return _CONTROL.sub("", value).strip()[:limit]


def _text(value: str) -> str:
    return _NUL.sub("", value)[:MAX_TEXT]


def _ident(value: str, name: str) -> str:
    """An id: too long to be one we issued, or empty, is malformed."""
    cleaned = _line(value, MAX_ID + 1)
    if not cleaned:
        raise CallbackError(400, f"field {name!r} is empty")
    if len(cleaned) > MAX_ID:
        raise CallbackError(400, f"field {name!r} is longer than {MAX_ID} characters")
    return cleaned


def member_phone(raw: str, default_region: str) -> str:
    """The number in E.164 when it is one; otherwise as the provider gave it (an
    alphanumeric sender, a short code), cleaned and bounded."""
    cleaned = _line(raw, 64)
    if not _DIALLABLE.fullmatch(cleaned):
        # Letters are a sender name, not a number: phonenumbers would read them as a
        # keypad's digits (+254711XXXYYY -> +254711999999).
        return cleaned[:MAX_PHONE]
    try:
        return normalize_phone(cleaned, default_region)
    except PhoneError:
        return cleaned[:MAX_PHONE]


# --- request bodies -----------------------------------------------------------------------

Form = list[tuple[str, str]]


def parse_form(body: bytes) -> Form:
    """An ``application/x-www-form-urlencoded`` body as (name, value) pairs, in order."""
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True,
                         max_num_fields=MAX_FIELDS, errors="strict")
    except ValueError:  # also UnicodeDecodeError, and more than MAX_FIELDS fields
        raise CallbackError(400, "the body is not a form-encoded UTF-8 form") from None


def parse_json(body: bytes) -> dict[str, Any]:
    """A JSON object body."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):
        # RecursionError: nesting deeper than the interpreter's stack ("[[[[..." a few KB
        # long), which no callback has; answered like any other body that is not JSON.
        raise CallbackError(400, "the body is not UTF-8 JSON") from None
    if not isinstance(data, dict):
        raise CallbackError(400, "the body must be a JSON object")
    return data


def _first(form: Form) -> dict[str, str]:
    """Each field's first value (a repeated field in a callback is not expected)."""
    fields: dict[str, str] = {}
    for name, value in form:
        fields.setdefault(name, value)
    return fields


def _required(fields: Mapping[str, Any], *names: str) -> str:
    """The first of ``names`` present (Twilio still sends the older SmsSid/SmsStatus)."""
    for name in names:
        if name in fields:
            value = fields[name]
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise CallbackError(400, f"field {name!r} must be a string")
            return str(value)
    raise CallbackError(400, f"field {names[0]!r} is missing")


def _optional(fields: Mapping[str, Any], name: str) -> str:
    value = fields.get(name)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise CallbackError(400, f"field {name!r} must be a string")
    return str(value)


# --- Twilio -------------------------------------------------------------------------------

def twilio_signature(auth_token: str, url: str,
                     params: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    """``X-Twilio-Signature`` as Twilio computes it
    (https://www.twilio.com/docs/usage/security#validating-requests): the full URL, then
    each POST parameter sorted by name, name and value with no delimiters, HMAC-SHA1 keyed
    with the auth token, base64. A repeated name contributes each of its distinct values,
    sorted, as Twilio's own validator (twilio-python's RequestValidator) does."""
    pairs = params.items() if isinstance(params, Mapping) else params
    values: dict[str, set[str]] = {}
    for name, value in pairs:
        values.setdefault(name, set()).add(value)
    signed = url + "".join(name + value for name in sorted(values)
                           for value in sorted(values[name]))
    mac = hmac.new(auth_token.encode("utf-8"), signed.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


_DEFAULT_PORTS = {"https": 443, "http": 80}


def twilio_url_variants(url: str) -> list[str]:
    """``url`` and the same URL with its standard port written out or left off: Twilio may
    sign either spelling, so its own validators accept both."""
    parts = urlsplit(url)
    default = _DEFAULT_PORTS.get(parts.scheme.lower())
    try:
        port = parts.port
    except ValueError:
        return [url]
    host = parts.netloc.rpartition(":")[0] if port is not None else parts.netloc
    if default is None or (port is not None and port != default):
        return [url]
    other = host if port is not None else f"{host}:{default}"
    return [url, urlunsplit(parts._replace(netloc=other))]


def verify_twilio(auth_token: str, url: str, form: Form, signature: str) -> None:
    """Raise CallbackError(403) unless ``signature`` is Twilio's for this request. Every
    spelling of the URL is checked, in constant time."""
    given = signature.strip().encode("ascii", "replace")
    valid = False
    for variant in twilio_url_variants(url):
        expected = twilio_signature(auth_token, variant, form).encode("ascii")
        valid |= hmac.compare_digest(expected, given)
    if not valid:
        raise CallbackError(403, "the X-Twilio-Signature does not match")


def twilio_status(form: Form, received_at: float, default_region: str) -> Report:
    """A status callback, read by the same rules as a look-up of the message
    (engine.providers.twilio: twilio_status, twilio_error)."""
    fields = _first(form)
    message_id = _ident(_required(fields, "MessageSid", "SmsSid"), "MessageSid")
    word = _line(_required(fields, "MessageStatus", "SmsStatus"), MAX_STATUS).lower()
    if not word:
        raise CallbackError(400, "field 'MessageStatus' is empty")
    status = twilio.twilio_status(word)
    error = ""
    if status is DeliveryStatus.UNDELIVERED:
        error = twilio.twilio_error(word, _line(_optional(fields, "ErrorCode"), 16))
    to = _optional(fields, "To")
    return Report(kind=ReportKind.STATUS, provider="twilio", message_id=message_id,
                  status=status, provider_status=word, error=error,
                  phone=member_phone(to, default_region) if to else "",
                  received_at=received_at)


def twilio_inbound(form: Form, received_at: float, default_region: str) -> Report:
    fields = _first(form)
    return Report(kind=ReportKind.INBOUND, provider="twilio",
                  message_id=_ident(_required(fields, "MessageSid", "SmsSid"), "MessageSid"),
                  phone=_sender(_required(fields, "From"), default_region),
                  to=_line(_optional(fields, "To"), MAX_TO),
                  text=_text(_optional(fields, "Body")), received_at=received_at)


def _sender(raw: str, default_region: str) -> str:
    phone = member_phone(raw, default_region)
    if not phone:
        raise CallbackError(400, "the sender's number is empty")
    return phone


# --- Africa's Talking ---------------------------------------------------------------------

# Their delivery report statuses (https://developers.africastalking.com/docs/sms/
# notifications): Success is final and good; Failed and Rejected are final and bad, as are
# AbsentSubscriber and Expired where a network reports them. Sent, Submitted and Buffered
# are on the way.
_AT_DELIVERED = frozenset({"success"})
_AT_UNDELIVERED = frozenset({"failed", "rejected", "absentsubscriber", "expired"})


def at_delivery(form: Form, received_at: float, default_region: str) -> Report:
    fields = _first(form)
    message_id = _ident(_required(fields, "id"), "id")
    word = _line(_required(fields, "status"), MAX_STATUS)
    if not word:
        raise CallbackError(400, "field 'status' is empty")
    status, error = None, ""
    if word.lower() in _AT_DELIVERED:
        status = DeliveryStatus.DELIVERED
    elif word.lower() in _AT_UNDELIVERED:
        status = DeliveryStatus.UNDELIVERED
        error = _line(_optional(fields, "failureReason"), MAX_ERROR) or word
    phone = _optional(fields, "phoneNumber")
    return Report(kind=ReportKind.STATUS, provider="africastalking", message_id=message_id,
                  status=status, provider_status=word, error=error,
                  phone=member_phone(phone, default_region) if phone else "",
                  received_at=received_at)


def at_inbound(form: Form, received_at: float, default_region: str) -> Report:
    fields = _first(form)
    ref = _line(_optional(fields, "id"), MAX_ID + 1)
    return Report(kind=ReportKind.INBOUND, provider="africastalking",
                  message_id=_ident(ref, "id") if ref else "",
                  phone=_sender(_required(fields, "from"), default_region),
                  to=_line(_optional(fields, "to"), MAX_TO),
                  text=_text(_required(fields, "text")), received_at=received_at)


def at_optout(form: Form, received_at: float, default_region: str) -> Report:
    fields = _first(form)
    return Report(kind=ReportKind.OPTOUT, provider="africastalking",
                  phone=_sender(_required(fields, "phoneNumber"), default_region),
                  to=_line(_optional(fields, "senderId"), MAX_TO), received_at=received_at)


# --- the generic HTTP gateway and the sandbox (JSON) --------------------------------------

_JSON_DELIVERED = frozenset({"delivered"})
_JSON_UNDELIVERED = frozenset({"undelivered", "failed", "rejected", "expired"})


def json_delivery(provider: str, data: Mapping[str, Any], received_at: float) -> Report:
    message_id = _ident(_required(data, "id"), "id")
    word = _line(_required(data, "status"), MAX_STATUS).lower()
    if not word:
        raise CallbackError(400, "field 'status' is empty")
    status, error = None, ""
    if word in _JSON_DELIVERED:
        status = DeliveryStatus.DELIVERED
    elif word in _JSON_UNDELIVERED:
        status = DeliveryStatus.UNDELIVERED
        error = _line(_optional(data, "reason"), MAX_ERROR) or word
    return Report(kind=ReportKind.STATUS, provider=provider, message_id=message_id,
                  status=status, provider_status=word, error=error, received_at=received_at)


def json_inbound(provider: str, data: Mapping[str, Any], received_at: float,
                 default_region: str) -> Report:
    ref = _line(_optional(data, "id"), MAX_ID + 1)
    return Report(kind=ReportKind.INBOUND, provider=provider,
                  message_id=_ident(ref, "id") if ref else "",
                  phone=_sender(_required(data, "from"), default_region),
                  to=_line(_optional(data, "to"), MAX_TO),
                  text=_text(_required(data, "text")), received_at=received_at)


# --- the token ----------------------------------------------------------------------------

def check_token(given: str, expected: str) -> None:
    """Raise CallbackError(404) unless the path's token is ours (constant time): a wrong
    token is answered as a path that does not exist."""
    if not hmac.compare_digest(given.encode("utf-8", "replace"),
                               expected.encode("utf-8")):
        raise CallbackError(404, "not found")
