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


# A number inside other text, as providers and people write it: 9 to 15 digits, maybe
# after a +, maybe grouped by single spaces or dashes ("+254 711 230 001"). A date has
# too few digits to match. (Sentry's scrubbing in telemetry.py is broader still.)
PHONE_IN_TEXT = re.compile(r"(?<![\d+])\+?\d(?:[ \-]?\d){8,14}(?!\d)")


def mask_phones_in_text(text: str) -> str:
    """``text`` with every phone number in it masked (see mask_phone)."""
    return PHONE_IN_TEXT.sub(lambda m: mask_phone(m.group()), text)


def mask_phone(phone: str) -> str:
    """``+254712345678`` -> ``+2547******78``: enough to tell numbers apart, not to dial."""
    if len(phone) <= 6:
        return "*" * len(phone)
    return phone[:5] + "*" * (len(phone) - 7) + phone[-2:]
