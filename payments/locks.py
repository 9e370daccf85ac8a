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
