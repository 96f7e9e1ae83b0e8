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
from dataclasses import dataclass
from datetime import date

from engine.domain.errors import OperatorError
from engine.domain.money import format_amount

KNOWN_TAGS = ("name", "pledge", "paid_amount", "balance", "days_remain")

# A tag, or "##" (a literal "#"); the console highlights with the same pattern.
TAG_TOKEN = re.compile(r"##|#([A-Za-z][A-Za-z0-9_]*)")


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


@dataclass(frozen=True)
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
        values = tag_values(recipient, today=today, currency_format=currency_format)
        out = list(self.parts)
        for i in range(1, len(out), 2):
            out[i] = values[out[i]]
        return "".join(out)


def tag_values(recipient: Recipient, *, today: date, currency_format: str) -> dict[str, str]:
    balance = max(recipient.pledge_cents - recipient.paid_cents, 0)
    return {
        "name": recipient.name,
        "pledge": format_amount(recipient.pledge_cents, currency_format),
        "paid_amount": format_amount(recipient.paid_cents, currency_format),
        "balance": format_amount(balance, currency_format),
        "days_remain": str(max((recipient.due_date - today).days, 0)),
    }
