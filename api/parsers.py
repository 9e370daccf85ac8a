from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from api.carddata import find_card_number
from api.errors import CardDataNotAllowed, InvalidInput


class GuardedJSONParser(JSONParser):
    """JSON with three extra rules applied before any view sees the body.

    - Numbers with a fraction parse to ``Decimal``: no float ever exists, even for a value we are about to reject.
    - A key repeated inside one object is refused: which of two amounts was meant is not ours to guess.
    - A body holding a card number is refused whole (``api.carddata``), and never echoed back in the error.
    """

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        raw = stream.read() if stream is not None else b""
        try:
            data = json.loads(
                raw.decode("utf-8"),
                parse_float=Decimal,
                parse_constant=_refuse_constant,
                object_pairs_hook=_unique_keys,
            )
        except (UnicodeDecodeError, ValueError) as exc:
            if isinstance(exc, InvalidInput):
                raise
            raise ParseError("The body is not valid JSON.") from None
        field = find_card_number(data)
        if field is not None:
            raise CardDataNotAllowed(field=field)
        return data


def _refuse_constant(name: str) -> Any:
    raise ParseError(f"{name} is not valid JSON.")


class DuplicateKey(InvalidInput, ValueError):
    default_code = "duplicate_key"


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            # Neither the key nor its path is echoed: the card guard has not seen this body yet.
            raise DuplicateKey("A key appears twice in one JSON object.")
        result[key] = value
    return result
