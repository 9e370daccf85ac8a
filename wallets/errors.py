from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from api.errors import Conflict, Unprocessable


class InsufficientFunds(Conflict):
    default_code = "insufficient_funds"
    default_message = "The seller's balance does not cover this."


class ExchangeRateMissing(Unprocessable):
    """No loaded rate converts one currency into the other (wallets/fx.py)."""

    default_code = "exchange_rate_missing"
    default_message = "There is no exchange rate between these currencies."


class WalletMappingError(Exception):
    """A wallet's buckets point at other ledger accounts than its own: data damage, for a person to look at."""


class RatesFileInvalid(ImproperlyConfigured):
    """The exchange rates file (FX_RATES_FILE) cannot be read, or holds something other than valid rates."""
