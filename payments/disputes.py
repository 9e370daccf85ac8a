"""Disputes (chargebacks) as the PSP reports them: ``charge.dispute.created`` withdraws the money and holds the
sellers' parts, ``closed`` won gives it all back, lost makes it final (DESIGN.md "Refund and dispute reverse with new
entries").

A charge paid on the hosted page pays several orders, so a dispute is split over its charge's orders in their
position order, each up to what is left of it (not refunded, not already lost). Each order's split follows the
refund rule (PLATFORM_FEE_ON_REFUND): the seller's part is held from pending (an order not yet released) or
available; the platform's fee part is only lost if the dispute is. The PSP's dispute fee is the platform's expense.
Events may come twice and in any order: ``closed`` before ``created`` opens and closes it in one go.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from payments.locks import order_lock
from payments.models import CAPTURED_STATUSES, Dispute, DisputeAllocation, DisputeStatus, PaymentOrder
from payments.psp.gateway import DisputeNotice
from payments.psp.gateway import DisputeStatus as PspDisputeStatus
from payments.refunds import return_split, returned_so_far, seller_part_back
from payments.releases import order_gross
from wallets.returns import (
    SellerPart,
    dispute_hold_post,
    dispute_lost_post,
    dispute_withdrawn_post,
    dispute_won_post,
)

logger = logging.getLogger(__name__)


def dispute_apply(*, notice: DisputeNotice, actor: str) -> str:
    """Record and book what the PSP says of a dispute. Idempotent; returns what it did, for the webhook inbox."""
    order_ids = list(
        PaymentOrder.objects.filter(psp_reference=notice.payment_intent, status__in=CAPTURED_STATUSES)
        .order_by("pk")
        .values_list("payment_order_id", flat=True)
    )
    with transaction.atomic():
        # The orders first, in primary-key order, as every refund and release locks them.
        orders = [order_lock(payment_order_id=order_id) for order_id in order_ids]
        dispute = Dispute.objects.select_for_update().filter(psp_dispute_id=notice.dispute_id).first()
        done = []
        if dispute is None:
            dispute = _open(notice, sorted(orders, key=lambda order: order.position), actor)
            done.append(f"opened over {dispute.allocations.count()} orders")
        if dispute.status == DisputeStatus.OPEN and notice.status is not PspDisputeStatus.OPEN:
            _close(dispute, won=notice.status is PspDisputeStatus.WON, actor=actor)
            done.append(dispute.status.lower())
    return f"dispute {notice.dispute_id}: " + (", ".join(done) if done else f"unchanged ({dispute.status})")


def _open(notice: DisputeNotice, orders: list[PaymentOrder], actor: str) -> Dispute:
    dispute = Dispute.objects.create(
        psp_dispute_id=notice.dispute_id,
        payment_intent=notice.payment_intent,
        amount=notice.amount,
        currency=notice.currency,
        fee=notice.fee,
        reason=notice.reason,
    )
    dispute_withdrawn_post(
        dispute_id=notice.dispute_id, currency=notice.currency, amount=notice.amount, fee=notice.fee, actor=actor
    )
    left = notice.amount
    for order in orders:
        if left == 0:
            break
        gross = order_gross(order)
        returned = returned_so_far(order, include_open_disputes=True)
        amount = min(left, gross - returned.amount)
        if amount <= 0:
            continue
        left -= amount
        split = return_split(order, amount=amount, returned=returned)
        allocation = DisputeAllocation.objects.create(
            dispute=dispute,
            order=order,
            amount=amount,
            seller_from_pending=split.from_pending,
            seller_from_available=split.from_available,
            platform_fee_part=split.fee_part,
        )
        dispute_hold_post(
            reference=f"{notice.dispute_id}:{order.payment_order_id}",
            currency=notice.currency,
            seller=SellerPart(order.seller_id, allocation.seller_from_pending, allocation.seller_from_available),
            actor=actor,
        )
    if left:
        logger.error(
            "dispute %s: %d minor units fall on no order of ours; they go to suspense if it is lost",
            notice.dispute_id,
            left,
            extra={"dispute": notice.dispute_id, "payment_intent": notice.payment_intent},
        )
    return dispute


def _close(dispute: Dispute, *, won: bool, actor: str) -> None:
    allocations = list(dispute.allocations.select_related("order").order_by("pk"))
    if won:
        dispute_won_post(
            dispute_id=dispute.psp_dispute_id,
            currency=dispute.currency,
            amount=dispute.amount,
            fee=dispute.fee,
            releases=[
                (
                    f"{dispute.psp_dispute_id}:{a.order.payment_order_id}",
                    seller_part_back(a.order, from_pending=a.seller_from_pending, total=a.seller_part),
                )
                for a in allocations
            ],
            actor=actor,
        )
    else:
        dispute_lost_post(
            dispute_id=dispute.psp_dispute_id,
            currency=dispute.currency,
            amount=dispute.amount,
            fee=dispute.fee,
            held=[(a.order.seller_id, a.seller_part) for a in allocations],
            fee_part=sum(a.platform_fee_part for a in allocations),
            actor=actor,
        )
    dispute.status = DisputeStatus.WON if won else DisputeStatus.LOST
    dispute.closed_at = timezone.now()
    dispute.save(update_fields=["status", "closed_at"])
