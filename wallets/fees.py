"""The platform fee on a pay-in: the one place it is computed, with one rounding rule."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings


def platform_fee(gross: int, currency: str) -> int:
    """The platform's fee on ``gross`` minor units: PLATFORM_FEE_PERCENT of it plus the currency's fixed part.

    Rounding rule: the percentage part is rounded half up to a whole minor unit; the fee never exceeds the gross,
    so the seller's share (gross - fee) is never negative and the two parts always add up to the whole.
    """
    percent_part = (Decimal(gross) * settings.PLATFORM_FEE_PERCENT / 100).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    fixed_part = settings.PLATFORM_FEE_FIXED.get(currency, 0)
    return min(gross, int(percent_part) + fixed_part)
