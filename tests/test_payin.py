from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django_fsm import TransitionNotAllowed
from rest_framework.test import APIClient

from api.services import api_client_create
from ledger.models import JournalTransaction
from payments.models import OrderStatus, PaymentOrder
from payments.services import order_succeed
from tests.conftest import order, payment_body, unique
from wallets.fees import platform_fee
from wallets.selectors import wallet_ledger_balances

pytestmark = pytest.mark.django_db


def _executing(payment_order_id: str) -> None:
    target = PaymentOrder.objects.get(payment_order_id=payment_order_id)
    target.start_execution(actor="test")
    target.save()


def test_success_and_its_payin_posting_happen_together_once(post_payment: Callable[..., Any]) -> None:
    # given an order being executed
    created = post_payment(payment_body(payment_orders=[order(amount="19.99", seller_account="seller_7")])).json()
    order_id = created["payment_orders"][0]["payment_order_id"]
    _executing(order_id)

    # when the PSP reports the capture, twice
    first = order_succeed(payment_order_id=order_id, psp_reference="pi_123", actor="test")
    again = order_succeed(payment_order_id=order_id, psp_reference="pi_123", actor="test")

    # then the order succeeded once and the seller's pending funds hold their share once
    assert first.status == again.status == OrderStatus.SUCCESS
    assert PaymentOrder.objects.get(payment_order_id=order_id).psp_reference == "pi_123"
    assert JournalTransaction.objects.filter(kind="payin", reference=order_id).count() == 1
    pending = wallet_ledger_balances(seller_account="seller_7", currency="EUR").pending
    assert pending == 1999 - platform_fee(1999, "EUR")


def test_an_order_not_yet_sent_cannot_succeed_and_posts_nothing(post_payment: Callable[..., Any]) -> None:
    created = post_payment(payment_body()).json()
    order_id = created["payment_orders"][0]["payment_order_id"]

    with pytest.raises(TransitionNotAllowed):
        order_succeed(payment_order_id=order_id, psp_reference="pi_x", actor="test")

    assert PaymentOrder.objects.get(payment_order_id=order_id).status == OrderStatus.NOT_STARTED
    assert not JournalTransaction.objects.filter(reference=order_id).exists()


def test_a_client_reads_the_balance_of_a_seller_it_paid(api: APIClient, post_payment: Callable[..., Any]) -> None:
    created = post_payment(
        payment_body(
            payment_orders=[
                order(amount="10.00", seller_account="seller_b1"),
                order(currency="JPY", amount="700", seller_account="seller_b1"),
            ]
        )
    ).json()
    for item in created["payment_orders"]:
        _executing(item["payment_order_id"])
        order_succeed(payment_order_id=item["payment_order_id"], psp_reference="pi", actor="test")

    response = api.get("/v1/sellers/seller_b1/balance")

    assert response.status_code == 200
    assert response.json() == {
        "seller_account": "seller_b1",
        "balances": [
            {"currency": "EUR", "pending": "9.50", "available": "0.00", "reserved": "0.00", "held": "0.00"},
            {"currency": "JPY", "pending": "665", "available": "0", "reserved": "0", "held": "0"},
        ],
    }


def test_naming_a_seller_in_a_payment_is_not_enough_to_read_its_balance(
    post_payment: Callable[..., Any], make_api: Callable[[str | None], APIClient]
) -> None:
    # given a seller with money from one client's captured payment
    created = post_payment(payment_body(payment_orders=[order(seller_account="seller_b2")])).json()
    captured = created["payment_orders"][0]["payment_order_id"]
    _executing(captured)
    order_succeed(payment_order_id=captured, psp_reference="pi", actor="test")
    # and another client that only names the seller in a payment it never completes
    other_key = api_client_create(name=unique("curious")).key
    other = make_api(other_key)
    post_payment(payment_body(payment_orders=[order(seller_account="seller_b2", amount="0.01")]), client=other)

    # when the other client asks for the seller's balance, then the seller does not exist for it
    assert other.get("/v1/sellers/seller_b2/balance").status_code == 404


def test_a_client_cannot_read_a_seller_it_never_paid(
    post_payment: Callable[..., Any], make_api: Callable[[str | None], APIClient]
) -> None:
    post_payment(payment_body(payment_orders=[order(seller_account="seller_b3")]))
    stranger = make_api(api_client_create(name=unique("stranger")).key)

    assert stranger.get("/v1/sellers/seller_b3/balance").status_code == 404
    assert stranger.get("/v1/sellers/nobody/balance").json()["error"]["code"] == "not_found"
