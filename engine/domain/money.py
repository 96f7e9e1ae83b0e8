"""Amounts as whole minor units (cents): parsing operator input and rendering for messages."""

from __future__ import annotations

import re

# The largest pledge or payment RelayDesk accepts, in whole currency units. Far above any
# real pledge, far below what a BIGINT of cents holds (9.2e18), so an amount that passes
# here always fits the database.
MAX_AMOUNT = 10**12
MAX_AMOUNT_TEXT = 40  # characters, separators removed: "1000000000000.00" is 16

# Digits with an optional point and exponent ("1250.50", ".5", "1.25E+07": Excel writes
# large numbers that way). Read by hand with integers, never by Decimal arithmetic: a cell
# like 9e999990 or 1e999999999 costs nothing to refuse.
_NUMBER = re.compile(r"([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?)(\d+))?", re.ASCII)
_MAX_EXPONENT_DIGITS = 6  # any larger exponent is refused the same way as one of 10**6


class AmountError(ValueError):
    """An amount that cannot be read; the message says what is wrong with it."""


def _shown(text: str) -> str:
    """The operator's text for a message, cut short: a 100 KB cell must not make a 100 KB
    error."""
    text = text.strip()
    return repr(text) if len(text) <= 24 else repr(text[:20]) + "…"


def parse_amount(text: str) -> int:
    """Parse ``12500``, ``12,500``, ``1,250.50`` or ``1.25E+07`` into cents; reject
    negatives, more than 2 decimal places, amounts above MAX_AMOUNT and junk. Every
    problem is an AmountError, quickly, whatever the text."""
    cleaned = text.strip().replace(",", "").replace("_", "")
    if not cleaned:
        raise AmountError("is empty")
    if len(cleaned) > MAX_AMOUNT_TEXT:
        raise AmountError(f"{_shown(text)} is too long to be an amount "
                          f"(at most {MAX_AMOUNT_TEXT} characters)")
    match = _NUMBER.fullmatch(cleaned)
    if match is None or not (match.group(2) or match.group(3)):
        raise AmountError(f"{_shown(text)} is not a number")
    sign, whole, fraction, exp_sign, exp_digits = match.groups(default="")
    digits = (whole + fraction).lstrip("0")
    if not digits:
        return 0  # any zero, whatever its sign or exponent
    if sign == "-":
        raise AmountError(f"{_shown(text)} is negative")
    exponent = int(exp_digits or "0") if len(exp_digits) <= _MAX_EXPONENT_DIGITS \
        else 10**_MAX_EXPONENT_DIGITS
    exponent = -exponent if exp_sign == "-" else exponent
    # value = int(digits) * 10**power, with no trailing zeros left in digits
    power = exponent - len(fraction) + (len(digits) - len(digits.rstrip("0")))
    digits = digits.rstrip("0")
    if power < -2:
        raise AmountError(f"{_shown(text)} has more than 2 decimal places")
    if len(digits) + power > len(str(MAX_AMOUNT)):  # at least 10 * MAX_AMOUNT
        raise AmountError(_too_large(text))
    cents = int(digits + "0" * (power + 2))  # power >= -2 here
    if cents > MAX_AMOUNT * 100:
        raise AmountError(_too_large(text))
    return cents


def _too_large(text: str) -> str:
    return f"{_shown(text)} is above the largest amount accepted ({MAX_AMOUNT:,})"


def format_amount(cents: int, currency_format: str = "{amount}") -> str:
    """``1250000`` -> ``12,500``; ``125050`` -> ``1,250.50``: cents only when there are any."""
    whole, part = divmod(abs(cents), 100)
    sign = "-" if cents < 0 else ""
    amount = f"{sign}{whole:,}" if part == 0 else f"{sign}{whole:,}.{part:02d}"
    return currency_format.replace("{amount}", amount)
