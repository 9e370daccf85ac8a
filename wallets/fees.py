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


def fee_part_returned(*, gross: int, fee: int, returned_before: int, fee_returned_before: int, amount: int) -> int:
    """The platform fee's part of ``amount`` going back to a buyer (a refund, a lost dispute) out of a charge of
    ``gross`` on which the platform took ``fee``, after ``returned_before`` went back already carrying
    ``fee_returned_before`` of the fee.

    PLATFORM_FEE_ON_REFUND "kept": nothing, the seller returns it all. "refunded": the fee in proportion, computed on
    the running total (rounded half up) rather than per return, so that however a charge is returned in parts, the
    parts of the fee add up to exactly the fee once it is all returned. The rest of ``amount`` is the seller's.
    """
    if settings.PLATFORM_FEE_ON_REFUND == "kept" or gross == 0:
        return 0
    returned_after = returned_before + amount
    fee_after = (Decimal(fee) * returned_after / gross).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return max(0, min(amount, int(fee_after) - fee_returned_before))
