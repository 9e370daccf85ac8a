"""Row locks on payment orders, always taken in primary-key order so that two callers never deadlock."""

from __future__ import annotations

from django.db import transaction

from payments.models import PaymentOrder


def order_lock(*, payment_order_id: str) -> PaymentOrder:
    """Lock one order for the rest of the transaction; a concurrent transition waits instead of racing."""
    # of=("self",): the order's row only. Locking its payment too would queue every order of a multi-seller payment
    # behind each other.
    order = (
        PaymentOrder.objects.select_for_update(of=("self",))
        .select_related("event")
        .get(payment_order_id=payment_order_id)
    )
    order.row_locked = True
    # The lock ends with the transaction; a save of this instance after it must take the careful path again.
    transaction.on_commit(lambda: setattr(order, "row_locked", False))
    return order


def orders_lock(*, payment_order_ids: list[str]) -> list[PaymentOrder]:
    """Lock many orders for the rest of the transaction, in primary-key order (two batches naming the same orders
    cannot deadlock, nor a batch and a single order); those that exist, in that order."""
    orders = list(
        PaymentOrder.objects.select_for_update(of=("self",))
        .select_related("event")
        .filter(payment_order_id__in=payment_order_ids)
        .order_by("pk")
    )
    for order in orders:
        order.row_locked = True
        transaction.on_commit(lambda order=order: setattr(order, "row_locked", False))  # type: ignore[misc]
    return orders
