from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.carddata import contains_card_number, find_card_number, luhn_valid


@pytest.mark.parametrize(
    "text",
    [
        "4242424242424242",
        "4242 4242 4242 4242",
        "4242-4242-4242-4242",
        "card: 4000 0566 5566 5556, thanks",
        "378282246310005",  # 15-digit American Express
        "6011111111111117",
        "pm4242424242424242",  # letters around the run do not excuse it
        "c4000056655665556x",
        "4000000000000002",
        "4222222222222",  # 13 digits
    ],
)
def test_card_numbers_are_found(text: str) -> None:
    assert contains_card_number(text)


@pytest.mark.parametrize(
    "text",
    [
        "4242424242424241",  # fails the Luhn check
        "424242424242",  # 12 digits: too short
        "42424242424242424242",  # 20 digits: too long to be a card
        "po_1001_a",
        "2026-11-21T05:06:36Z",
        "4242  4242 4242 4242",  # a double space ends the run
        "",
    ],
)
def test_other_strings_are_not_card_numbers(text: str) -> None:
    assert not contains_card_number(text)


def test_the_path_of_a_nested_card_number_is_reported() -> None:
    payload = {"payment_orders": [{"amount": "1.00"}, {"note": "4242 4242 4242 4242"}]}
    assert find_card_number(payload) == "payment_orders[1].note"


def test_numbers_and_keys_are_checked_too() -> None:
    assert find_card_number({"x": 4242424242424242}) == "x"
    assert find_card_number({"x": Decimal("4242424242424242")}) == "x"
    assert find_card_number({"4242424242424242": "1"}) == "4242424242424242"
    assert find_card_number({"x": [True, None, 1.5, "ok"]}) is None


@given(st.lists(st.integers(min_value=0, max_value=9), min_size=12, max_size=18))
def test_luhn_check_digit_makes_any_prefix_a_card_number(digits: list[int]) -> None:
    body = "".join(map(str, digits))
    check = next(d for d in "0123456789" if luhn_valid(body + d))
    assert contains_card_number(body + check)
    grouped = " ".join((body + check)[i : i + 4] for i in range(0, len(body) + 1, 4))
    assert contains_card_number(grouped)


def test_log_lines_are_masked() -> None:
    from api.carddata import mask_card_numbers

    line = 'GET /v1/payments/4242424242424242 404, then "4242 4242 4242 4241" and 4000-0566-5566-5556 200'
    assert mask_card_numbers(line) == (
        'GET /v1/payments/[card number removed] 404, then "4242 4242 4242 4241" and [card number removed] 200'
    )


@pytest.mark.parametrize("text", ["card 4242424242424242 123", "4242 4242 4242 4242 42", "12 4000056655665556"])
def test_a_card_number_next_to_other_digit_groups_is_found(text: str) -> None:
    assert contains_card_number(text)
