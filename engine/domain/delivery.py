"""What providers tell us after a send: delivery reports, replies and opt-out notices.

Every callback route and the Twilio poller turn what the provider said into a ``Report``;
the applier (engine.pipeline.report_applier) stores it. A report travels as JSON through
a Redis list between the two (engine.infra.report_inbox), so the receiver can answer the
provider as soon as the report is durable and apply it later, in batches.

A message's delivery status only moves forward (``advances``): reports arrive more than
once and out of order, and a late "sent" after "delivered" must change nothing.
"""

from __future__ import annotations

import string
import uuid
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class DeliveryStatus(StrEnum):
    """The delivery status of a message the provider accepted (``outgoing_messages.delivery``;
    NULL until it is sent)."""

    AWAITING_REPORT = "awaiting_report"  # accepted; no final report yet
    EXPIRED = "expired"  # no final report within RELAYDESK_REPORT_EXPIRY: unknown
    UNDELIVERED = "undelivered"  # the network or the phone did not take it
    DELIVERED = "delivered"  # the phone got it


FINAL = frozenset({DeliveryStatus.DELIVERED, DeliveryStatus.UNDELIVERED})

# Forward only. ``expired`` means "unknown", so a final report arriving later still wins;
# ``delivered`` is the strongest fact there is, so a later "undelivered" (a provider's retry
# bookkeeping, or reports out of order) does not undo it.
_RANK = {DeliveryStatus.AWAITING_REPORT: 0, DeliveryStatus.EXPIRED: 1,
         DeliveryStatus.UNDELIVERED: 2, DeliveryStatus.DELIVERED: 3}


def advances(current: DeliveryStatus | str | None, new: DeliveryStatus) -> bool:
    """Whether a message at ``current`` moves to ``new``: only forward, never sideways."""
    if current is None:
        return False  # not sent (yet): nothing to report on
    return _RANK[new] > _RANK[DeliveryStatus(current)]


class ReportKind(StrEnum):
    STATUS = "status"  # a delivery report for a message we sent
    INBOUND = "inbound"  # a message a member sent us (a reply, STOP, START)
    OPTOUT = "optout"  # the provider says the number opted out (Africa's Talking)


@dataclass(frozen=True)
class Report:
    """One thing a provider told us, normalised.

    ``status`` (STATUS only) is ``delivered``, ``undelivered`` or None for an intermediate
    status (queued, sent, buffered...: recorded, changes nothing). ``provider_status`` is
    the provider's own word for it, ``error`` its reason or code.
    ``receipt`` is unique per report received: the applier's key against applying one
    twice after a crash between its commit and its acknowledgement.
    """

    kind: ReportKind
    provider: str
    message_id: str = ""  # the provider's id of our message (STATUS), or of the inbound one
    status: DeliveryStatus | None = None
    provider_status: str = ""
    error: str = ""
    phone: str = ""  # the member's number: the sender of an inbound, the opted-out number
    to: str = ""  # our number or short code an inbound was sent to
    text: str = ""
    received_at: float = 0.0  # epoch seconds, when the receiver (or poller) got it
    receipt: str = field(default_factory=lambda: uuid.uuid4().hex)

    def to_json_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["kind"] = str(self.kind)
        data["status"] = str(self.status) if self.status else None
        return data

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> Report:
        status = data.get("status")
        return cls(
            kind=ReportKind(data["kind"]), provider=str(data["provider"]),
            message_id=str(data.get("message_id") or ""),
            status=DeliveryStatus(status) if status else None,
            provider_status=str(data.get("provider_status") or ""),
            error=str(data.get("error") or ""), phone=str(data.get("phone") or ""),
            to=str(data.get("to") or ""), text=str(data.get("text") or ""),
            received_at=float(data.get("received_at") or 0.0),
            receipt=str(data.get("receipt") or uuid.uuid4().hex))


class ReplyKeyword(StrEnum):
    OPT_OUT = "optout"
    OPT_IN = "optin"


class Keywords(tuple[str, ...]):
    """Reply keywords; written (settings, the Settings page) as comma-separated words."""

    def __str__(self) -> str:
        return ",".join(self)


DEFAULT_OPTOUT_KEYWORDS = Keywords(("STOP", "STOPALL", "UNSUBSCRIBE", "END", "QUIT", "CANCEL",
                                    "OPTOUT", "REVOKE"))
DEFAULT_OPTIN_KEYWORDS = Keywords(("START", "UNSTOP"))

# Ignored around the keyword: "Stop.", " STOP! ", "*stop*" all mean STOP.
_AROUND = string.whitespace + string.punctuation + "\u00a1\u00bf\u2018\u2019\u201c\u201d\u2026"


def normalise_keyword(text: str) -> str:
    return text.strip(_AROUND).upper()


def reply_keyword(text: str, optout: tuple[str, ...], optin: tuple[str, ...]
                  ) -> ReplyKeyword | None:
    """The keyword a whole reply is, if any: any case, surrounding spaces and punctuation
    ignored; a keyword inside a longer message ("please stop texting") is not one."""
    word = normalise_keyword(text)
    if not word:
        return None
    if word in {normalise_keyword(k) for k in optout}:
        return ReplyKeyword.OPT_OUT
    if word in {normalise_keyword(k) for k in optin}:
        return ReplyKeyword.OPT_IN
    return None
