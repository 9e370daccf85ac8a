from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.db import IntegrityError, transaction
from djmoney.money import Money

from api.models import ApiClient
from payments.errors import PaymentOrderIdTaken
from payments.models import PaymentEvent, PaymentOrder
from wallets.services import sellers_ensure

_ORDER_ID_UNIQUE = "payments_paymentorder_payment_order_id_key"


@dataclass(frozen=True)
class BuyerInfo:
    id: str
    email: str = ""
    country: str = ""


@dataclass(frozen=True)
class NewOrder:
    payment_order_id: str
    seller_account: str
    amount: Decimal
    currency: str


def payment_create(
    *,
    client: ApiClient,
    checkout_id: str,
    buyer: BuyerInfo,
    payment_method_token: str,
    orders: Sequence[NewOrder],
) -> PaymentEvent:
    """Store a payment and its orders, every order ``NOT_STARTED`` (DESIGN.md "Pay-in", step 1).

    Joins the caller's transaction when there is one (the API's idempotency record commits with it). Execution is
    not started here: the executor arrives with the PSP integration, and until then an order waits.
    """
    with transaction.atomic(savepoint=False):
        event = PaymentEvent.objects.create(
            client=client,
            checkout_id=checkout_id,
            buyer_id=buyer.id,
            buyer_email=buyer.email,
            buyer_country=buyer.country,
            payment_method_token=payment_method_token,
        )
        sellers_ensure(accounts=[order.seller_account for order in orders])
        rows = [
            PaymentOrder(
                event=event,
                payment_order_id=order.payment_order_id,
                seller_id=order.seller_account,
                amount=Money(order.amount, order.currency),
            )
            for order in orders
        ]
        try:
            # The unique index is the arbiter between concurrent requests naming the same payment_order_id: the
            # second waits for the first to commit, then fails here. The savepoint lets us say which id it was.
            with transaction.atomic():
                PaymentOrder.objects.bulk_create(rows)
        except IntegrityError as exc:
            raise _order_id_taken(exc, client=client, orders=orders) from exc
    event._prefetched_objects_cache = {"orders": rows}  # type: ignore[attr-defined]
    return event


def _order_id_taken(exc: IntegrityError, *, client: ApiClient, orders: Sequence[NewOrder]) -> Exception:
    constraint = getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None)
    if constraint != _ORDER_ID_UNIQUE:
        return exc
    requested = {order.payment_order_id: index for index, order in enumerate(orders)}
    taken = (
        PaymentOrder.objects.filter(payment_order_id__in=requested)
        .select_related("event")
        .order_by("payment_order_id")
        .first()
    )
    if taken is None:  # the other transaction rolled back after all; the client may simply retry
        return exc
    return PaymentOrderIdTaken(
        payment_order_id=taken.payment_order_id,
        index=requested[taken.payment_order_id],
        payment_id=taken.event.payment_id if taken.event.client_id == client.pk else None,
    )
