"""The card-number guard: nothing that looks like a card number is accepted, stored or logged.

We take PSP tokens only (DESIGN.md "Security"). A payload holding a card number is refused as a whole, before
anything reads it further, so the number never reaches a model, a log line or an idempotency record.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

# 13 to 19 digits, optionally grouped by single spaces or dashes, standing on their own: not glued to further digits
# or letters. A digit run inside a hexadecimal id (``po_9f3a1234567890123b``) is not a card number, and refusing
# those would refuse about one random 32-character hex id in 250.
_CANDIDATE = re.compile(r"(?<![0-9A-Za-z])[0-9](?:[ -]?[0-9]){12,18}(?![0-9A-Za-z])")
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
    elif isinstance(value, int | Decimal) and not isinstance(value, bool):
        yield path, format(value, "f")
