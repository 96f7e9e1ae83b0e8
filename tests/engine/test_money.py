from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.money import AmountError, format_amount, parse_amount


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


@given(st.integers(min_value=0, max_value=10**15))
def test_format_then_parse_round_trips(cents: int) -> None:
    assert parse_amount(format_amount(cents)) == cents
