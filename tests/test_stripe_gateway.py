"""The Stripe adapter against the sandbox PSP in its own process, over HTTP, through stripe-python."""

from __future__ import annotations

from typing import Any

import pytest

from payments.psp.gateway import ChargeStatus, PspConfigurationError, UnknownPspOutcome
from payments.psp.stripe import StripeGateway, stripe_client
from tests.conftest import unique
from tests.sandbox import Sandbox, make_client

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_successful_charge_carries_the_psp_reference(gateway: StripeGateway) -> None:
    result = gateway.charge(payment_order_id=unique("po"), amount=1999, currency="EUR", payment_method="pm_card_visa")

    assert result.status == ChargeStatus.SUCCEEDED
    assert result.psp_reference.startswith("pi_")


@pytest.mark.parametrize(
    ("payment_method", "code"),
    [
        ("pm_card_chargeDeclined", "generic_decline"),
        ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds"),
        ("pm_card_doesNotExist", "resource_missing"),
    ],
)
def test_a_decline_is_a_permanent_failure_with_its_code(gateway: StripeGateway, payment_method: str, code: str) -> None:
    result = gateway.charge(payment_order_id=unique("po"), amount=1999, currency="EUR", payment_method=payment_method)

    assert result.status == ChargeStatus.FAILED
    assert result.failure_code == code
    assert result.failure_message


@pytest.mark.parametrize("payment_method", ["pm_card_authenticationRequired", "pm_card_processing"])
def test_a_charge_the_psp_finishes_later_is_pending(gateway: StripeGateway, payment_method: str) -> None:
    result = gateway.charge(payment_order_id=unique("po"), amount=1999, currency="EUR", payment_method=payment_method)

    assert result.status == ChargeStatus.PENDING
    assert result.psp_reference.startswith("pi_")


def test_the_payment_order_id_makes_a_retry_charge_once(gateway: StripeGateway) -> None:
    order_id = unique("po")

    first = gateway.charge(payment_order_id=order_id, amount=500, currency="EUR", payment_method="pm_card_visa")
    again = gateway.charge(payment_order_id=order_id, amount=500, currency="EUR", payment_method="pm_card_visa")

    assert again == first
    from psp_sandbox.selectors import charge_counts_by_order

    assert charge_counts_by_order().get(order_id) == 1


def test_a_lookup_finds_the_charge_of_an_order_or_nothing(gateway: StripeGateway) -> None:
    order_id = unique("po")
    charged = gateway.charge(payment_order_id=order_id, amount=700, currency="JPY", payment_method="pm_card_visa")

    assert gateway.lookup(payment_order_id=order_id) == charged
    assert gateway.lookup(payment_order_id=unique("po_never_sent")) is None


def test_a_wrong_api_key_is_a_configuration_error(sandbox: Sandbox) -> None:
    gateway = StripeGateway(make_client(sandbox.url, "sk_test_wrong"))
    with pytest.raises(PspConfigurationError):
        gateway.charge(payment_order_id=unique("po"), amount=500, currency="EUR", payment_method="pm_card_visa")


def test_no_answer_is_an_unknown_outcome_never_a_failure(settings: Any) -> None:
    # A port nobody listens on: the request may or may not have reached a PSP, as far as the caller can tell.
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"
    gateway = StripeGateway(stripe_client())
    with pytest.raises(UnknownPspOutcome):
        gateway.charge(payment_order_id=unique("po"), amount=500, currency="EUR", payment_method="pm_card_visa")
