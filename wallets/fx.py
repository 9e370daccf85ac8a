"""Currency conversion for payouts in a seller's own currency, at the rates in django-money's Rate table.

The rates come from a JSON file (``settings.FX_RATES_FILE``), read offline by ``FileRatesBackend`` when
``manage.py update_rates`` (django-money's command; ``EXCHANGE_BACKEND`` names this backend) runs::

    {"base": "EUR", "rates": {"USD": "1.0850", "GBP": "0.8450"}}

Each rate is how many units of that currency one unit of the base buys: a decimal string (or a JSON number, read as a
``Decimal``, never a float). ``fx_convert`` converts between any two of the file's currencies, through the base
currency when neither is the base (django-money's ``get_rate``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, localcontext
from pathlib import Path
from typing import Any, NoReturn

from django.conf import settings
from django.db import transaction
from djmoney.contrib.exchange.backends.base import BaseExchangeBackend
from djmoney.contrib.exchange.exceptions import MissingRate
from djmoney.contrib.exchange.models import ExchangeBackend, Rate, get_rate

from ledger.money import AmountError, from_minor, minor_unit_exponent
from wallets.errors import ExchangeRateMissing, RatesFileInvalid

# Rate.value is numeric(20, 6): a rate with more decimals would be rounded silently by the database, a larger one
# refused by it. The file is refused instead, naming the rate.
RATE_DECIMAL_PLACES = 6
RATE_INTEGER_DIGITS = 14
_DECIMAL_STRING = re.compile(r"[0-9]+(?:\.[0-9]+)?")
# Wide enough that amount x rate is exact before the one rounding in fx_convert (amounts have at most 18 digits,
# a rate django-money computes by division has 28).
_EXACT_PRECISION = 60


@dataclass(frozen=True)
class RatesFile:
    base: str
    rates: Mapping[str, Decimal]  # currency -> units of it per one unit of base


def rates_file_read(path: Path) -> RatesFile:
    """Read and check the rates file; every refusal names the file and, where there is one, the currency."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RatesFileInvalid(f"exchange rates file {path}: cannot be read ({exc})") from exc
    try:
        document = json.loads(text, parse_float=Decimal, parse_constant=_refuse_constant)
    except ValueError as exc:
        raise RatesFileInvalid(f"exchange rates file {path}: not valid JSON ({exc})") from exc
    if not isinstance(document, dict) or set(document) != {"base", "rates"}:
        raise RatesFileInvalid(
            f'exchange rates file {path}: expected {{"base": "EUR", "rates": {{"USD": "1.0850", ...}}}}, '
            f"got {_shape(document)}"
        )
    base, rates = document["base"], document["rates"]
    if not isinstance(base, str) or not _is_currency(base):
        raise RatesFileInvalid(f"exchange rates file {path}: base {base!r} is not an ISO 4217 currency code")
    if not isinstance(rates, dict) or not rates:
        raise RatesFileInvalid(f"exchange rates file {path}: rates must be a non-empty object of currency: rate")
    checked: dict[str, Decimal] = {}
    for currency, raw in rates.items():
        if not _is_currency(currency):
            raise RatesFileInvalid(f"exchange rates file {path}: {currency!r} is not an ISO 4217 currency code")
        if currency == base:
            raise RatesFileInvalid(f"exchange rates file {path}: {currency} is the base currency; it has no rate")
        checked[currency] = _rate(path, currency, raw)
    return RatesFile(base=base, rates=checked)


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a number")


def _shape(document: object) -> str:
    if isinstance(document, dict):
        return f"an object with keys {sorted(document)}"
    return f"a JSON {type(document).__name__}"


def _is_currency(code: str) -> bool:
    try:
        minor_unit_exponent(code)
    except AmountError:
        return False
    return True


