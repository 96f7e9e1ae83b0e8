"""Phone numbers inside text (error texts, payloads, Sentry events) are found in the shapes
people, providers and HTML forms write them, and other numbers are left alone where the
operator reads them."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from engine.domain.phones import mask_phones_in_text, scrub_phones

# The examples and what was already covered.
WRITTEN = [
    ("(0712) 345 678", "07******78"),
    ("0712.345.678", "07******78"),
    ("+254 (712) 345-678", "+2547******78"),
    ("Call+0712+345+678", "Call+07******78"),  # a form's encoded spaces
    ("to=%2B254712345678", "to=%2B2547******78"),
    ("+254 711 230 001", "+2547******01"),
    ("+254712345678", "+2547******78"),
    ("0712-345-678", "07******78"),
    ("06.12.34.56.78", "06******78"),
    ("00254712345678", "0025********78"),
    ('{"to": "+254712345655"}', '{"to": "+2547******55"}'),
    ("message=Hi&to=0712%20345%20678", "message=Hi&to=07******78"),
]


@pytest.mark.parametrize(("text", "masked"), WRITTEN)
def test_written_shapes_are_masked(text: str, masked: str) -> None:
    assert mask_phones_in_text(text) == masked
    assert not re.search(r"\d", scrub_phones(text).replace("to=%2B", ""))


# Not phone numbers: amounts, dates, times, short ids, versions.
ORDINARY = [
    "pledge 12,500.00 paid", "KES 1,250,000.00", "1 250 000.00 due", "1234567.89",
    "due 2026-12-01", "at 2026-12-01 10:30:00", "2026-12-01T10:30:00.123456+00:00",
    "campaign 12345, ref 1234567", "attempt 3 of 5", "Redis 6.2.14", "SM1234567890abcdef",
]


@pytest.mark.parametrize("text", ORDINARY)
def test_other_numbers_are_left_alone_in_the_console(text: str) -> None:
    assert mask_phones_in_text(text) == text


SEPARATORS = [" ", ".", "-", "+", "%20", ") ", " (", "  ", "\u00a0", " - "]
BEFORE = ["", "Call ", "to=", '{"to": "', "message=Call+", "tel:", "(", "phone_", "Number: "]
AFTER = ["", " now", '"}', ".", ",", "&text=hello", ")", ": invalid"]


@st.composite
def written_phones(draw: st.DrawFn) -> tuple[str, str]:
    """(a number as someone might write it, its digits): national with its trunk 0, or
    international after +, %2B, 00 or a bracket, in groups of 1 to 4 digits."""
    count = draw(st.integers(9, 15))
    lead = draw(st.sampled_from(["", "+", "%2B", "00", "+(", "(+"]))
    first = "0" if lead == "" else draw(st.sampled_from("123456789"))
    if lead == "00":
        first = "00" + first
    digits = first + draw(st.text("0123456789", min_size=count - len(first),
                                  max_size=count - len(first)))
    groups, rest = [], digits
    while rest:
        size = draw(st.integers(1, 4))
        groups.append(rest[:size])
        rest = rest[size:]
    text = groups[0]
    for group in groups[1:]:
        text += draw(st.sampled_from(SEPARATORS)) + group
    written = ("" if lead == "00" else lead) + text
    # "0712 345.67" reads as an amount with cents: the console leaves such a shape alone.
    assume(not re.fullmatch(r"[\d ,]*\.\d\d", written))
    return written, digits


@given(written_phones(), st.sampled_from(BEFORE), st.sampled_from(AFTER))
def test_any_written_number_is_masked(phone: tuple[str, str], before: str, after: str
                                      ) -> None:
    written, digits = phone
    masked = mask_phones_in_text(before + written + after)
    shown = "".join(c for c in masked.replace("%2B", "+") if c.isdigit())
    # What the console shows: the country code or the trunk 0 and a digit, and the last two.
    assert len(shown) <= 6
    assert len(digits) - len(shown) >= 3
    assert masked.endswith(digits[-2:] + after)


@given(written_phones(), st.sampled_from(BEFORE), st.sampled_from(AFTER))
def test_nothing_of_a_written_number_reaches_sentry(
        phone: tuple[str, str], before: str, after: str) -> None:
    written, _ = phone
    scrubbed = scrub_phones(before + written + after)
    assert not re.search(r"\d", scrubbed.replace("%2B", "").replace("%20", ""))


@given(st.decimals(min_value=0, max_value=Decimal(10) ** 12, places=2))
def test_amounts_are_not_phone_numbers(amount: Decimal) -> None:
    for text in (f"{amount:,.2f}", f"{amount:.2f}", f"{amount:,.2f}".replace(",", " ")):
        assert mask_phones_in_text(f"pledge {text} due") == f"pledge {text} due"


@given(st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2099, 12, 31)))
def test_dates_and_times_are_not_phone_numbers(when: datetime) -> None:
    for text in (when.date().isoformat(), when.isoformat(), when.isoformat(" ")):
        assert mask_phones_in_text(f"failed at {text}") == f"failed at {text}"
