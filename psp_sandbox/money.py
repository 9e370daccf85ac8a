"""Minor units to major units, by the currency's ISO 4217 exponent (JPY 0, EUR 2, KWD 3), with Decimal only."""

from __future__ import annotations

from decimal import Decimal
from functools import cache

from moneyed import get_currency


@cache
def exponent(currency: str) -> int:
    # py-moneyed knows ISO 4217: ``sub_unit`` is 1, 100 or 1000 minor units to the major unit.
    return len(str(get_currency(currency.upper()).sub_unit)) - 1


def major(amount: int, currency: str) -> str:
    """``1999, "eur"`` → ``"19.99"``; ``1999, "jpy"`` → ``"1999"``; ``-5, "kwd"`` → ``"-0.005"``."""
    places = exponent(currency)
    return str(Decimal(amount).scaleb(-places).quantize(Decimal(1).scaleb(-places)))


def display(amount: int, currency: str) -> str:
    return f"{major(amount, currency)} {currency.upper()}"
