"""Send planning: how a campaign is routed, chunked and paced. Pure: no I/O.

Fewer than ``bulk_threshold`` recipients -> one job per message on ``messages`` (or
``high_priority`` when urgent), paced ``pacing_individual_s`` apart. Otherwise one bulk job
on ``bulk_messages`` split into chunks of ``chunk_size``, paced ``pacing_chunk_s`` apart.
A global rate limit, when set, caps the send rate whatever the pacing allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from engine.domain.errors import OperatorError
from engine.domain.queues import BULK_MESSAGES, HIGH_PRIORITY, MESSAGES


class Route(StrEnum):
    INDIVIDUAL = "individual"
    BULK = "bulk"


class PlanError(OperatorError, ValueError):
    """A campaign that cannot be planned; the message says why."""


@dataclass(frozen=True)
class PlanPolicy:
    """The thresholds and pacing a plan follows; the settings hold their values and
    defaults (``engine.config.settings.Settings.plan_policy``)."""

    bulk_threshold: int
    chunk_size: int
    pacing_individual_s: float
    pacing_chunk_s: float
    rate_per_s: float | None  # the global rate limit; None: no limit


@dataclass(frozen=True)
class SendPlan:
    route: Route
    queue: str
    recipients: int
    jobs: int  # individual jobs, or 1 bulk job
    chunks: int  # 0 on the individual route
    chunk_size: int
    estimated_duration_s: float


def chunk_bounds(total: int, size: int) -> list[tuple[int, int]]:
    """Half-open ``(start, stop)`` index ranges covering ``total`` items in chunks of ``size``."""
    if size <= 0:
        raise ValueError("chunk size must be positive")
    return [(start, min(start + size, total)) for start in range(0, total, size)]


def plan_send(recipients: int, *, urgent: bool = False, policy: PlanPolicy) -> SendPlan:
    if recipients <= 0:
        raise PlanError("the campaign has no recipients: import contacts, or widen the "
                        "audience (fewer filters, another tag)")
    rate_floor = recipients / policy.rate_per_s if policy.rate_per_s else 0.0
    if recipients < policy.bulk_threshold:
        paced = (recipients - 1) * policy.pacing_individual_s
        return SendPlan(
            route=Route.INDIVIDUAL,
            queue=HIGH_PRIORITY if urgent else MESSAGES,
            recipients=recipients,
            jobs=recipients,
            chunks=0,
            chunk_size=0,
            estimated_duration_s=max(paced, rate_floor),
        )
    chunks = len(chunk_bounds(recipients, policy.chunk_size))
    paced = (chunks - 1) * policy.pacing_chunk_s
    return SendPlan(
        route=Route.BULK,
        queue=BULK_MESSAGES,
        recipients=recipients,
        jobs=1,
        chunks=chunks,
        chunk_size=policy.chunk_size,
        estimated_duration_s=max(paced, rate_floor),
    )
