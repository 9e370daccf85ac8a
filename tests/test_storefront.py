"""The demo storefront's pages without a browser: what they show, and what they refuse. (The flows through the PSP's
hosted page run in a real browser in tests/test_browser.py.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from payments.models import PaymentEvent
from tests.conftest import payment_body

pytestmark = pytest.mark.django_db


def test_the_cart_offers_both_ways_to_pay_and_lists_two_sellers() -> None:
    response = Client().get("/storefront/")

    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="pay-hosted"' in page
    assert 'id="pay-saved"' in page
    assert "seller_7" in page
    assert "seller_9" in page
    assert "30.50 EUR" in page


def test_a_saved_card_payment_is_created_for_the_demo_client_and_shown() -> None:
    client = Client()

    response = client.post("/storefront/pay/saved", {"payment_method": "pm_card_chargeDeclined"})

    assert response.status_code == 302
    event = PaymentEvent.objects.get()
    assert event.client.name == "demo-storefront"
    assert event.payment_method_token == "pm_card_chargeDeclined"
    assert sorted(event.orders.values_list("seller_id", flat=True)) == ["seller_7", "seller_9"]
    assert response["Location"] == f"/storefront/payments/{event.payment_id}/"
    status = client.get(f"/storefront/payments/{event.payment_id}/status").json()
    assert status["payment_id"] == event.payment_id
    assert status["status"] == "IN_PROGRESS"


def test_a_payment_method_that_is_not_offered_is_refused_and_nothing_is_stored() -> None:
    response = Client().post("/storefront/pay/saved", {"payment_method": "4242424242424242"})

    assert response.status_code == 400
    assert not PaymentEvent.objects.exists()


def test_another_clients_payment_is_not_shown(post_payment: Callable[..., Any]) -> None:
    created = post_payment(payment_body()).json()

    assert Client().get(f"/storefront/payments/{created['payment_id']}/").status_code == 404
    assert Client().get(f"/storefront/payments/{created['payment_id']}/status").status_code == 404
