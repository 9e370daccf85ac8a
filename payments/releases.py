"""Releasing a seller's funds for one order: pending → available, once (DESIGN.md "Pay-out": "Seller funds are
pending until released (delivery confirmed, or a hold period passed), then available")."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import cast

from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone
from djmoney.money import Money

from api.models import ApiClient
from ledger.money import to_minor
from payments.errors import OrderNotCaptured, PaymentOrderNotFound
from payments.locks import order_lock
from payments.models import CAPTURED_STATUSES, DisputeAllocation, DisputeStatus, PaymentOrder, RefundStatus
from wallets.fees import platform_fee
from wallets.services import funds_release

logger = logging.getLogger(__name__)

RELEASE_SCHEDULE_ACTOR = "hold-period"


def order_gross(order: PaymentOrder) -> int:
    money = cast(Money, order.amount)
    return to_minor(money.amount, money.currency.code)


def order_currency(order: PaymentOrder) -> str:
    return cast(Money, order.amount).currency.code


def order_fee(order: PaymentOrder) -> int:
    """The platform's fee taken at capture (orders captured before it was recorded: today's fee rule)."""
    if order.platform_fee is not None:
        return order.platform_fee
    return platform_fee(order_gross(order), order_currency(order))


def order_seller_pending(order: PaymentOrder) -> int:
    """What of an unreleased order's seller share is still pending: the share, less what standing refunds and
    disputes not won took from pending (a failed refund or a won dispute gave it back there)."""
    refunded = order.refunds.exclude(status=RefundStatus.FAILED).aggregate(s=Sum("seller_from_pending"))["s"] or 0
    held = (
        DisputeAllocation.objects.filter(order=order)
        .exclude(dispute__status=DisputeStatus.WON)
        .aggregate(s=Sum("seller_from_pending"))["s"]
        or 0
    )
    return order_gross(order) - order_fee(order) - refunded - held


def order_funds_release(*, payment_order_id: str, actor: str, client: ApiClient | None = None) -> PaymentOrder:
    """Make the order's seller funds available. Idempotent: a released order is returned as it is.

    Under the order's row lock, like every refund and dispute of the order, so the pending amount it computes
    cannot change under it. ``client``: only that client's order (the API); None for the schedule and the console.
    """
    with transaction.atomic():
        try:
            order = order_lock(payment_order_id=payment_order_id)
        except PaymentOrder.DoesNotExist:
            raise PaymentOrderNotFound() from None
        if client is not None and order.event.client_id != client.pk:
            raise PaymentOrderNotFound()
        if order.status not in CAPTURED_STATUSES:
            raise OrderNotCaptured(f"Order {payment_order_id} is {order.status}; only a captured order has funds.")
        if order.released_at is not None:
            return order
        amount = order_seller_pending(order)
        if amount > 0:
            funds_release(
                seller_account=order.seller_id,
                currency=order_currency(order),
                amount=amount,
                reference=payment_order_id,
                actor=actor,
            )
        order.released_at = timezone.now()
        order.save(update_fields=["released_at", "updated_at"])
    return order


def funds_release_due(*, limit: int = 1000) -> int:
    """Release the orders whose hold period is over, oldest first, each in its own transaction. Returns how many."""
    cutoff = timezone.now() - timedelta(days=settings.FUNDS_HOLD_DAYS)
    due = PaymentOrder.objects.filter(
        released_at__isnull=True, captured_at__isnull=False, captured_at__lte=cutoff, status__in=CAPTURED_STATUSES
    ).order_by("captured_at")
    released = 0
    for payment_order_id in due.values_list("payment_order_id", flat=True)[:limit]:
        try:
            order_funds_release(payment_order_id=payment_order_id, actor=RELEASE_SCHEDULE_ACTOR)
        except Exception:
            # One order a person must look at (its wallet disagrees with it) must not hold back every other seller.
            logger.exception("could not release an order's funds", extra={"payment_order_id": payment_order_id})
            continue
        released += 1
    if released:
        logger.info("released the funds of %d orders past their hold period", released)
    return released
