"""One outgoing message and what became of sending it: the values every layer passes around.

The provider adapters produce them, the delivery state stores them, the sender decides on
them and the inspector records them; so they live here, below all of those, and carry no
behaviour that needs anything but themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Outcome(StrEnum):
    SENT = "sent"
    TRANSIENT = "transient"  # retry later: timeouts, connection errors, 429, 5xx
    PERMANENT = "permanent"  # this message can never be sent: invalid number, bad body
    ACCOUNT = "account"  # nothing can be sent: auth failure, empty balance -> pause
    # The recipient unsubscribed or blocked the sender (Twilio 21610, Africa's Talking
    # UserInBlacklist): the number goes on the opt-out list.
    OPTED_OUT = "opted_out"


class Verdict(StrEnum):
    """What the sender decided for a message once the provider answered
    (pipeline.send_decision)."""

    SENT = "sent"
    RETRY = "retry"  # failed for now: send again after a backoff
    DEAD = "dead"  # never to be sent: into the dead-letter store
    PAUSE = "pause"  # nothing can be sent on this account: pause the campaign
    SUPPRESSED = "suppressed"  # the recipient opted out: not sent, never retried, listed


@dataclass(frozen=True)
class Sms:
    message_id: int
    campaign_id: int
    to: str
    body: str

    @property
    def idempotency_key(self) -> str:
        return f"relaydesk-{self.campaign_id}-{self.message_id}"


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    provider_message_id: str | None = None
    error_type: str | None = None  # e.g. "HTTP 503", "Timeout", "invalid_number"
    error: str | None = None
    response: str | None = None  # the provider's answer, truncated
    latency_s: float = 0.0
