"""The sandbox's processing fee: a percentage of the gross plus a fixed part, Stripe's standard card pricing shape."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings

# Stripe's list price for European and US cards; psp_sandbox/settings.py reads the environment over these.
DEFAULT_FEE_PERCENT = "2.9"
DEFAULT_FEE_FIXED = 30


def fee_rule() -> tuple[Decimal, int]:
    # getattr: the rule is configured in psp_sandbox/settings.py, which only the sandbox process runs.
    percent = Decimal(str(getattr(settings, "SANDBOX_FEE_PERCENT", DEFAULT_FEE_PERCENT)))
    fixed = int(getattr(settings, "SANDBOX_FEE_FIXED", DEFAULT_FEE_FIXED))
    return percent, fixed


def fee_split(amount: int, *, percent: Decimal, fixed: int) -> tuple[int, int]:
    """Split a gross ``amount`` (minor units) into ``(fee, net)``.

    The one rounding rule: the percentage part is rounded half up to a whole minor unit, then the fixed part is added;
    the fee never exceeds the gross, and ``net = amount - fee``, so the parts always add up to the whole.
    """
    variable = (Decimal(amount) * percent / Decimal(100)).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    fee = min(int(variable) + fixed, amount)
    return fee, amount - fee
