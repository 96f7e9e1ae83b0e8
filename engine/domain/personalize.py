"""Message templates with the original system's hashtags.

``#name``, ``#pledge``, ``#paid_amount``, ``#balance`` (pledge - paid, never negative) and
``#days_remain`` (days from today to the due date, 0 once past). A tag is ``#`` followed by
a word that starts with a letter; the whole word must be a known tag (any letter case), so
``#names`` is an error, never ``#name`` + ``s``. A ``#`` not followed by a letter (``#1``)
is plain text, and ``##`` writes a literal ``#`` (``##GivingDay`` sends ``#GivingDay``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import lru_cache, partial
from operator import attrgetter

from engine.domain.errors import OperatorError
from engine.domain.money import format_amount

KNOWN_TAGS = ("name", "pledge", "paid_amount", "balance", "days_remain")

# A tag, or "##" (a literal "#"); the console highlights with the same pattern.
TAG_TOKEN = re.compile(r"##|#([A-Za-z][A-Za-z0-9_]*)")

_CACHED = 4096  # formatted amounts (and days) a renderer keeps: pledges repeat, days do


@dataclass(frozen=True)
class TagProblem:
    tag: str  # as written, without '#'
    position: int  # index of the '#' in the template
    suggestion: str | None

    def __str__(self) -> str:
        hint = f'did you mean "#{self.suggestion}"?' if self.suggestion else (
            f'known tags are {", ".join("#" + t for t in KNOWN_TAGS)}'
        )
        return (f'unknown tag "#{self.tag}" at character {self.position + 1}: {hint} '
                f'(write "##{self.tag}" to send a literal "#{self.tag}")')


class TemplateError(OperatorError, ValueError):
    """A template with unknown tags; ``problems`` lists each one."""

    def __init__(self, problems: list[TagProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))

    def __reduce__(self) -> tuple[type[TemplateError], tuple[list[TagProblem]]]:
        return TemplateError, (self.problems,)  # crosses to the console from its helper


@dataclass(frozen=True, slots=True)  # slots: one is made per recipient, 100,000 at a time
class Recipient:
    """The contact values a message is rendered from."""

    name: str
    pledge_cents: int
    paid_cents: int
    due_date: date


def suggest_tag(word: str) -> str | None:
    matches = difflib.get_close_matches(word.lower(), KNOWN_TAGS, n=1, cutoff=0.6)
    return matches[0] if matches else None


@dataclass(frozen=True)
class Template:
    """A parsed template: literal text and tag names, alternating, ready to render fast."""

    source: str
    parts: tuple[str, ...]  # even indexes: literal text; odd indexes: tag names

    @classmethod
    def parse(cls, source: str) -> Template:
        parts: list[str] = []
        literal: list[str] = []
        problems: list[TagProblem] = []
        pos = 0
        for match in TAG_TOKEN.finditer(source):
            literal.append(source[pos:match.start()])
            pos = match.end()
            word = match.group(1)
            if word is None:  # '##'
                literal.append("#")
                continue
            tag = word.lower()
            if tag not in KNOWN_TAGS:
                problems.append(TagProblem(word, match.start(), suggest_tag(word)))
                continue
            parts.append("".join(literal))
            parts.append(tag)
            literal = []
        literal.append(source[pos:])
        parts.append("".join(literal))
        if problems:
            raise TemplateError(problems)
        return cls(source, tuple(parts))

    @property
    def tags(self) -> frozenset[str]:
        return frozenset(self.parts[1::2])

    def render(self, recipient: Recipient, *, today: date,
               currency_format: str = "{amount}") -> str:
        return self.renderer(today=today, currency_format=currency_format)(recipient)

    def renderer(self, *, today: date,
                 currency_format: str = "{amount}") -> Callable[[Recipient], str]:
        """``render`` for many recipients (a 100,000-message campaign): the text around the
        tags is joined once, only the tags the template uses are worked out, and amounts and
        days, which recipients often share, are formatted once each."""
        amount = lru_cache(maxsize=_CACHED)(partial(format_amount,
                                                    currency_format=currency_format))
        days = lru_cache(maxsize=_CACHED)(partial(_days_remaining, today=today))
        value: dict[str, Callable[[Recipient], str]] = {
            "name": attrgetter("name"),
            "pledge": lambda r: amount(r.pledge_cents),
            "paid_amount": lambda r: amount(r.paid_cents),
            "balance": lambda r: amount(max(r.pledge_cents - r.paid_cents, 0)),
            "days_remain": lambda r: days(r.due_date),
        }
        fields = [value[tag] for tag in self.parts[1::2]]
        # "{}" between the literal parts, whose own braces are doubled: str.format fills
        # the fields in C, and a value is never read as a format (nor as a tag).
        text = "{}".join(part.replace("{", "{{").replace("}", "}}")
                         for part in self.parts[0::2]).format
        return lambda recipient: text(*[field(recipient) for field in fields])


def _days_remaining(due_date: date, today: date) -> str:
    return str(max((due_date - today).days, 0))  # 0 once past
