"""Phone numbers: normalised to E.164 with the operator's default country."""

from __future__ import annotations

import re

import phonenumbers


class PhoneError(ValueError):
    """A phone number that cannot be used; the message says why."""


def normalize_phone(text: str, default_region: str) -> str:
    """Return the number in E.164 (``+254712345678``) or raise PhoneError."""
    raw = text.strip()
    if not raw:
        raise PhoneError("is empty")
    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException:
        raise PhoneError(f"{raw!r} is not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise PhoneError(f"{raw!r} is not a valid number (default country {default_region})")
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


# A number inside other text, as providers, people and HTML forms write it: 9 to 15 digits
# (E.164 has at most 15), maybe after ``+``, ``%2B``, ``00`` or ``(``, grouped by up to three
# separators at a time: spaces, dots, dashes, brackets, and ``+`` or ``%20`` where a form
# encoded the spaces (``Call+0712+345+678``). A digit run glued to letters (an id such as
# ``SM12ab…``) is not a number; one after ``_`` or ``=`` is.
_SEPARATOR = r"(?:[ .\-()+\u00a0]|%20|%2[Bb])"
_LEAD = r"(?:(?<!\d)(?:\+|%2[Bb])\(?|(?<![A-Za-z0-9])\(\+?|(?<![A-Za-z0-9+]))"


def _phone_pattern(min_digits: int) -> re.Pattern[str]:
    return re.compile(rf"{_LEAD}\d(?:{_SEPARATOR}{{0,3}}\d){{{min_digits - 1},14}}(?!\d)")


PHONE_IN_TEXT = _phone_pattern(9)
# What leaves the machine (Sentry) loses shorter numbers too: over-masking there costs a
# digit in a report, under-masking a customer's number.
PHONE_LIKE_IN_TEXT = _phone_pattern(7)
# Shapes PHONE_IN_TEXT also matches that are not numbers, for the console's masks only:
# an ISO date (with its time), an amount with decimals ("1 250 000.00") and a time's
# seconds with their fraction and time zone.
_DATE_LED = re.compile(r"(?:19|20)\d\d-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])(?:[ T]|$)")
_AMOUNT = re.compile(r"[\d ,]*\.\d\d")
_SECONDS = re.compile(r"\d\d\.\d{1,9}(?:[+\-]\d\d)?")  # "…:00.123456+00:00"


def mask_phones_in_text(text: str) -> str:
    """``text`` with every phone number in it masked: ``Call (0712) 345 678`` ->
    ``Call 07******78``, ``"+254 712 345 655"`` -> ``"+2547******55"``."""
    return PHONE_IN_TEXT.sub(_masked_in_text, text)


def scrub_phones(text: str, replacement: str = "[phone]") -> str:
    """``text`` with everything that may be a phone number (7+ digits) replaced whole."""
    return PHONE_LIKE_IN_TEXT.sub(replacement, text)


def _masked_in_text(match: re.Match[str]) -> str:
    found = match.group()
    if _DATE_LED.match(found) or _AMOUNT.fullmatch(found) or _SECONDS.fullmatch(found):
        return found
    plain = re.sub("%2[0Bb]", " ", found)
    digits = "".join(c for c in plain if c.isdigit())
    # A country code is kept (with one more digit) only after an international prefix: a
    # form's "+" before a 0 is an encoded space, and no country code starts with 0.
    encoded = found[:3] if found.startswith(("%2B", "%2b")) else ""  # kept as written
    if encoded or (found.startswith(("+", "(+")) and not found.lstrip("+(").startswith("0")):
        return (encoded or "+") + digits[:4] + "*" * (len(digits) - 6) + digits[-2:]
    kept = 4 if digits.startswith("00") else 2
    space = "+" if found.startswith("+") else ""  # "Call+0712…" keeps its encoded space
    return space + digits[:kept] + "*" * (len(digits) - kept - 2) + digits[-2:]


def mask_phone(phone: str) -> str:
    """``+254712345678`` -> ``+2547******78``: enough to tell numbers apart, not to dial."""
    if len(phone) <= 6:
        return "*" * len(phone)
    return phone[:5] + "*" * (len(phone) - 7) + phone[-2:]
