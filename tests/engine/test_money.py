from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.domain.money import MAX_AMOUNT, AmountError, format_amount, parse_amount


@pytest.mark.parametrize(("text", "cents"), [
    ("12500", 1_250_000), ("12,500", 1_250_000), ("1,250.50", 125_050), ("1250.5", 125_050),
    (" 0 ", 0), ("0.01", 1), ("1_000", 100_000),
])
def test_parse_amount(text: str, cents: int) -> None:
    assert parse_amount(text) == cents


@pytest.mark.parametrize(("text", "reason"), [
    ("-5", "negative"), ("abc", "not a number"), ("", "empty"), ("1.005", "decimal places"),
    ("NaN", "not a number"), ("inf", "not a number"), ("KES 500", "not a number"),
])
def test_parse_amount_rejects(text: str, reason: str) -> None:
    with pytest.raises(AmountError, match=reason):
        parse_amount(text)


@pytest.mark.parametrize(("cents", "shown"), [
    (1_250_000, "12,500"), (125_050, "1,250.50"), (0, "0"), (5, "0.05"),
    (123_456_789_00, "123,456,789"),
])
def test_format_amount(cents: int, shown: str) -> None:
    assert format_amount(cents) == shown


def test_currency_format_setting() -> None:
    assert format_amount(1_250_000, "KES {amount}") == "KES 12,500"


@given(st.integers(min_value=0, max_value=MAX_AMOUNT * 100))
def test_format_then_parse_round_trips(cents: int) -> None:
    assert parse_amount(format_amount(cents)) == cents


@pytest.mark.parametrize(("text", "cents"), [
    ("1.25E+07", 1_250_000_000), ("1e12", 10**14), ("1,000,000,000,000", 10**14),
    ("0e999999999", 0), ("-0", 0), ("+5", 500), (".5", 50), ("5.", 500), ("1.2345e2", 12_345),
])
def test_parse_amount_exponents_and_limits(text: str, cents: int) -> None:
    assert parse_amount(text) == cents


@pytest.mark.parametrize(("text", "reason"), [
    # Each of these cost a traceback (decimal.Overflow), ~23 s of CPU, or an insert error
    # with no line number before amounts were bounded ahead of any arithmetic.
    ("1e999999999", "above the largest amount"),
    ("9e999990", "above the largest amount"),
    ("99999999999999999999", "above the largest amount"),
    ("1000000000000.01", "above the largest amount"),
    ("1e-999999999", "more than 2 decimal places"),
    ("1e9999999999999999999999", "above the largest amount"),
    ("9" * 100_000, "too long to be an amount"),
    ("1.5e", "not a number"), (".", "not a number"), ("e5", "not a number"),
])
def test_parse_amount_refuses_absurd_amounts(text: str, reason: str) -> None:
    with pytest.raises(AmountError, match=reason) as caught:
        parse_amount(text)
    assert len(str(caught.value)) < 120  # a huge cell never makes a huge message


@given(st.decimals(min_value=0, max_value=MAX_AMOUNT, places=2, allow_nan=False))
def test_parse_amount_agrees_with_decimal(value: Decimal) -> None:
    for text in (str(value), f"{value:E}", f"{value:,}"):
        assert parse_amount(text) == int(value * 100)
