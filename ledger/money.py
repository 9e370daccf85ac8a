"""Amounts: parsing, minor units and formatting, by the currency's ISO 4217 exponent (JPY 0, EUR 2, KWD 3).

Money is a ``Decimal`` in code, a string in JSON and an integer count of minor units in the ledger. Nothing here
ever rounds: an amount with more decimals than its currency has is an error, not a value to be fixed up.
"""

from __future__ import annotations

import re
from decimal import Decimal
from functools import cache

from moneyed import get_currency
from moneyed.classes import CurrencyDoesNotExist

_AMOUNT = re.compile(r"(0|[1-9][0-9]{0,17})(?:\.([0-9]+))?")


class AmountError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(message)


@cache
def minor_unit_exponent(currency: str) -> int:
    """Decimal places of the currency's minor unit (ISO 4217), e.g. 2 for EUR."""
    try:
        sub_unit = get_currency(currency).sub_unit
    except CurrencyDoesNotExist as exc:
        raise AmountError("currency_not_supported", f"{currency!r} is not an ISO 4217 currency.") from exc
    return len(str(sub_unit)) - 1


def parse_amount(text: str, currency: str, *, maximum: Decimal | None = None) -> Decimal:
    """A positive amount written in major units (``"19.99"``), exact to the currency's minor unit."""
    match = _AMOUNT.fullmatch(text)
    if match is None:
        raise AmountError("amount_invalid", 'An amount is a decimal string such as "19.99": digits and one point.')
    decimals = match.group(2) or ""
    exponent = minor_unit_exponent(currency)
    if len(decimals) > exponent:
        raise AmountError(
            "amount_precision_exceeded",
            f"{currency} amounts have at most {exponent} decimal places; {text!r} has {len(decimals)}. "
            "Amounts are never rounded.",
        )
    amount = Decimal(text)
    if amount <= 0:
        raise AmountError("amount_not_positive", "The amount must be greater than zero.")
    if maximum is not None and amount > maximum:
        limit = format_amount(maximum, currency)
        raise AmountError("amount_too_large", f"The amount may not exceed {limit} {currency}.")
    return amount


def to_minor(amount: Decimal, currency: str) -> int:
    """Major units to an integer count of minor units; refuses (never rounds) an amount finer than the currency."""
    scaled = amount.scaleb(minor_unit_exponent(currency))
    if scaled != scaled.to_integral_value():
        raise AmountError("amount_precision_exceeded", f"{amount} is finer than a {currency} minor unit.")
    return int(scaled)


def from_minor(minor: int, currency: str) -> Decimal:
    exponent = minor_unit_exponent(currency)
    return Decimal(minor).scaleb(-exponent).quantize(Decimal(1).scaleb(-exponent))


def format_amount(amount: Decimal, currency: str) -> str:
    """The API's string form: exactly the currency's decimal places (``"5.00"`` EUR, ``"500"`` JPY)."""
    return str(amount.quantize(Decimal(1).scaleb(-minor_unit_exponent(currency))))
