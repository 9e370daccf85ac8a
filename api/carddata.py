"""The card-number guard: nothing that looks like a card number is accepted, stored or logged.

We take PSP tokens only (DESIGN.md "Security"). A payload holding a card number is refused as a whole, before
anything reads it further, so the number never reaches a model, a log line or an idempotency record.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

# 13 to 19 digits, optionally grouped by single spaces or dashes, not glued to further digits. Letters around the run
# do not excuse it (``pm4242424242424242`` is a card number with a prefix). The price: a random 32-character hex id
# holds a Luhn-valid run of 13-19 digits about once in 250, and is refused; storefronts choose their ids.
_CANDIDATE = re.compile(r"(?<![0-9])[0-9](?:[ -]?[0-9]){12,18}(?![0-9])")
_SEPARATORS = re.compile(r"[ -]")


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


def contains_card_number(text: str) -> bool:
    """True when ``text`` holds a 13-19 digit, Luhn-valid run (spaces or dashes between digits allowed)."""
    if len(text) < 13:
        return False
    # The whole run is checked, not windows inside it: a 19-digit reference holds some Luhn-valid 13-digit window
    # more often than not, and refusing those would refuse ordinary ids without protecting a single card.
    return any(luhn_valid(_SEPARATORS.sub("", match.group())) for match in _CANDIDATE.finditer(text))


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
