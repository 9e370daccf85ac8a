from __future__ import annotations

import io
import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from api.carddata import contains_card_number, find_card_number, json_might_hold_card_number, luhn_valid
from api.errors import CardDataNotAllowed
from api.parsers import GuardedJSONParser


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


def test_the_digits_of_a_fraction_in_a_log_line_are_not_a_card_number() -> None:
    from api.carddata import log_holds_card_number, mask_card_numbers

    # a duration whose 17 fraction digits are Luhn-valid, as a task's runtime often is
    duration = "succeeded in 0.08415375699951255s"
    assert contains_card_number(duration)
    assert not log_holds_card_number(duration)
    assert mask_card_numbers(duration) == duration
    # while a card number after a full stop that ends a word is still one
    sentence = "declined card.4242424242424242"
    assert log_holds_card_number(sentence)
    assert mask_card_numbers(sentence) == "declined card.[card number removed]"


@pytest.mark.parametrize("text", ["card 4242424242424242 123", "4242 4242 4242 4242 42", "12 4000056655665556"])
def test_a_card_number_next_to_other_digit_groups_is_found(text: str) -> None:
    assert contains_card_number(text)


# --- Properties: any card number, however written and wherever it sits in a body, is refused; the digits a body is
# full of (ids, timestamps, short numbers, amounts) are not ------------------------------------------------------------


@st.composite
def _card_number(draw: st.DrawFn) -> str:
    """A Luhn-valid number of 13-19 digits, in groups of any size parted by single spaces or dashes."""
    body = "".join(map(str, draw(st.lists(st.integers(0, 9), min_size=12, max_size=18))))
    digits = body + next(d for d in "0123456789" if luhn_valid(body + d))
    pieces, rest = [], digits
    while rest:
        size = draw(st.integers(min_value=1, max_value=len(rest)))
        pieces.append(rest[:size])
        rest = rest[size:]
    text = pieces[0]
    for piece in pieces[1:]:
        text += draw(st.sampled_from([" ", "-", ""])) + piece
    return text


_WORDS = st.text(alphabet="abcxyz_:/ ", max_size=12)  # no digits: they would join the number into another one


def _json_with(value: str) -> st.SearchStrategy[Any]:
    """Any JSON body holding ``value`` in a string somewhere: at the top, in an object, in a list, nested."""
    leaf = st.tuples(_WORDS, _WORDS).map(lambda words: f"{words[0]}{value}{words[1]}")
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.dictionaries(st.sampled_from(["a", "payment_orders", "buyer_info"]), inner, min_size=1),
            st.lists(inner, min_size=1, max_size=3).map(lambda items: ["x", 1, *items]),
        ),
        max_leaves=4,
    )


@given(number=_card_number(), prefix=_WORDS, suffix=_WORDS)
def test_any_card_number_inside_any_text_is_found(number: str, prefix: str, suffix: str) -> None:
    assert contains_card_number(f"{prefix}{number}{suffix}")


@given(data=st.data(), number=_card_number())
def test_any_card_number_anywhere_in_a_body_is_refused_before_a_view_sees_it(data: st.DataObject, number: str) -> None:
    # given
    body = data.draw(_json_with(number))
    as_key = data.draw(st.booleans())
    if as_key:
        body = {"buyer_info": {number: "1"}}

    # when / then
    assert find_card_number(body) is not None
    with pytest.raises(CardDataNotAllowed):
        GuardedJSONParser().parse(io.BytesIO(json.dumps(body).encode()))


@given(number=_card_number())
def test_a_card_number_sent_as_a_json_number_is_refused(number: str) -> None:
    digits = "".join(char for char in number if char.isdigit()).lstrip("0")
    assume(len(digits) >= 13)  # a leading zero is not JSON; without it, is it still 13 digits?
    with pytest.raises(CardDataNotAllowed):
        GuardedJSONParser().parse(io.BytesIO(f'{{"amount": {digits}}}'.encode()))


