from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.config.settings import RateLimit, Settings
from engine.domain.planning import PlanError, PlanPolicy, Route, chunk_bounds, plan_send
from engine.domain.queues import BULK_MESSAGES, HIGH_PRIORITY, MESSAGES

POLICY = Settings().plan_policy()  # the built-in defaults


@pytest.mark.parametrize(("recipients", "route", "queue", "jobs", "chunks"), [
    (1, Route.INDIVIDUAL, MESSAGES, 1, 0),
    (99, Route.INDIVIDUAL, MESSAGES, 99, 0),
    (100, Route.BULK, BULK_MESSAGES, 1, 2),
    (101, Route.BULK, BULK_MESSAGES, 1, 3),
    (150, Route.BULK, BULK_MESSAGES, 1, 3),
    (151, Route.BULK, BULK_MESSAGES, 1, 4),
    (100_000, Route.BULK, BULK_MESSAGES, 1, 2000),
])
def test_thresholds_and_chunks(recipients: int, route: Route, queue: str, jobs: int,
                               chunks: int) -> None:
    plan = plan_send(recipients, policy=POLICY)
    assert (plan.route, plan.queue, plan.jobs, plan.chunks) == (route, queue, jobs, chunks)


def test_urgent_individual_sends_go_to_high_priority() -> None:
    assert plan_send(99, urgent=True, policy=POLICY).queue == HIGH_PRIORITY
    assert plan_send(100, urgent=True, policy=POLICY).queue == BULK_MESSAGES


def test_duration_follows_the_original_pacing() -> None:
    assert plan_send(30, policy=POLICY).estimated_duration_s == 58  # 29 gaps of 2 s
    assert plan_send(250, policy=POLICY).estimated_duration_s == 40  # 4 gaps of 10 s


def test_rate_limit_caps_the_estimate() -> None:
    policy = replace(POLICY, pacing_chunk_s=0, rate_per_s=20)
    assert plan_send(100_000, policy=policy).estimated_duration_s == 5000


def test_settings_change_thresholds() -> None:
    policy = replace(POLICY, bulk_threshold=10, chunk_size=3)
    plan = plan_send(10, policy=policy)
    assert (plan.route, plan.chunks, plan.chunk_size) == (Route.BULK, 4, 3)


def test_the_policy_follows_the_settings() -> None:
    settings = Settings(bulk_threshold=10, chunk_size=3, pacing_individual_s=0.5,
                        pacing_chunk_s=4.0, rate_limit=RateLimit(600, 60.0))
    assert settings.plan_policy() == PlanPolicy(bulk_threshold=10, chunk_size=3,
                                                pacing_individual_s=0.5, pacing_chunk_s=4.0,
                                                rate_per_s=10.0)
    assert Settings().plan_policy().rate_per_s is None  # no rate limit by default


def test_no_recipients_is_an_error() -> None:
    with pytest.raises(PlanError, match="no recipients"):
        plan_send(0, policy=POLICY)


def test_chunk_boundaries() -> None:
    assert chunk_bounds(101, 50) == [(0, 50), (50, 100), (100, 101)]
    assert chunk_bounds(100, 50) == [(0, 50), (50, 100)]
    assert chunk_bounds(0, 50) == []


@given(st.integers(min_value=0, max_value=5000), st.integers(min_value=1, max_value=500))
def test_chunks_cover_every_recipient_once(total: int, size: int) -> None:
    bounds = chunk_bounds(total, size)
    covered = [i for start, stop in bounds for i in range(start, stop)]
    assert covered == list(range(total))
    assert all(0 < stop - start <= size for start, stop in bounds)
