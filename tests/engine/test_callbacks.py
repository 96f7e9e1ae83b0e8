"""The callback parsers and Twilio's signature, without I/O (engine.providers.callbacks).

The provider formats are quoted from their documentation where each test uses them; the
receiver's HTTP behaviour is in test_receiver.py.
"""

from __future__ import annotations

import json

import pytest

from engine.domain.delivery import DeliveryStatus, Report, ReportKind
from engine.providers import callbacks
from engine.providers.callbacks import CallbackError

T = 1_760_000_000.0

# Twilio's documented example (https://www.twilio.com/docs/usage/security
# #validating-requests, and twilio-python's tests of its RequestValidator): auth token
# 12345, this URL with its query string, these POST parameters.
DOC_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
DOC_PARAMS = {"CallSid": "CA1234567890ABCDE", "Caller": "+14158675309", "Digits": "1234",
              "From": "+14158675309", "To": "+18005551212"}
DOC_SIGNATURE = "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def refused(status: int, call: object, *args: object) -> CallbackError:
    with pytest.raises(CallbackError) as caught:
        call(*args)  # type: ignore[operator]
    assert caught.value.status == status
    return caught.value


# --- Twilio's signature -------------------------------------------------------------------

def test_twilio_signature_matches_twilios_documented_examples() -> None:
    assert callbacks.twilio_signature("12345", DOC_URL, DOC_PARAMS) == DOC_SIGNATURE
    # The same parameters as pairs, in any order: they are sorted by name first.
    pairs = list(reversed(list(DOC_PARAMS.items())))
    assert callbacks.twilio_signature("12345", DOC_URL, pairs) == DOC_SIGNATURE
    # Another published vector (the example as Twilio's security page has shown it).
    other = {**DOC_PARAMS, "Caller": "+12349013030", "From": "+12349013030"}
    assert callbacks.twilio_signature("12345", DOC_URL, other) == \
        "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_a_repeated_parameter_signs_each_distinct_value_sorted() -> None:
    # twilio-python's vector: Digits=5678, Digits=1234, Digits=1234.
    pairs = [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"),
             ("Digits", "1234"), ("Digits", "1234")]
    assert callbacks.twilio_signature("12345", DOC_URL, pairs) == \
        "IK+Dwps556ElfBT0I3Rgjkr1wJU="


def test_verification_accepts_the_signature_and_refuses_anything_else() -> None:
    form = list(DOC_PARAMS.items())
    callbacks.verify_twilio("12345", DOC_URL, form, DOC_SIGNATURE)
    refused(403, callbacks.verify_twilio, "12346", DOC_URL, form, DOC_SIGNATURE)
    refused(403, callbacks.verify_twilio, "12345", DOC_URL + "&x=1", form, DOC_SIGNATURE)
    refused(403, callbacks.verify_twilio, "12345", DOC_URL, [*form, ("Body", "hi")],
            DOC_SIGNATURE)
    refused(403, callbacks.verify_twilio, "12345", DOC_URL, form, DOC_SIGNATURE[:-2])
    refused(403, callbacks.verify_twilio, "12345", DOC_URL, form, "")
    refused(403, callbacks.verify_twilio, "12345", DOC_URL, form, "é" * 28)


def test_the_standard_port_may_be_written_or_left_off() -> None:
    form = list(DOC_PARAMS.items())
    with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2"
    # Signed without the port, received with it; and the other way round.
    callbacks.verify_twilio("12345", with_port, form, DOC_SIGNATURE)
    signed_with_port = callbacks.twilio_signature("12345", with_port, form)
    callbacks.verify_twilio("12345", DOC_URL, form, signed_with_port)
    # http's standard port is 80; any other port is part of the URL.
    plain = "http://relay.example.org/callbacks/twilio/status"
    signature = callbacks.twilio_signature("t", plain, form)
    callbacks.verify_twilio("t", "http://relay.example.org:80/callbacks/twilio/status", form,
                            signature)
    refused(403, callbacks.verify_twilio, "t",
            "http://relay.example.org:8080/callbacks/twilio/status", form, signature)
    refused(403, callbacks.verify_twilio, "t",
            "https://relay.example.org:443/callbacks/twilio/status", form, signature)
    assert callbacks.twilio_url_variants("https://[::1]:443/x") == ["https://[::1]:443/x",
                                                                   "https://[::1]/x"]


