"""Reads across apps for the finance console. Each page's rows come in a handful of queries, whatever the payment's
size: everything is fetched by the payment's ids in bulk, never row by row."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Q, QuerySet

from audit.models import AuditEntry
from ledger.models import Entry, JournalTransaction
from payments.models import (
    DisputeAllocation,
    OrderTransition,
    PaymentEvent,
    PaymentOrder,
    Payout,
    Refund,
    WebhookEvent,
)
from payments.releases import order_currency
from reconciliation.models import Mismatch, SettledItem


@dataclass
class OrderStory:
    order: PaymentOrder
    transitions: list[OrderTransition] = field(default_factory=list)
    refunds: list[Refund] = field(default_factory=list)
    disputes: list[DisputeAllocation] = field(default_factory=list)
    payouts: list[Payout] = field(default_factory=list)  # the seller's payouts since the order's funds were released


@dataclass
class PaymentStory:
    event: PaymentEvent
    orders: list[OrderStory]
    webhooks: list[WebhookEvent]
    journals: list[tuple[JournalTransaction, list[Entry]]]
    settled: list[SettledItem]
    mismatches: list[Mismatch]
    audit: list[AuditEntry]


def payment_story(*, payment_pk: int) -> PaymentStory:
    event = PaymentEvent.objects.select_related("client").get(pk=payment_pk)
    orders = list(PaymentOrder.objects.filter(event=event).order_by("position"))
    order_ids = [o.pk for o in orders]
    stories = {o.pk: OrderStory(o) for o in orders}
    for transition in OrderTransition.objects.filter(order_id__in=order_ids).order_by("pk"):
        stories[transition.order_id].transitions.append(transition)
    refunds = list(Refund.objects.filter(order_id__in=order_ids).order_by("pk"))
    for refund in refunds:
        stories[refund.order_id].refunds.append(refund)
    allocations = list(
        DisputeAllocation.objects.filter(order_id__in=order_ids).select_related("dispute").order_by("pk")
    )
    for allocation in allocations:
        stories[allocation.order_id].disputes.append(allocation)
    _payouts(orders, stories)
    psp_ids = {o.psp_reference for o in orders if o.psp_reference} | {o.psp_token for o in orders if o.psp_token}
    psp_ids |= {r.psp_reference for r in refunds if r.psp_reference}
    psp_ids |= {a.dispute.psp_dispute_id for a in allocations}
    order_keys = [o.payment_order_id for o in orders]
    references = order_keys + [r.refund_id for r in refunds] + [a.dispute.psp_dispute_id for a in allocations]
    references += [f"{a.dispute.psp_dispute_id}:{a.order.payment_order_id}" for a in allocations]
    references += [f"{o.seller_id}:{order_currency(o)}:{o.payment_order_id}" for o in orders]  # releases
    journals = list(JournalTransaction.objects.filter(reference__in=references).order_by("pk"))
    entries: dict[int, list[Entry]] = {}
    for entry in Entry.objects.filter(journal__in=journals).select_related("account").order_by("pk"):
        entries.setdefault(entry.journal_id, []).append(entry)
    keys = [k for k in psp_ids | {r.refund_id for r in refunds} if k]
    return PaymentStory(
        event=event,
        orders=[stories[o.pk] for o in orders],
        webhooks=list(WebhookEvent.objects.filter(object_id__in=psp_ids).order_by("pk")) if psp_ids else [],
        journals=[(journal, entries.get(journal.pk, [])) for journal in journals],
        settled=list(SettledItem.objects.filter(key__in=keys).order_by("pk")),
        mismatches=list(Mismatch.objects.filter(reference__in=keys).order_by("pk")),
        audit=list(
            AuditEntry.objects.filter(
                Q(object_type="payment_order", object_id__in=order_keys)
                | Q(object_type="payment", object_id=event.payment_id)
            ).order_by("pk")
        ),
    )


def _payouts(orders: list[PaymentOrder], stories: dict[int, OrderStory]) -> None:
    """A payout pays the whole available balance, so the first payout of the seller's wallet after an order's
    release is the one that paid the order's funds (unless a debt took them first)."""
    released = [o for o in orders if o.released_at is not None]
    if not released:
        return
    wallets = {(o.seller_id, order_currency(o)) for o in released}
    condition = Q()
    for seller, currency in wallets:
        condition |= Q(seller_id=seller, currency=currency)
    since = min(o.released_at for o in released if o.released_at is not None)
    payouts = list(Payout.objects.filter(condition, created_at__gte=since).order_by("created_at"))
    for order in released:
        first = next(
            (
                p
                for p in payouts
                if (p.seller_id, p.currency) == (order.seller_id, order_currency(order))
                and order.released_at is not None
                and p.created_at >= order.released_at
            ),
            None,
        )
        if first is not None:
            stories[order.pk].payouts.append(first)


def payment_search(term: str) -> QuerySet[PaymentEvent]:
    """Payments found by any id finance staff may hold: ours (payment, checkout, order, refund, buyer, seller) or the
    PSP's (pi_, cs_, re_, dp_, txn_). Every branch is an exact match on an indexed column, and the branches are one
    UNION that PostgreSQL joins to the payments by primary key: an OR of IN (SELECT ...) conditions would instead be
    checked against every payment."""
    term = term.strip()
    if not term:
        return PaymentEvent.objects.none()
    settled_keys = list(SettledItem.objects.filter(balance_transaction_id=term).values_list("key", flat=True))
    settled_keys += list(
        Mismatch.objects.filter(natural_key=f"line:{term}").exclude(reference="").values_list("reference", flat=True)
    )
    orders = Q(payment_order_id=term) | Q(psp_reference=term) | Q(psp_token=term) | Q(seller_id=term)
    if settled_keys:
        orders |= Q(psp_reference__in=settled_keys)
    found = PaymentEvent.objects.filter(Q(payment_id=term) | Q(checkout_id=term) | Q(buyer_id=term)).values("pk")
    found = found.union(
        PaymentOrder.objects.filter(orders).values("event_id"),
        Refund.objects.filter(Q(refund_id=term) | Q(psp_reference=term)).values("order__event_id"),
        DisputeAllocation.objects.filter(dispute__psp_dispute_id=term).values("order__event_id"),
        all=True,
    )
    return PaymentEvent.objects.filter(pk__in=found)
