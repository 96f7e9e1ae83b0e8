"""What becomes of a message once the provider has answered: sent, retried later, dead,
suppressed, or its campaign paused. Pure: the sender applies the decision (database,
schedule, breaker).

| provider's outcome | attempts so far     | verdict    | breaker  |
|--------------------|---------------------|------------|----------|
| sent               | any                 | sent       | success  |
| transient          | < max_attempts      | retry      | failure  |
| transient          | >= max_attempts     | dead       | failure  |
| permanent          | any                 | dead       | -        |
| opted_out          | any                 | suppressed | -        |
| account            | any                 | pause      | -        |

A suppressed message is not a failure: the recipient asked not to be texted, so its
number joins the opt-out list and no dead letter is kept to retry.

A retry waits ``backoff_s(attempts, ...)``; a pause gives the attempt back, since the
account, not the message, is at fault. Decided before the call, by the sender itself: a
paused campaign's messages are left queued, and while the breaker is open a message is
scheduled again for the end of the cool-down, its attempt not spent.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from engine.config.settings import Settings
from engine.domain.retry_policy import backoff_s
from engine.domain.sending import Outcome, SendResult, Verdict


class BreakerNote(StrEnum):
    """What the provider's answer tells the circuit breaker."""

    SUCCESS = "success"
    FAILURE = "failure"
    NONE = "none"  # says nothing about the provider's health


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    backoff_s: float
    backoff_max_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(settings.max_attempts, settings.retry_backoff_s,
                   settings.retry_backoff_max_s)


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    breaker: BreakerNote
    retry_in_s: float = 0.0  # RETRY: how long until the next attempt
    pause_reason: str = ""  # PAUSE: shown to the operator on the campaign


def decide(result: SendResult, attempts: int, policy: RetryPolicy,
           rng: random.Random | None = None) -> Decision:
    """The decision for one provider answer; ``attempts`` counts the one just made."""
    if result.outcome is Outcome.SENT:
        return Decision(Verdict.SENT, BreakerNote.SUCCESS)
    if result.outcome is Outcome.TRANSIENT:
        if attempts < policy.max_attempts:
            delay = backoff_s(attempts, policy.backoff_s, policy.backoff_max_s, rng)
            return Decision(Verdict.RETRY, BreakerNote.FAILURE, retry_in_s=delay)
        return Decision(Verdict.DEAD, BreakerNote.FAILURE)
    if result.outcome is Outcome.PERMANENT:
        return Decision(Verdict.DEAD, BreakerNote.NONE)
    if result.outcome is Outcome.OPTED_OUT:  # the provider works; this recipient said no
        return Decision(Verdict.SUPPRESSED, BreakerNote.NONE)
    # Account-level: no message can go out; pause instead of burning attempts.
    return Decision(Verdict.PAUSE, BreakerNote.NONE,
                    pause_reason=f"{result.error_type}: {result.error}")
