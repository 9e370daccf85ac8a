from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from api.carddata import find_card_number, json_might_hold_card_number
from api.errors import ApiError, CardDataNotAllowed, InvalidInput
from api.events import card_data_refused


class GuardedJSONParser(JSONParser):
    """JSON with extra rules applied before any view sees the body.

    - Numbers with a fraction parse to ``Decimal``: no float ever exists, even for a value we are about to reject.
      A number of absurd magnitude (``1e1000000000``) is refused before anything expands it.
    - A key repeated inside one object is refused: which of two amounts was meant is not ours to guess.
    - The body is at most DATA_UPLOAD_MAX_MEMORY_SIZE bytes and MAX_DEPTH levels deep.
    - A body holding a card number is refused whole (``api.carddata``), and never echoed back in the error.
    """

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise BodyTooLarge(f"The body may be at most {limit} bytes.")
        try:
            text = raw.decode("utf-8")
            data = json.loads(
                text,
                parse_float=_decimal,
                parse_constant=_refuse_constant,
                object_pairs_hook=_unique_keys,
            )
        except RecursionError:
            raise InvalidInput(f"The body nests deeper than {MAX_DEPTH} levels.", code="body_too_deep") from None
        except (UnicodeDecodeError, ValueError) as exc:
            if isinstance(exc, InvalidInput):
                raise
            raise ParseError("The body is not valid JSON.") from None
        if _depth(data) > MAX_DEPTH:
            raise InvalidInput(f"The body nests deeper than {MAX_DEPTH} levels.", code="body_too_deep")
        field = find_card_number(data) if json_might_hold_card_number(text) else None
        if field is not None:
            request = (parser_context or {}).get("request")
            if request is not None:
                card_data_refused(request, field)
            raise CardDataNotAllowed(field=field)
        return data


MAX_DEPTH = 16
# Far beyond any amount (10^15 major units is the column's limit), far below what is costly to expand.
_MAX_MAGNITUDE = 30


class BodyTooLarge(ApiError):
    status_code = 413
    default_code = "body_too_large"


def _decimal(text: str) -> Decimal:
    value = Decimal(text)
    if value.is_finite() and value and abs(value.adjusted()) > _MAX_MAGNITUDE:
        raise ParseError("A number in the body is out of range.")
    return value


def _depth(value: Any, level: int = 1) -> int:
    # Stops as soon as it is past MAX_DEPTH, so its own recursion stays shallow whatever the body.
    if level > MAX_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(item, level + 1) for item in value.values()), default=level)
    if isinstance(value, list):
        return max((_depth(item, level + 1) for item in value), default=level)
    return level


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
