from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.money import AmountError, format_amount, from_minor, minor_unit_exponent, parse_amount, to_minor


@pytest.mark.parametrize(("currency", "exponent"), [("JPY", 0), ("EUR", 2), ("USD", 2), ("KWD", 3), ("BHD", 3)])
def test_minor_unit_exponent_follows_iso_4217(currency: str, exponent: int) -> None:
    assert minor_unit_exponent(currency) == exponent


@pytest.mark.parametrize(
    ("text", "currency", "expected"),
    [
        ("19.99", "EUR", Decimal("19.99")),
        ("5", "EUR", Decimal("5")),
        ("1000", "JPY", Decimal("1000")),
        ("1.005", "KWD", Decimal("1.005")),
        ("0.01", "EUR", Decimal("0.01")),
    ],
)
def test_valid_amounts_parse_exactly(text: str, currency: str, expected: Decimal) -> None:
    assert parse_amount(text, currency) == expected


@pytest.mark.parametrize(
    ("text", "currency", "code"),
    [
        ("1.005", "EUR", "amount_precision_exceeded"),
        ("100.5", "JPY", "amount_precision_exceeded"),
        ("1.0", "JPY", "amount_precision_exceeded"),
        ("1.0001", "KWD", "amount_precision_exceeded"),
        ("0", "EUR", "amount_not_positive"),
        ("0.00", "EUR", "amount_not_positive"),
        ("-1.00", "EUR", "amount_invalid"),
        ("1e3", "EUR", "amount_invalid"),
        ("1,00", "EUR", "amount_invalid"),
        (" 1.00", "EUR", "amount_invalid"),
        ("01.00", "EUR", "amount_invalid"),
        ("NaN", "EUR", "amount_invalid"),
        ("", "EUR", "amount_invalid"),
    ],
)
def test_invalid_amounts_are_refused_never_rounded(text: str, currency: str, code: str) -> None:
    with pytest.raises(AmountError) as caught:
        parse_amount(text, currency)
    assert caught.value.code == code


def test_amount_above_the_maximum_is_refused() -> None:
    assert parse_amount("100.00", "EUR", maximum=Decimal(100)) == Decimal(100)
    with pytest.raises(AmountError) as caught:
        parse_amount("100.01", "EUR", maximum=Decimal(100))
    assert caught.value.code == "amount_too_large"


def test_formatting_uses_the_currency_decimal_places() -> None:
    assert format_amount(Decimal("5"), "EUR") == "5.00"
    assert format_amount(Decimal("500.000"), "JPY") == "500"
    assert format_amount(Decimal("1.5"), "KWD") == "1.500"


def test_to_minor_refuses_fractions_of_a_minor_unit() -> None:
    with pytest.raises(AmountError):
        to_minor(Decimal("0.001"), "EUR")


@given(minor=st.integers(min_value=1, max_value=10**15), currency=st.sampled_from(["EUR", "JPY", "KWD"]))
def test_minor_units_round_trip_through_the_api_string(minor: int, currency: str) -> None:
    text = format_amount(from_minor(minor, currency), currency)
    assert to_minor(parse_amount(text, currency), currency) == minor
