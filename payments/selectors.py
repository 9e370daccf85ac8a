from __future__ import annotations

from django.db.models import Prefetch

from api.models import ApiClient
from payments.errors import PaymentNotFound, PaymentOrderNotFound, PayoutNotFound, RefundNotFound
from payments.models import CAPTURED_STATUSES, PaymentEvent, PaymentOrder, Payout, Refund


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


def refund_get(*, client: ApiClient, refund_id: str) -> Refund:
    refund = Refund.objects.filter(refund_id=refund_id, order__event__client=client).select_related("order").first()
    if refund is None:
        raise RefundNotFound()
    return refund


def payout_get(*, client: ApiClient, payout_id: str) -> Payout:
    """A payout of a seller the client has paid: sellers are shared between the clients that paid them."""
    payout = Payout.objects.filter(payout_id=payout_id).first()
    if payout is None or not seller_paid_by(client=client, seller_account=payout.seller_id):
        raise PayoutNotFound()
    return payout