# --- Twilio's callbacks -------------------------------------------------------------------

def status_form(status: str, **extra: str) -> list[tuple[str, str]]:
    # A status callback as Twilio posts it (docs: "Message status changes ... MessageSid,
    # MessageStatus, ErrorCode (if the message failed)", plus the older SmsSid/SmsStatus).
    fields = {"AccountSid": "AC123", "From": "+14155550100", "To": "+254712345678",
              "MessageSid": "SM" + "a" * 32, "MessageStatus": status, "SmsSid": "SM" + "a" * 32,
              "SmsStatus": status, "ApiVersion": "2010-04-01", **extra}
    return list(fields.items())


@pytest.mark.parametrize(("word", "status"), [
    ("delivered", DeliveryStatus.DELIVERED), ("read", DeliveryStatus.DELIVERED),
    ("undelivered", DeliveryStatus.UNDELIVERED), ("failed", DeliveryStatus.UNDELIVERED),
    ("canceled", DeliveryStatus.UNDELIVERED),  # a scheduled message that never went
    ("queued", None), ("sending", None), ("sent", None), ("accepted", None)])
def test_twilio_statuses(word: str, status: DeliveryStatus | None) -> None:
    report = callbacks.twilio_status(status_form(word), T, "KE")
    assert (report.kind, report.provider, report.status) == (ReportKind.STATUS, "twilio", status)
    assert report.message_id == "SM" + "a" * 32
    assert report.provider_status == word
    assert report.phone == "+254712345678"
    assert report.received_at == T


def test_twilio_undelivered_carries_the_error_code() -> None:
    # Named as a look-up of the same message names it (test_twilio_reports).
    report = callbacks.twilio_status(status_form("undelivered", ErrorCode="30005"), T, "KE")
    assert report.error == "Twilio 30005: Unknown destination handset"
    unknown = callbacks.twilio_status(status_form("failed", ErrorCode="63999"), T, "KE")
    assert unknown.error == "Twilio 63999"
    assert callbacks.twilio_status(status_form("failed"), T, "KE").error == "Twilio: failed"
    assert callbacks.twilio_status(status_form("delivered", ErrorCode="0"), T, "KE").error == ""


def test_twilio_status_needs_its_sid_and_status() -> None:
    only_old = [("SmsSid", "SM1"), ("SmsStatus", "delivered")]
    assert callbacks.twilio_status(only_old, T, "KE").status == DeliveryStatus.DELIVERED
    assert "MessageSid" in refused(400, callbacks.twilio_status,
                                   [("MessageStatus", "sent")], T, "KE").reason
    refused(400, callbacks.twilio_status, [("MessageSid", "SM1")], T, "KE")
    refused(400, callbacks.twilio_status, [("MessageSid", ""), ("MessageStatus", "sent")],
            T, "KE")
    refused(400, callbacks.twilio_status, [("MessageSid", "S" * 129),
                                           ("MessageStatus", "sent")], T, "KE")


def test_twilio_inbound() -> None:
    # An incoming message as Twilio posts it: MessageSid, From, To, Body (and more).
    form = [("MessageSid", "SM9"), ("From", "+254712345678"), ("To", "+14155550100"),
            ("Body", "STOP"), ("NumMedia", "0")]
    report = callbacks.twilio_inbound(form, T, "KE")
    assert (report.kind, report.message_id, report.phone, report.to, report.text) == \
        (ReportKind.INBOUND, "SM9", "+254712345678", "+14155550100", "STOP")
    refused(400, callbacks.twilio_inbound, [("MessageSid", "SM9"), ("Body", "x")], T, "KE")
    refused(400, callbacks.twilio_inbound, [("MessageSid", "SM9"), ("From", " \x01")], T,
            "KE")
    # A picture with no text has an empty Body.
    assert callbacks.twilio_inbound(form[:3], T, "KE").text == ""


# --- Africa's Talking ---------------------------------------------------------------------

