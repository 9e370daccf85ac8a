"""Refunds (DESIGN.md "Refund"): booked when created, sent to the PSP by a task, settled by its answer, its webhooks
or a lookup, booked back if the PSP refuses or fails it.

Booking at creation is what keeps the seller's funds honest: money promised back to a buyer can no longer be paid
out, whatever the PSP takes to answer. The refund id is the PSP's idempotency key, so sending again never refunds
twice. Every step locks the order first, then the refund: one lock order, and the order's refundable amount cannot
change while it is computed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.db.models import Sum
from django_fsm import can_proceed

from api.models import ApiClient
from ledger.money import to_minor
from payments.errors import OrderDisputed, OrderNotCaptured, PaymentOrderNotFound, RefundExceedsCaptured
from payments.locks import order_lock
from payments.models import (
    CAPTURED_STATUSES,
    DisputeAllocation,
    DisputeStatus,
    OrderStatus,
    PaymentOrder,
    Refund,
    RefundStatus,
)
from payments.psp import payment_gateway
from payments.psp.gateway import RefundResult, UnknownPspOutcome
from payments.psp.gateway import RefundStatus as PspRefundStatus
from payments.releases import order_currency, order_fee, order_gross, order_seller_pending
from payments.services import tasks_enqueue
from wallets.fees import fee_part_returned
from wallets.returns import SellerPart, refund_failed_post, refund_post

logger = logging.getLogger(__name__)

REFUND_EXECUTOR = "refund-executor"


@dataclass(frozen=True)
class _Returned:
    amount: int
    fee_part: int


def returned_so_far(order: PaymentOrder, *, include_open_disputes: bool = False) -> _Returned:
    """What of the order's charge went back already, and the fee's part of it: refunds that stand, lost disputes
    (and open ones, when asked: what a new dispute can no longer take)."""
    refunds = order.refunds.exclude(status=RefundStatus.FAILED).aggregate(a=Sum("amount"), f=Sum("platform_fee_part"))
    disputes = DisputeAllocation.objects.filter(order=order)
    disputes = (
        disputes.exclude(dispute__status=DisputeStatus.WON)
        if include_open_disputes
        else disputes.filter(dispute__status=DisputeStatus.LOST)
    )
    lost = disputes.aggregate(a=Sum("amount"), f=Sum("platform_fee_part"))
    return _Returned((refunds["a"] or 0) + (lost["a"] or 0), (refunds["f"] or 0) + (lost["f"] or 0))


@dataclass(frozen=True)
class ReturnSplit:
    """Where ``amount`` going back to a buyer comes from: the platform's fee part, and the seller's part from
    their pending funds (while the order is not released) and their available funds (the rest)."""

    fee_part: int
    from_pending: int
    from_available: int


def return_split(order: PaymentOrder, *, amount: int, returned: _Returned) -> ReturnSplit:
    """The one rule for refunds and disputes alike; ``returned`` is what went back before (returned_so_far)."""
    fee_part = fee_part_returned(
        gross=order_gross(order),
        fee=order_fee(order),
        returned_before=returned.amount,
        fee_returned_before=returned.fee_part,
        amount=amount,
    )
    seller_total = amount - fee_part
    from_pending = 0 if order.released_at else min(seller_total, max(0, order_seller_pending(order)))
    return ReturnSplit(fee_part, from_pending, seller_total - from_pending)


def seller_part_back(order: PaymentOrder, *, from_pending: int, total: int) -> SellerPart:
    """A seller's part given back (a failed refund, a won dispute) goes where the funds belong now: to pending only
    while the order is still not released, to available otherwise."""
    pending = 0 if order.released_at else from_pending
    return SellerPart(order.seller_id, pending, total - pending)


def refund_create(
    *, client: ApiClient | None, payment_order_id: str, amount: Decimal | None, reason: str, actor: str
) -> Refund:
    """Refund ``amount`` (major units; None: all that is left) of a captured order, booked at once and sent to the
    PSP after commit. Raises RefundExceedsCaptured (an over-refund changes nothing), OrderNotCaptured, OrderDisputed.
    """
    with transaction.atomic():
        try:
            order = order_lock(payment_order_id=payment_order_id)
        except PaymentOrder.DoesNotExist:
            raise PaymentOrderNotFound() from None
        if client is not None and order.event.client_id != client.pk:
            raise PaymentOrderNotFound()
        if order.status not in CAPTURED_STATUSES:
            raise OrderNotCaptured(f"Order {payment_order_id} is {order.status}; only a captured order is refunded.")
        if DisputeAllocation.objects.filter(order=order).exclude(dispute__status=DisputeStatus.WON).exists():
            raise OrderDisputed()
        currency, gross = order_currency(order), order_gross(order)
        returned = returned_so_far(order)
        refundable = gross - returned.amount
        wanted = refundable if amount is None else to_minor(amount, currency)
        if wanted <= 0 or wanted > refundable:
            raise RefundExceedsCaptured(
                f"At most {refundable} minor units of {currency} are left to refund on order {payment_order_id}.",
                field="amount",
            )
        split = return_split(order, amount=wanted, returned=returned)
        refund = Refund.objects.create(
            order=order,
            amount=wanted,
            currency=currency,
            reason=reason,
            seller_from_pending=split.from_pending,
            seller_from_available=split.from_available,
            platform_fee_part=split.fee_part,
            actor=actor,
        )
        refund_post(
            refund_id=refund.refund_id,
            currency=currency,
            amount=wanted,
            seller=SellerPart(order.seller_id, split.from_pending, split.from_available),
            fee_part=split.fee_part,
            actor=actor,
        )
        if wanted == refundable:
            order.refund_fully(actor=actor, reason=f"refund {refund.refund_id}")
        else:
            order.refund_partially(actor=actor, reason=f"refund {refund.refund_id}")
        order.save()
        refunds_enqueue([refund.refund_id])
    return refund


def refund_execute(*, refund_id: str) -> Refund:
    """Send the refund to the PSP once; safe to call any number of times, concurrently or after a crash.
    Raises TransientPspError and UnknownPspOutcome for the task to retry (the refund is then EXECUTING or UNKNOWN)."""
    with transaction.atomic():
        refund = Refund.objects.select_for_update().select_related("order").get(refund_id=refund_id)
        sent_before = refund.status in (RefundStatus.EXECUTING, RefundStatus.UNKNOWN)
        if refund.status == RefundStatus.NOT_STARTED:
            refund.start_execution()
        elif not sent_before:
            return refund
        refund.attempts += 1
        refund.save()
    gateway = payment_gateway()
    if sent_before:
        found = gateway.refund_lookup(refund_id=refund_id, payment_intent=refund.order.psp_reference)
        if found is not None:
            return refund_apply_result(refund_id=refund_id, result=found, actor=REFUND_EXECUTOR)
    try:
        result = gateway.refund(
            refund_id=refund_id,
            payment_intent=refund.order.psp_reference,
            amount=refund.amount,
            currency=refund.currency,
            payment_order_id=refund.order.payment_order_id,
        )
    except UnknownPspOutcome:
        with transaction.atomic():
            locked = Refund.objects.select_for_update().get(refund_id=refund_id)
            if locked.status == RefundStatus.EXECUTING:
                locked.mark_unknown()
                locked.save()
        raise
    return refund_apply_result(refund_id=refund_id, result=result, actor=REFUND_EXECUTOR)


def refund_apply_result(*, refund_id: str, result: RefundResult, actor: str) -> Refund:
    """Move the refund to what the PSP says, if its state machine still allows it; otherwise change nothing. The
    executor, webhooks and lookups all come through here, in any order and any number of times."""
    payment_order_id = Refund.objects.values_list("order__payment_order_id", flat=True).get(refund_id=refund_id)
    with transaction.atomic():
        order = order_lock(payment_order_id=payment_order_id)
        refund = Refund.objects.select_for_update().get(refund_id=refund_id)
        refund.psp_reference = result.psp_reference or refund.psp_reference
        if result.status is PspRefundStatus.SUCCEEDED and can_proceed(refund.mark_succeeded):
            refund.mark_succeeded()
        elif result.status is PspRefundStatus.PENDING and can_proceed(refund.mark_pending):
            refund.mark_pending()
        elif result.status is PspRefundStatus.FAILED and can_proceed(refund.mark_failed):
            refund.mark_failed(failure_code=result.failure_code or "refund_failed", reason=result.failure_message)
            _book_back(order, refund, actor)
        else:
            return refund
        refund.save()
    return refund


def _book_back(order: PaymentOrder, refund: Refund, actor: str) -> None:
    """A failed refund: its money stays with us. The seller's part goes back where it belongs now (available, if
    the order was released since), the fee part to the platform, and the order's status back to what still stands."""
    refund_failed_post(
        refund_id=refund.refund_id,
        currency=refund.currency,
        amount=refund.amount,
        seller=seller_part_back(order, from_pending=refund.seller_from_pending, total=refund.seller_part),
        fee_part=refund.platform_fee_part,
        actor=actor,
    )
    still_refunded = order.refunds.exclude(status=RefundStatus.FAILED).exclude(pk=refund.pk).exists()
    reason = f"refund {refund.refund_id} failed: {refund.failure_code}"
    if not still_refunded:
        order.refund_revert_to_success(actor=actor, reason=reason)
    elif order.status == OrderStatus.REFUNDED:
        order.refund_revert_to_partial(actor=actor, reason=reason)
    else:
        return
    order.save()
    logger.warning("refund failed and was booked back", extra={"refund_id": refund.refund_id})


def refunds_enqueue(refund_ids: list[str]) -> None:
    tasks_enqueue("payments.refund_execute", refund_ids)