_NOT_CARDS = st.one_of(
    # the storefront's ids: letters with short runs of digits
    st.from_regex(r"(po|chk|buyer|seller)_[0-9]{1,12}(_[a-z]{1,3}[0-9]{0,6}){0,3}", fullmatch=True),
    # timestamps, as the API writes them and as people do
    st.datetimes().map(lambda moment: moment.isoformat()),
    st.datetimes().map(lambda moment: moment.strftime("%Y-%m-%d %H:%M:%S")),
    st.integers(min_value=0, max_value=2**32).map(str),  # Unix time in seconds, and any number of 12 digits or fewer
    st.integers(min_value=0, max_value=10**12 - 1).map(str),
    # amounts
    st.decimals(min_value=0, max_value=10**12 - 1, places=3, allow_nan=False).map(str),
)


@given(value=_NOT_CARDS)
def test_ids_timestamps_short_numbers_and_amounts_pass_the_guard(value: str) -> None:
    body = {"checkout_id": value, "payment_orders": [{"amount": value, "note": [value]}]}
    assert find_card_number(body) is None
    assert GuardedJSONParser().parse(io.BytesIO(json.dumps(body).encode())) == body


def _written(number: str, draw: Any) -> str:
    """``number`` as a JSON document may write it: plain, with some digits as \\u escapes, or as a JSON number
    (with an exponent, or without)."""
    digits = "".join(char for char in number if char.isdigit())
    form = draw(st.sampled_from(["plain", "escaped", "exponent", "integer"]))
    if form == "escaped":
        flags = draw(st.lists(st.booleans(), min_size=len(number), max_size=len(number)))
        escaped = "".join(f"\\u{ord(char):04x}" if flag else char for char, flag in zip(number, flags, strict=True))
        return f'"{escaped}"'
    if form == "exponent" and digits[0] != "0":
        shift = draw(st.integers(min_value=1, max_value=len(digits) - 1))
        mantissa = f"{digits[:-shift]}.{digits[-shift:]}"
        return f"{mantissa}e{shift}" if draw(st.booleans()) else f"{mantissa}E+{shift}"
    if form == "integer" and digits[0] != "0":
        return digits
    return json.dumps(number)


@given(data=st.data(), number=_card_number(), key=st.sampled_from(["amount", "buyer_info", "x"]))
def test_the_quick_look_at_the_text_never_misses_a_card_number_the_walk_finds(
    data: st.DataObject, number: str, key: str
) -> None:
    text = f'{{"{key}": [{data.draw(st.sampled_from(["1", chr(34) + "a" + chr(34)]))}, {_written(number, data.draw)}]}}'
    assert find_card_number(json.loads(text, parse_float=Decimal)) is not None
    assert json_might_hold_card_number(text)
    with pytest.raises(CardDataNotAllowed):
        GuardedJSONParser().parse(io.BytesIO(text.encode()))


@pytest.mark.parametrize(
    "text",
    [
        '{"a": "\\u0034242424242424242"}',  # one digit escaped
        '{"a": 4.242424242424242e15}',  # 16 digits once the exponent is applied
        '{"a": 4242424242424242}',
        '{"a": "4242 4242 4242 4242"}',
        '{"\\u0034242-4242-4242-4242": 1}',
    ],
)
def test_a_card_number_behind_an_escape_or_an_exponent_is_still_refused(text: str) -> None:
    assert json_might_hold_card_number(text)
    with pytest.raises(CardDataNotAllowed):
        GuardedJSONParser().parse(io.BytesIO(text.encode()))


def test_an_ordinary_payment_body_is_not_walked() -> None:
    body = {
        "checkout_id": "chk_1001",
        "buyer_info": {"id": "buyer_42", "email": "ann@example.com", "country": "DE", "ip": "203.0.113.9"},
        "payment_orders": [{"payment_order_id": "po_a1b2c3d4e5f6_17", "amount": "19.99", "currency": "EUR"}],
    }
    assert not json_might_hold_card_number(json.dumps(body))
