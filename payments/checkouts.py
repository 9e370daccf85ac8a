"""The hosted payment page (DESIGN.md "Pay-in, hosted payment page"; the seeds' "hosted payment page" deep dive).

The buyer types their card on the PSP's page, never ours. We register the payment with the PSP, keep the PSP's
token on every order before we answer, and wait: the PSP's signed ``checkout.session.completed`` (or ``expired``)
webhook moves the orders. The buyer's redirect back to the storefront moves nothing; it only shows the status.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import transaction

from api.models import ApiClient
from ledger.money import to_minor
from payments.errors import MixedCurrencies, PspRefused, PspUnavailable
from payments.models import PaymentEvent, PaymentOrder
from payments.psp import payment_gateway
from payments.psp.gateway import (
    CheckoutItem,
    PspConfigurationError,
    TransientPspError,
    UnknownPspOutcome,
)
from payments.services import BuyerInfo, NewOrder, payment_create

CHECKOUT_ACTOR = "checkout"
# Placeholder a storefront may put in its redirect URLs: it learns the payment id only from our answer.
PAYMENT_ID_PLACEHOLDER = "{PAYMENT_ID}"


def checkout_create(
    *,
    client: ApiClient,
    checkout_id: str,
    buyer: BuyerInfo,
    orders: Sequence[NewOrder],
    success_url: str,
    cancel_url: str,
) -> PaymentEvent:
    """Store the payment, register it at the PSP (our payment id is the PSP's idempotency key, so it registers once)
    and keep the PSP's token on the orders, all before answering.

    Runs inside the API's idempotency transaction: if the PSP does not answer, everything rolls back and the
    storefront retries with the same key. A session the PSP made before a lost answer is never shown to a buyer and
    expires unpaid.
    """
    currencies = {order.currency for order in orders}
    if len(currencies) != 1:
        raise MixedCurrencies(field="payment_orders")
    (currency,) = currencies
    with transaction.atomic(savepoint=False):
        event = payment_create(
            client=client, checkout_id=checkout_id, buyer=buyer, payment_method_token="", orders=orders
        )
        items = [
            CheckoutItem(
                name=f"{order.seller_account}: order {order.payment_order_id}",
                amount=to_minor(order.amount, currency),
            )
            for order in orders
        ]
        try:
            hosted = payment_gateway().checkout_create(
                nonce=event.payment_id,
                currency=currency,
                items=items,
                success_url=success_url.replace(PAYMENT_ID_PLACEHOLDER, event.payment_id),
                cancel_url=cancel_url.replace(PAYMENT_ID_PLACEHOLDER, event.payment_id),
                metadata={"payment_id": event.payment_id, "checkout_id": checkout_id},
                customer_email=buyer.email,
            )
        except (TransientPspError, UnknownPspOutcome) as exc:
            raise PspUnavailable() from exc
        except PspConfigurationError as exc:
            raise PspRefused() from exc
        PaymentEvent.objects.filter(pk=event.pk).update(hosted_page_url=hosted.url)
        event.hosted_page_url = hosted.url
        order_rows: list[PaymentOrder] = list(event.orders.all())
        for order in sorted(order_rows, key=lambda row: row.pk):
            order.psp_token = hosted.token
            # Registered at the PSP: from here the PSP holds the payment, waiting for the buyer.
            order.start_execution(actor=CHECKOUT_ACTOR, reason="registering the hosted payment page")
            order.save()
            order.mark_pending(actor=CHECKOUT_ACTOR, reason="waiting for the buyer on the hosted page")
            order.save()
    return event


def checkout_abandon(*, event: PaymentEvent) -> None:
    """The buyer came back through the cancel link: close the hosted page at the PSP, so that it can no longer be
    paid. The PSP's expiry webhook then fails the orders; this changes nothing of ours by itself."""
    token = event.orders.values_list("psp_token", flat=True).first()
    if token:
        payment_gateway().checkout_expire(token=token)
