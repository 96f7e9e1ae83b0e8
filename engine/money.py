"""Amounts as whole minor units (cents): parsing operator input and rendering for messages."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation


class AmountError(ValueError):
    """An amount that cannot be read; the message says what is wrong with it."""


def parse_amount(text: str) -> int:
    """Parse ``12500``, ``12,500`` or ``1,250.50`` into cents; reject negatives and junk."""
    cleaned = text.strip().replace(",", "").replace("_", "")
    if not cleaned:
        raise AmountError("is empty")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise AmountError(f"{text.strip()!r} is not a number") from None
    if not value.is_finite():
        raise AmountError(f"{text.strip()!r} is not a number")
    if value < 0:
        raise AmountError(f"{text.strip()!r} is negative")
    cents = value * 100
    if cents != cents.to_integral_value():
        raise AmountError(f"{text.strip()!r} has more than 2 decimal places")
    return int(cents)


def format_amount(cents: int, currency_format: str = "{amount}") -> str:
    """``1250000`` -> ``12,500``; ``125050`` -> ``1,250.50``: cents only when there are any."""
    whole, part = divmod(abs(cents), 100)
    sign = "-" if cents < 0 else ""
    amount = f"{sign}{whole:,}" if part == 0 else f"{sign}{whole:,}.{part:02d}"
    return currency_format.replace("{amount}", amount)
