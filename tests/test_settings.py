from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import check_currencies


@pytest.mark.parametrize(
    ("currencies", "maxima", "message"),
    [
        (["XXQ"], {"XXQ": Decimal(10)}, "not an ISO 4217 currency"),
        (["CLF"], {"CLF": Decimal(10)}, "4 decimal places"),
        (["EUR"], {"EUR": Decimal(10) ** 15}, r"below 10\^15"),
        (["EUR"], {"EUR": Decimal(0)}, "above 0"),
    ],
)
def test_a_currency_the_columns_cannot_hold_is_refused_at_start_up(
    currencies: list[str], maxima: dict[str, Decimal], message: str
) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        check_currencies(currencies, maxima)


def test_the_default_currencies_are_accepted() -> None:
    check_currencies(["EUR", "JPY", "KWD"], {"EUR": Decimal(100000), "JPY": Decimal(15000000), "KWD": Decimal(30000)})


@pytest.mark.parametrize(
    ("percent", "by_currency", "fixed", "message"),
    [
        (Decimal(-5), {}, {}, "between 0 and 100"),
        (Decimal(101), {}, {}, "between 0 and 100"),
        (Decimal(5), {"JPY": Decimal(150)}, {}, "between 0 and 100"),
        (Decimal(5), {}, {"EUR": Decimal("0.30")}, "whole minor units"),
        (Decimal(5), {}, {"EUR": Decimal(-1)}, "whole minor units"),
        (Decimal(5), {"XXX": Decimal(1)}, {}, "not in PAYMENT_CURRENCIES"),
    ],
)
def test_a_fee_setting_that_could_break_pay_ins_is_refused_at_start_up(
    percent: Decimal, by_currency: dict[str, Decimal], fixed: dict[str, Decimal], message: str
) -> None:
    from config.env import check_fees

    with pytest.raises(ImproperlyConfigured, match=message):
        check_fees(["EUR", "JPY"], percent, by_currency, fixed)


@pytest.mark.parametrize(
    ("uses_sandbox", "secret", "tolerance", "message"),
    [
        (True, "whsec_sandbox", 0, "TOLERANCE_SECONDS must be above 0"),
        (False, "", 300, "STRIPE_WEBHOOK_SECRET"),
        (False, "not-a-secret", 300, "STRIPE_WEBHOOK_SECRET"),
    ],
)
def test_webhook_settings_that_would_fail_later_are_refused_at_start_up(
    uses_sandbox: bool, secret: str, tolerance: int, message: str
) -> None:
    from config.env import check_stripe

    with pytest.raises(ImproperlyConfigured, match=message):
        check_stripe(uses_sandbox=uses_sandbox, webhook_secret=secret, tolerance_seconds=tolerance)
    check_stripe(uses_sandbox=uses_sandbox, webhook_secret="whsec_abc", tolerance_seconds=300)
