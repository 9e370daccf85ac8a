from __future__ import annotations

import io
import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rest_framework.exceptions import ParseError, ValidationError

from api.errors import CardDataNotAllowed
from api.parsers import GuardedJSONParser
from ledger.money import AmountError, format_amount, from_minor, minor_unit_exponent, parse_amount, to_minor
from payments.api.serializers import PaymentOrderInput


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


# --- Properties of the money parser: strings in, Decimal and integer minor units out, never a float ----------------

_CURRENCIES = st.sampled_from(["EUR", "USD", "JPY", "KWD", "CHF", "GBP"])
# Every code parse_amount may raise: clients branch on them, so the set is part of the contract.
_AMOUNT_CODES = {"amount_invalid", "amount_precision_exceeded", "amount_not_positive", "amount_too_large"}


@st.composite
def _amount_text(draw: st.DrawFn, currency: str) -> tuple[str, int]:
    """A well-formed amount of ``currency`` with 0 to its exponent decimals, and its value in minor units."""
    exponent = minor_unit_exponent(currency)
    whole = draw(st.integers(min_value=0, max_value=10**15))
    places = draw(st.integers(min_value=0, max_value=exponent))
    fraction = draw(st.integers(min_value=0, max_value=10**places - 1)) if places else 0
    text = f"{whole}.{fraction:0{places}d}" if places else str(whole)
    return text, whole * 10**exponent + fraction * 10 ** (exponent - places)


@given(data=st.data(), currency=_CURRENCIES)
def test_a_well_formed_amount_parses_exactly_to_its_minor_units(data: st.DataObject, currency: str) -> None:
    text, minor = data.draw(_amount_text(currency))
    if minor == 0:
        with pytest.raises(AmountError) as caught:
            parse_amount(text, currency)
        assert caught.value.code == "amount_not_positive"
        return
    amount = parse_amount(text, currency)
    assert type(amount) is Decimal
    assert to_minor(amount, currency) == minor
    assert type(to_minor(amount, currency)) is int
    # The API's form has exactly the currency's places, and reads back as the same amount.
    formatted = format_amount(amount, currency)
    assert len(formatted.partition(".")[2]) == minor_unit_exponent(currency)
    assert parse_amount(formatted, currency) == amount


@given(
    currency=_CURRENCIES,
    whole=st.integers(min_value=0, max_value=10**9),
    extra=st.text(alphabet="0123456789", min_size=1, max_size=6),
)
def test_more_decimals_than_the_currency_has_are_refused_never_rounded(currency: str, whole: int, extra: str) -> None:
    places = "0" * minor_unit_exponent(currency) + extra
    with pytest.raises(AmountError) as caught:
        parse_amount(f"{whole}.{places}", currency)
    assert caught.value.code == "amount_precision_exceeded"


@given(text=st.text(max_size=30), currency=_CURRENCIES)
def test_any_text_is_an_exact_amount_or_a_refusal_with_a_stable_code(text: str, currency: str) -> None:
    refusal: AmountError | None = None
    try:
        amount = parse_amount(text, currency, maximum=Decimal(100000))
    except AmountError as exc:
        refusal = exc
    if refusal is not None:
        assert refusal.code in _AMOUNT_CODES
    else:
        assert type(amount) is Decimal
        assert 0 < amount <= 100000
        assert amount.scaleb(minor_unit_exponent(currency)) == to_minor(amount, currency)


@given(minor=st.integers(min_value=-(10**17), max_value=10**17), currency=_CURRENCIES)
def test_minor_units_and_decimals_convert_both_ways_exactly(minor: int, currency: str) -> None:
    amount = from_minor(minor, currency)
    assert type(amount) is Decimal
    assert to_minor(amount, currency) == minor
    assert from_minor(to_minor(amount, currency), currency) == amount


@given(value=st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers()))
def test_a_json_number_never_becomes_a_float_and_is_refused_as_an_amount(value: float) -> None:
    # given: the number as a client would send it
    raw = json.dumps({"payment_order_id": "po_1", "seller_account": "s_1", "amount": value, "currency": "EUR"})

    # when
    try:
        body = GuardedJSONParser().parse(io.BytesIO(raw.encode()))
    except (ParseError, CardDataNotAllowed):  # absurd magnitude, or 13-19 digits that may be a card: body refused
        return

    # then
    assert not isinstance(body["amount"], float)
    with pytest.raises(ValidationError) as caught:
        PaymentOrderInput().run_validation(body)
    assert caught.value.detail["amount"][0].code == "amount_not_string"