def at_report(status: str, **extra: str) -> list[tuple[str, str]]:
    # Their delivery report: "id, status, phoneNumber, networkCode, failureReason,
    # retryCount" (developers.africastalking.com, SMS notifications).
    fields = {"id": "ATXid_1", "status": status, "phoneNumber": "+254711XXXYYY",
              "networkCode": "63902", "retryCount": "0", **extra}
    return list(fields.items())


@pytest.mark.parametrize(("word", "status"), [
    ("Success", DeliveryStatus.DELIVERED), ("Failed", DeliveryStatus.UNDELIVERED),
    ("Rejected", DeliveryStatus.UNDELIVERED), ("AbsentSubscriber", DeliveryStatus.UNDELIVERED),
    ("Expired", DeliveryStatus.UNDELIVERED), ("Sent", None), ("Submitted", None),
    ("Buffered", None)])
def test_africas_talking_statuses(word: str, status: DeliveryStatus | None) -> None:
    report = callbacks.at_delivery(at_report(word), T, "KE")
    assert (report.provider, report.message_id, report.status, report.provider_status) == \
        ("africastalking", "ATXid_1", status, word)
    assert report.phone == "+254711XXXYYY"  # not a number phonenumbers takes: kept as given


def test_africas_talking_failure_reason() -> None:
    report = callbacks.at_delivery(at_report("Failed", failureReason="UserInBlacklist",
                                             phoneNumber="0712345678"), T, "KE")
    assert report.error == "UserInBlacklist"
    assert report.phone == "+254712345678"  # normalised with the default country
    assert callbacks.at_delivery(at_report("Rejected"), T, "KE").error == "Rejected"
    refused(400, callbacks.at_delivery, [("status", "Success")], T, "KE")
    refused(400, callbacks.at_delivery, [("id", "ATX")], T, "KE")


def test_africas_talking_incoming_and_optout() -> None:
    # Incoming: "from, to, text, date, id, linkId"; opt-out: "phoneNumber, senderId".
    form = [("from", "0712345678"), ("to", "21525"), ("text", " Stop "),
            ("date", "2026-01-02 10:00:00"), ("id", "in-1"), ("linkId", "L1")]
    inbound = callbacks.at_inbound(form, T, "KE")
    assert (inbound.kind, inbound.provider, inbound.phone, inbound.to, inbound.text,
            inbound.message_id) == (ReportKind.INBOUND, "africastalking", "+254712345678",
                                    "21525", " Stop ", "in-1")
    refused(400, callbacks.at_inbound, form[1:], T, "KE")  # no sender
    refused(400, callbacks.at_inbound, [f for f in form if f[0] != "text"], T, "KE")
    optout = callbacks.at_optout([("phoneNumber", "+254712345678"), ("senderId", "PLEDGES")],
                                 T, "KE")
    assert (optout.kind, optout.phone, optout.to) == \
        (ReportKind.OPTOUT, "+254712345678", "PLEDGES")
    refused(400, callbacks.at_optout, [("senderId", "PLEDGES")], T, "KE")


# --- the generic HTTP gateway and the sandbox ---------------------------------------------

@pytest.mark.parametrize(("word", "status"), [
    ("delivered", DeliveryStatus.DELIVERED), ("DELIVERED", DeliveryStatus.DELIVERED),
    ("undelivered", DeliveryStatus.UNDELIVERED), ("failed", DeliveryStatus.UNDELIVERED),
    ("rejected", DeliveryStatus.UNDELIVERED), ("expired", DeliveryStatus.UNDELIVERED),
    ("sent", None), ("queued", None)])
def test_json_delivery(word: str, status: DeliveryStatus | None) -> None:
    report = callbacks.json_delivery("http", {"id": "g-1", "status": word}, T)
    assert (report.provider, report.message_id, report.status) == ("http", "g-1", status)


