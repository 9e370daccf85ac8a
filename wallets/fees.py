"""The platform fee on a pay-in: the one place it is computed, with one rounding rule."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings


def platform_fee(gross: int, currency: str) -> int:
    """The platform's fee on ``gross`` minor units: the currency's percentage of it plus its fixed part.

    The percentage is PLATFORM_FEE_PERCENT_BY_CURRENCY's for the currency, else PLATFORM_FEE_PERCENT; the fixed part
    PLATFORM_FEE_FIXED's, else 0 (all checked at start-up). Rounding rule: the percentage part is rounded half up to a
    whole minor unit; the fee never exceeds the gross, so the seller's share (gross - fee) is never negative and the
    two parts always add up to the whole.
    """
    percent = settings.PLATFORM_FEE_PERCENT_BY_CURRENCY.get(currency, settings.PLATFORM_FEE_PERCENT)
    percent_part = (Decimal(gross) * percent / 100).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    fixed_part = int(settings.PLATFORM_FEE_FIXED.get(currency, 0))
    return min(gross, int(percent_part) + fixed_part)
