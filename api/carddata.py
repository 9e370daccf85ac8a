"""The card-number guard: nothing that looks like a card number is accepted, stored or logged.

We take PSP tokens only (DESIGN.md "Security"). A payload holding a card number is refused as a whole, before
anything reads it further, so the number never reaches a model, a log line or an idempotency record.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

# A run of digits, in groups parted by single spaces or dashes, not glued to further digits. Letters around the run do
# not excuse it (``pm4242424242424242`` is a card number with a prefix). The price: a random 32-character hex id
# holds a Luhn-valid run of 13-19 digits about once in 250, and is refused; storefronts choose their ids.
_RUN = re.compile(r"(?<![0-9])[0-9]+(?:[ -][0-9]+)*")
_GROUP = re.compile(r"[0-9]+")


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _card_spans(text: str) -> Iterator[tuple[int, int]]:
    """Where ``text`` holds a card number: 13-19 digits, Luhn-valid, made of whole groups of a run.

    Whole groups, so that ``4242 4242 4242 4242`` and ``4242424242424242 404`` are both found, while a plain run of
    digits is only ever judged whole: a 19-digit reference holds some Luhn-valid 13-digit window more often than not.
    """
    for run in _RUN.finditer(text):
        groups = [(group.start(), group.end()) for group in _GROUP.finditer(run.group())]
        first = 0
        while first < len(groups):
            digits, found = "", False
            for last in range(first, len(groups)):
                digits += run.group()[groups[last][0] : groups[last][1]]
                if len(digits) > 19:
                    break
                if len(digits) >= 13 and luhn_valid(digits):
                    yield run.start() + groups[first][0], run.start() + groups[last][1]
                    first, found = last + 1, True
                    break
            if not found:
                first += 1


def contains_card_number(text: str) -> bool:
    """True when ``text`` holds a 13-19 digit, Luhn-valid number (spaces or dashes between digits allowed)."""
    return len(text) >= 13 and next(_card_spans(text), None) is not None


def _log_card_spans(text: str) -> Iterator[tuple[int, int]]:
    """The card numbers of a log line. The digits after a decimal point are not one: a duration such as
    ``0.0367946749997828`` is Luhn-valid one time in ten."""
    for start, end in _card_spans(text):
        if not (start >= 2 and text[start - 1] == "." and text[start - 2].isdigit()):
            yield start, end


def log_holds_card_number(text: str) -> bool:
    """True when the log line ``text`` holds a card number, by the rule ``mask_card_numbers`` removes them by."""
    return len(text) >= 13 and next(_log_card_spans(text), None) is not None


def mask_card_numbers(text: str) -> str:
    """``text`` with every card number replaced, for log lines (fractions kept: see ``_log_card_spans``)."""
    if len(text) < 13:
        return text
    pieces, position = [], 0
    for start, end in _log_card_spans(text):
        pieces += [text[position:start], "[card number removed]"]
        position = end
    return "".join(pieces) + text[position:] if pieces else text


# What a card number anywhere in a JSON document shows in its text: 13 digits in a row, single spaces or dashes allowed
# between them; or, for the forms the parser expands, an escape (``\u0034`` is a digit) or a number with an exponent
# (``4.2e15`` parses to 16 digits; a number starts the document or follows ``:``, ``[`` or ``,``, so ids such as
# ``"a1e5"`` do not count). A text without any of them cannot hold one, and the document need not be walked. Separate
# searches: one pattern with alternatives tries each of them at every position, and costs more than the walk it spares.
_THIRTEEN_DIGITS = re.compile(r"[0-9](?:[ -]?[0-9]){12}")
_EXPONENT = re.compile(r"[:\[,]\s*-?[0-9][0-9.]*[eE]")
_LEADING_EXPONENT = re.compile(r"\s*-?[0-9][0-9.]*[eE]")


def json_might_hold_card_number(text: str) -> bool:
    """False when the JSON document ``text`` certainly holds no card number (the common case, answered in a few
    quick passes over the text); True when ``find_card_number`` must look at what it parses to."""
    return (
        _THIRTEEN_DIGITS.search(text) is not None
        or "\\u" in text
        or _EXPONENT.search(text) is not None
        or _LEADING_EXPONENT.match(text) is not None
    )


def find_card_number(payload: Any) -> str | None:
    """The path (``payment_orders[1].amount``) of the first value or key in ``payload`` holding a card number."""
    for path, text in _walk(payload, ""):
        if contains_card_number(text):
            return path or "(body)"
    return None


def _walk(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            yield child, str(key)
            yield from _walk(item, child)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, f"{path}[{index}]")
    elif isinstance(value, str):
        yield path, value
    elif isinstance(value, int) and not isinstance(value, bool):
        if 10**12 <= abs(value) < 10**19:
            yield path, str(value)
    elif isinstance(value, Decimal) and value.is_finite() and 12 <= value.adjusted() <= 18:
        # Only a number of 13-19 integer digits can be a card number; nothing larger is ever expanded.
        yield path, format(value, "f").split(".")[0]
