from datetime import UTC, datetime

import pytest

from parsers import fields
from parsers.fields import FieldError


@pytest.mark.parametrize(("raw", "expected"), [("12", 12), (" 7 \n", 7), ("0", 0), ("0007", 7)])
def test_whole_number_accepts_plain_digits(raw: str, expected: int) -> None:
    assert fields.whole_number(raw) == expected


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("1,234", "ambiguous"),
        ("1.234", "ambiguous"),
        ("-3", "negative"),
        ("12.5", "not a whole number"),
        ("twelve", "digits only"),
        ("", "empty"),
        ("   ", "empty"),
        ("1" * 30, "too large"),
        ("²", "digits only"),
    ],
)
def test_whole_number_refuses_with_a_reason(raw: str, says: str) -> None:
    with pytest.raises(FieldError, match=says):
        fields.whole_number(raw)


def test_decimal_amount_keeps_the_partners_digits() -> None:
    assert fields.decimal_amount(" 129.50 ") == "129.50"
    with pytest.raises(FieldError, match="decimal mark"):
        fields.decimal_amount("3,50")
    with pytest.raises(FieldError, match="not a decimal amount"):
        fields.decimal_amount("-1")


def test_currency_is_iso_4217_shaped() -> None:
    assert fields.currency_code("usd") == "USD"
    with pytest.raises(FieldError, match="ISO 4217"):
        fields.currency_code("dollars")


def test_availability_is_forgiving_about_case_only() -> None:
    assert fields.availability(" In_Stock ") == "in_stock"
    with pytest.raises(FieldError, match="one of in_stock, out_of_stock"):
        fields.availability("in stock")


def test_timestamps_need_a_zone_and_come_back_in_utc() -> None:
    assert fields.timestamp("2026-11-20T08:30:00+02:00") == datetime(2026, 11, 20, 6, 30, tzinfo=UTC)
    with pytest.raises(FieldError, match="no timezone"):
        fields.timestamp("2026-11-20T08:30:00")
    with pytest.raises(FieldError, match="ISO 8601"):
        fields.timestamp("yesterday")
