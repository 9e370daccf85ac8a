"""Typed readers for settings that come from environment variables.

Every setting of the project is read through these, so a typo in a value fails at start-up with the variable's name
instead of surfacing later as a strange behaviour.
"""

from __future__ import annotations

import os
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ImproperlyConfigured


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from exc


def env_decimal(name: str, default: str) -> Decimal:
    raw = os.environ.get(name) or default
    try:
        return Decimal(raw)
    except InvalidOperation as exc:
        raise ImproperlyConfigured(f"{name} must be a decimal number, got {raw!r}") from exc


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_decimal_map(name: str, default: dict[str, str]) -> dict[str, Decimal]:
    """Parse ``KEY=VALUE,KEY=VALUE`` into decimals, e.g. ``EUR=100000,JPY=15000000``."""
    raw = os.environ.get(name)
    pairs = default.items() if raw is None or raw.strip() == "" else _split_pairs(name, raw)
    result: dict[str, Decimal] = {}
    for key, value in pairs:
        try:
            result[key.strip().upper()] = Decimal(value.strip())
        except InvalidOperation as exc:
            raise ImproperlyConfigured(f"{name}: {value!r} is not a decimal number") from exc
    return result


def _split_pairs(name: str, raw: str) -> list[tuple[str, str]]:
    pairs = []
    for item in raw.split(","):
        if not item.strip():
            continue
        if "=" not in item:
            raise ImproperlyConfigured(f"{name} must look like KEY=VALUE,KEY=VALUE; got {item!r}")
        key, value = item.split("=", 1)
        pairs.append((key, value))
    return pairs


# Amounts are stored as numeric(18, 3): at most 3 decimal places and 15 integer digits.
_AMOUNT_DECIMALS = 3
_AMOUNT_INTEGER_DIGITS = 15


def check_currencies(currencies: list[str], maxima: dict[str, Decimal]) -> None:
    """Refuse, at start-up, a currency the amount columns cannot hold exactly (or do not know)."""
    from moneyed import get_currency
    from moneyed.classes import CurrencyDoesNotExist

    for code in currencies:
        try:
            decimals = len(str(get_currency(code).sub_unit)) - 1
        except CurrencyDoesNotExist:
            raise ImproperlyConfigured(f"PAYMENT_CURRENCIES: {code!r} is not an ISO 4217 currency") from None
        if decimals > _AMOUNT_DECIMALS:
            raise ImproperlyConfigured(
                f"PAYMENT_CURRENCIES: {code} has {decimals} decimal places; amounts are stored with {_AMOUNT_DECIMALS}"
            )
        if not 0 < maxima[code] < Decimal(10) ** _AMOUNT_INTEGER_DIGITS:
            raise ImproperlyConfigured(f"MAX_ORDER_AMOUNTS: {code} must be above 0 and below 10^15")


def check_fees(
    currencies: list[str], percent: Decimal, percent_by_currency: dict[str, Decimal], fixed: dict[str, Decimal]
) -> None:
    """Refuse, at start-up, a fee that could exceed a payment or be negative, or one for a currency not accepted."""
    for name, value in [("PLATFORM_FEE_PERCENT", percent), *percent_by_currency.items()]:
        if not 0 <= value <= 100:
            raise ImproperlyConfigured(f"platform fee percent {name}={value} must be between 0 and 100")
    for code, value in fixed.items():
        if value < 0 or value != value.to_integral_value():
            raise ImproperlyConfigured(f"PLATFORM_FEE_FIXED: {code}={value} must be whole minor units, 0 or more")
    unknown = sorted((set(percent_by_currency) | set(fixed)) - set(currencies))
    if unknown:
        raise ImproperlyConfigured(f"platform fee settings name currencies not in PAYMENT_CURRENCIES: {unknown}")


def check_networks(name: str, values: list[str]) -> None:
    """Refuse, at start-up, an allow-list entry that is not an IP address or network (``10.0.0.0/8``)."""
    import ipaddress

    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ImproperlyConfigured(f"{name}: {value!r} is not an IP address or network") from None


def check_stripe(*, uses_sandbox: bool, webhook_secret: str, tolerance_seconds: int) -> None:
    """Refuse at start-up what would only show when the first webhook arrives."""
    if tolerance_seconds <= 0:
        # stripe-python checks the timestamp only when the tolerance is truthy: 0 would accept replays of any age.
        raise ImproperlyConfigured("STRIPE_WEBHOOK_TOLERANCE_SECONDS must be above 0")
    if not uses_sandbox and not webhook_secret.startswith("whsec_"):
        raise ImproperlyConfigured("STRIPE_WEBHOOK_SECRET (whsec_…) must be set with a real STRIPE_API_KEY")
