from __future__ import annotations

from django.db.models import Prefetch

from api.models import ApiClient
from payments.errors import PaymentNotFound, PaymentOrderNotFound
from payments.models import CAPTURED_STATUSES, PaymentEvent, PaymentOrder


def payment_get(*, client: ApiClient, payment_id: str) -> PaymentEvent:
    """The client's payment with its orders. Another client's payment does not exist, as far as this one knows."""
    event = (
        PaymentEvent.objects.filter(client=client, payment_id=payment_id)
        .prefetch_related(Prefetch("orders", queryset=PaymentOrder.objects.order_by("position")))
        .first()
    )
    if event is None:
        raise PaymentNotFound()
    return event


def payment_order_get(*, client: ApiClient, payment_order_id: str) -> PaymentOrder:
    order = (
        PaymentOrder.objects.filter(payment_order_id=payment_order_id, event__client=client)
        .select_related("event")
        .first()
    )
    if order is None:
        raise PaymentOrderNotFound()
    return order


def seller_paid_by(*, client: ApiClient, seller_account: str) -> bool:
    """Whether the client has paid this seller (a captured order): a client sees only the sellers it has paid.

    Naming a seller in a payment is not enough: anyone could, and then read a balance made of other clients' money.
    """
    return PaymentOrder.objects.filter(
        event__client=client, seller_id=seller_account, status__in=CAPTURED_STATUSES
    ).exists()
