"""Who a campaign goes to: tags to include and exclude, what they owe, when they are due,
chosen contacts, or the contacts a campaign's message did not reach. The store evaluates
it in the database (engine.store.audience_query); the campaign keeps it as JSON so the
Campaigns page can show what it was sent with."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Any

from engine.domain.money import format_amount

MAX_DUE_WITHIN_DAYS = 3660  # ten years: beyond that the date arithmetic is a typo


class AudienceError(ValueError):
    """A filter that cannot select anyone sensibly; the text says what to give instead."""


def _tags(values: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    # Tags are stored lower-case and trimmed (contacts import); compare alike.
    tags = {t.strip().lower() for t in values}
    if "" in tags:
        # Dropping it would widen the audience, possibly to everyone.
        raise AudienceError("a tag cannot be empty: give its name, e.g. --tag choir")
    return tuple(sorted(tags))


@dataclass(frozen=True)
class Audience:
    """Every field narrows the audience; the default (nothing set) is every contact."""

    tags: tuple[str, ...] = ()  # any of these
    exclude_tags: tuple[str, ...] = ()  # none of these
    owing: bool = False  # balance (pledge - paid) > 0
    min_balance_cents: int | None = None  # balance >= this
    due_within_days: int | None = None  # due date from today to today + N
    overdue: bool = False  # due date before today
    ids: tuple[int, ...] | None = None  # exactly these contacts (a selection)
    # Exactly the contacts whose message in this campaign ended undelivered ("send again
    # to undelivered"). It stands alone: the point is to reach those very people.
    undelivered_of: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "tags", _tags(self.tags))
        object.__setattr__(self, "exclude_tags", _tags(self.exclude_tags))
        if self.ids is not None:
            object.__setattr__(self, "ids", tuple(sorted({int(i) for i in self.ids})))
        if self.min_balance_cents is not None and self.min_balance_cents < 0:
            raise AudienceError("the minimum balance cannot be negative: give an amount "
                                "of 0 or more, e.g. --min-balance 500")
        if self.due_within_days is not None and not 0 <= self.due_within_days \
                <= MAX_DUE_WITHIN_DAYS:
            raise AudienceError(f"--due-within takes 0 to {MAX_DUE_WITHIN_DAYS} days, e.g. "
                                "--due-within 7")
        if self.overdue and self.due_within_days is not None:
            raise AudienceError("--overdue (due before today) and --due-within (due from "
                                "today on) select no one together: give one of them")
        if self.undelivered_of is not None:
            object.__setattr__(self, "undelivered_of", int(self.undelivered_of))
            if replace(self, undelivered_of=None) != Audience():
                raise AudienceError(
                    "--undelivered-of sends again to exactly the contacts a campaign did "
                    "not reach: give it without other filters (tags, owing, due, overdue, "
                    "a selection)")

    @property
    def is_everyone(self) -> bool:
        return self == Audience()

    def to_json(self) -> str:
        """Only the fields set. Compared to the defaults, not by truth: ``0`` days, a
        ``0`` minimum and an empty selection are filters too, and must not read back as
        everyone."""
        default = asdict(EVERYONE)
        data = {k: v for k, v in asdict(self).items() if v != default[k]}
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | None) -> Audience:
        if not text:
            return cls()
        data: dict[str, Any] = json.loads(text)
        for key in ("tags", "exclude_tags", "ids"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)

    def describe(self, currency_format: str = "{amount}") -> str:
        """One line for the operator: ``tagged harambee, owing, due within 7 days``."""
        if self.undelivered_of is not None:
            return f"undelivered in campaign {self.undelivered_of}"
        parts = []
        if self.ids is not None:
            parts.append(f"{len(self.ids):,} selected contact(s)")
        if self.tags:
            parts.append("tagged " + " or ".join(self.tags))
        if self.exclude_tags:
            parts.append("not tagged " + " or ".join(self.exclude_tags))
        if self.owing:
            parts.append("owing")
        if self.min_balance_cents is not None:
            parts.append("balance at least "
                         + format_amount(self.min_balance_cents, currency_format))
        if self.due_within_days is not None:
            parts.append(f"due within {self.due_within_days} day(s)")
        if self.overdue:
            parts.append("overdue")
        return ", ".join(parts) if parts else "all contacts"


EVERYONE = Audience()