def _rate(path: Path, currency: str, raw: Any) -> Decimal:
    where = f"exchange rates file {path}: the rate of {currency}, {raw!r},"
    if isinstance(raw, str) and _DECIMAL_STRING.fullmatch(raw):
        value = Decimal(raw)
    elif isinstance(raw, Decimal):  # a JSON number with a fraction or an exponent (parse_float)
        value = raw
    elif isinstance(raw, int) and not isinstance(raw, bool):
        value = Decimal(raw)
    else:
        raise RatesFileInvalid(f'{where} is not a decimal number (write it as a string: "1.0850")')
    if value <= 0:
        raise RatesFileInvalid(f"{where} is not positive")
    if value >= Decimal(10) ** RATE_INTEGER_DIGITS:
        raise RatesFileInvalid(f"{where} has more than {RATE_INTEGER_DIGITS} integer digits")
    if value != value.quantize(Decimal(1).scaleb(-RATE_DECIMAL_PLACES)):
        raise RatesFileInvalid(f"{where} has more than {RATE_DECIMAL_PLACES} decimal places")
    return value


class FileRatesBackend(BaseExchangeBackend):
    """django-money's exchange backend for rates read from ``settings.FX_RATES_FILE``, with no network."""

    name = "file"

    def get_rates(self, **params: Any) -> dict[str, Decimal]:
        return dict(rates_file_read(settings.FX_RATES_FILE).rates)

    def update_rates(self, base_currency: str | None = None, **kwargs: Any) -> None:
        """Make the Rate table hold exactly the file's rates, or, if the file is refused, leave it as it was.

        django-money's own version only upserts: a currency taken out of the file would keep its last rate forever.
        The base currency is the file's; django-money's BASE_CURRENCY is not consulted.
        """
        path = settings.FX_RATES_FILE
        loaded = rates_file_read(path)
        if base_currency is not None and base_currency != loaded.base:
            raise RatesFileInvalid(f"exchange rates file {path}: base is {loaded.base}, not {base_currency}")
        with transaction.atomic():
            backend, _ = ExchangeBackend.objects.update_or_create(
                name=self.name, defaults={"base_currency": loaded.base}
            )
            Rate.objects.filter(backend=backend).exclude(currency__in=list(loaded.rates)).delete()
            Rate.objects.bulk_create(
                [Rate(currency=currency, value=value, backend=backend) for currency, value in loaded.rates.items()],
                update_conflicts=True,
                unique_fields=["currency", "backend"],
                update_fields=["value"],
            )


@dataclass(frozen=True)
class Conversion:
    source_currency: str
    source_amount: int  # minor units
    target_currency: str
    target_amount: int  # minor units of the target currency, rounded half up (see fx_convert)
    rate: Decimal  # units of target per one unit of source, as used


def fx_convert(*, amount: int, source: str, target: str) -> Conversion:
    """Convert ``amount`` minor units of ``source`` into ``target`` at the loaded rates (django-money's ``get_rate``:
    the rate itself, its inverse, or the cross rate through the file's base currency).

    Rounding rule: the exact product of the amount and the rate is rounded to a whole minor unit of the target
    currency (ISO 4217 exponent: JPY 0, EUR 2, KWD 3) half up, that is a remainder of exactly one half goes away
    from zero (``ROUND_HALF_UP``). This is the one place an FX amount is rounded.

    The same currency converts at rate 1 to the same amount. Raises ``ExchangeRateMissing`` when no loaded rate
    connects the two currencies, ``ledger.money.AmountError`` for a code that is not an ISO 4217 currency.
    """
    # Both codes are checked first, so an unknown one is refused even where it equals the other.
    minor_unit_exponent(source)
    target_exponent = minor_unit_exponent(target)
    if source == target:
        return Conversion(source, amount, target, amount, Decimal(1))
    try:
        rate = get_rate(source, target)
    except MissingRate as exc:
        raise ExchangeRateMissing(
            f"There is no exchange rate from {source} to {target}: the rates file has none, or manage.py "
            "update_rates has not loaded it."
        ) from exc
    if not isinstance(rate, Decimal):  # django-money's stored and derived rates are Decimals; anything else is a bug
        raise TypeError(f"django-money returned {rate!r} for {source} -> {target}, not a Decimal")
    with localcontext(prec=_EXACT_PRECISION):
        exact = from_minor(amount, source) * rate
        target_minor = exact.scaleb(target_exponent).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return Conversion(source, amount, target, int(target_minor), rate)