def test_json_delivery_reason_and_types() -> None:
    report = callbacks.json_delivery("sandbox", {"id": 42, "status": "failed",
                                                 "reason": "absent subscriber"}, T)
    assert (report.message_id, report.error) == ("42", "absent subscriber")
    assert callbacks.json_delivery("http", {"id": "x", "status": "failed"}, T).error == "failed"
    refused(400, callbacks.json_delivery, "http", {"status": "delivered"}, T)
    refused(400, callbacks.json_delivery, "http", {"id": "x"}, T)
    refused(400, callbacks.json_delivery, "http", {"id": ["x"], "status": "delivered"}, T)
    refused(400, callbacks.json_delivery, "http", {"id": True, "status": "delivered"}, T)
    refused(400, callbacks.json_delivery, "http", {"id": "x", "status": None}, T)
    refused(400, callbacks.json_delivery, "http", {"id": "x", "status": "failed",
                                                   "reason": {"a": 1}}, T)


def test_json_inbound() -> None:
    report = callbacks.json_inbound("sandbox", {"from": "+254712345678", "text": "START"}, T,
                                    "KE")
    assert (report.kind, report.provider, report.phone, report.text, report.message_id) == \
        (ReportKind.INBOUND, "sandbox", "+254712345678", "START", "")
    refused(400, callbacks.json_inbound, "http", {"text": "hi"}, T, "KE")
    refused(400, callbacks.json_inbound, "http", {"from": "+254712345678"}, T, "KE")


# --- bodies, bounds, the token ------------------------------------------------------------

def test_form_bodies() -> None:
    assert callbacks.parse_form(b"a=1&b=&c=%2B254+7") == [("a", "1"), ("b", ""),
                                                          ("c", "+254 7")]
    assert callbacks.parse_form(b"") == []
    refused(400, callbacks.parse_form, b"a=1&junk")
    refused(400, callbacks.parse_form, b"a=%ff")  # not UTF-8
    refused(400, callbacks.parse_form, b"\xff=1")
    refused(400, callbacks.parse_form, "&".join(f"f{i}=1" for i in range(101)).encode())


def test_json_bodies() -> None:
    assert callbacks.parse_json(b'{"id": "1"}') == {"id": "1"}
    for body in (b"", b"{", b"[1]", b'"x"', b"\xff", b"null"):
        refused(400, callbacks.parse_json, body)


def test_deeply_nested_json_is_refused_not_raised() -> None:
    # json.loads raises RecursionError (not ValueError) on nesting deeper than the stack.
    for body in (b"[" * 10_000 + b"]" * 10_000, b'{"a":' * 5_000):
        refused(400, callbacks.parse_json, body)


def test_fields_are_bounded_and_cleaned() -> None:
    report = callbacks.json_inbound(
        "http", {"from": "Sender\x00Name\nThat Is Far Too Long", "text": "a\x00b\n" * 5000,
                 "to": "2\x1b1525", "id": "x" * 128}, T, "KE")
    assert report.phone == "SenderNameThat Is Fa"  # as given, cleaned, 20 characters
    assert len(report.text) == callbacks.MAX_TEXT
    assert "\x00" not in report.text
    assert "\n" in report.text  # a reply may have lines
    assert report.to == "21525"
    assert report.message_id == "x" * 128
    refused(400, callbacks.json_inbound, "http", {"from": "+254712345678", "text": "",
                                                  "id": "x" * 129}, T, "KE")
    long_reason = callbacks.json_delivery("http", {"id": "1", "status": "failed",
                                                   "reason": "r" * 5000}, T)
    assert len(long_reason.error) == callbacks.MAX_ERROR
    assert len(callbacks.json_delivery("http", {"id": "1", "status": "s" * 99}, T)
               .provider_status) == callbacks.MAX_STATUS


def test_reports_survive_the_inbox_json() -> None:
    report = callbacks.twilio_status(status_form("undelivered", ErrorCode="30003"), T, "KE")
    assert Report.from_json_dict(json.loads(json.dumps(report.to_json_dict()))) == report


def test_the_token_is_compared_whole() -> None:
    callbacks.check_token("s3cret-token-0123456789", "s3cret-token-0123456789")
    refused(404, callbacks.check_token, "s3cret-token-012345678", "s3cret-token-0123456789")
    refused(404, callbacks.check_token, "", "s3cret-token-0123456789")
    refused(404, callbacks.check_token, "ünï", "s3cret-token-0123456789")
    assert callbacks.token_path("africastalking", "tok", "optout") == \
        "/callbacks/africastalking/tok/optout"
