"""The sender's decision table, without Redis or a database: what becomes of a message
for each provider answer and attempt count."""

from __future__ import annotations

import random

import pytest

from engine.config.settings import load_settings
from engine.domain.retry_policy import backoff_s
from engine.domain.sending import Outcome, SendResult, Verdict
from engine.pipeline.send_decision import (
    BreakerNote,
    Decision,
    RetryPolicy,
    decide,
)

POLICY = RetryPolicy(max_attempts=3, backoff_s=30.0, backoff_max_s=3600.0)


def answer(outcome: Outcome) -> SendResult:
    return SendResult(outcome, error_type="HTTP 503" if outcome is not Outcome.SENT else None,
                      error="try later" if outcome is not Outcome.SENT else None)


@pytest.mark.parametrize(("outcome", "attempts", "verdict", "breaker"), [
    (Outcome.SENT, 1, Verdict.SENT, BreakerNote.SUCCESS),
    (Outcome.SENT, 3, Verdict.SENT, BreakerNote.SUCCESS),  # the last attempt may succeed
    (Outcome.TRANSIENT, 1, Verdict.RETRY, BreakerNote.FAILURE),
    (Outcome.TRANSIENT, 2, Verdict.RETRY, BreakerNote.FAILURE),
    (Outcome.TRANSIENT, 3, Verdict.DEAD, BreakerNote.FAILURE),  # attempts used up
    (Outcome.TRANSIENT, 4, Verdict.DEAD, BreakerNote.FAILURE),  # a lease takeover's extra
    (Outcome.PERMANENT, 1, Verdict.DEAD, BreakerNote.NONE),  # never retried
    (Outcome.PERMANENT, 3, Verdict.DEAD, BreakerNote.NONE),
    (Outcome.ACCOUNT, 1, Verdict.PAUSE, BreakerNote.NONE),
    (Outcome.ACCOUNT, 3, Verdict.PAUSE, BreakerNote.NONE),  # paused, not dead
])
def test_decision_table(outcome: Outcome, attempts: int, verdict: Verdict,
                        breaker: BreakerNote) -> None:
    decision = decide(answer(outcome), attempts, POLICY)
    assert (decision.verdict, decision.breaker) == (verdict, breaker)
    if verdict is not Verdict.RETRY:
        assert decision.retry_in_s == 0.0
    if verdict is not Verdict.PAUSE:
        assert decision.pause_reason == ""


@pytest.mark.parametrize("attempts", [1, 2])
def test_retry_waits_the_policy_backoff(attempts: int) -> None:
    decision = decide(answer(Outcome.TRANSIENT), attempts, POLICY, random.Random(7))
    expected = backoff_s(attempts, POLICY.backoff_s, POLICY.backoff_max_s, random.Random(7))
    assert decision == Decision(Verdict.RETRY, BreakerNote.FAILURE, retry_in_s=expected)
    # Exponential in the attempts, jittered down to no less than half of it.
    full = POLICY.backoff_s * 2 ** (attempts - 1)
    assert full / 2 <= decision.retry_in_s <= full


def test_retry_backoff_is_capped() -> None:
    policy = RetryPolicy(max_attempts=20, backoff_s=30.0, backoff_max_s=60.0)
    decision = decide(answer(Outcome.TRANSIENT), 10, policy, random.Random(1))
    assert 30.0 <= decision.retry_in_s <= 60.0


def test_one_attempt_allowed_means_no_retry() -> None:
    policy = RetryPolicy(max_attempts=1, backoff_s=30.0, backoff_max_s=60.0)
    assert decide(answer(Outcome.TRANSIENT), 1, policy).verdict is Verdict.DEAD


def test_pause_says_why() -> None:
    result = SendResult(Outcome.ACCOUNT, error_type="HTTP 401", error="bad credentials")
    decision = decide(result, 1, POLICY)
    assert decision == Decision(Verdict.PAUSE, BreakerNote.NONE,
                                pause_reason="HTTP 401: bad credentials")


def test_policy_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYDESK_MAX_ATTEMPTS", "5")
    monkeypatch.setenv("RELAYDESK_RETRY_BACKOFF", "2")
    monkeypatch.setenv("RELAYDESK_RETRY_BACKOFF_MAX", "9")
    assert RetryPolicy.from_settings(load_settings()) == RetryPolicy(5, 2.0, 9.0)
