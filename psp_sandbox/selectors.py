"""Reads of the sandbox PSP: the objects its GET endpoints return, and the counts the chaos test checks."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from django.db.models import Count, Model, Q, QuerySet

from psp_sandbox.errors import InvalidRequest, ResourceMissing
from psp_sandbox.events import with_pending_webhooks
from psp_sandbox.inputs import ListInput
from psp_sandbox.models import (
    BalanceTransaction,
    Charge,
    CheckoutSession,
    Dispute,
    Event,
    PaymentIntent,
    Refund,
    Transfer,
    TransferReversal,
)
from psp_sandbox.search import query_filter

M = TypeVar("M", bound=Model)


def payment_intent_get(intent_id: str) -> PaymentIntent:
    intent = PaymentIntent.objects.filter(pk=intent_id).first()
    if intent is None:
        raise ResourceMissing("payment_intent", intent_id, param="intent")
    return intent


def latest_charge(intent: PaymentIntent) -> Charge | None:
    return intent.charges.select_related("balance_transaction").order_by("-created", "-id").first()


def payment_intent_search(*, query: str, limit: int, page: str | None) -> tuple[list[PaymentIntent], str | None]:
    """Newest first, ``limit`` at a time; ``page`` is the opaque cursor of the previous answer's ``next_page``."""
    offset = 0
    if page is not None:
        if not page.startswith("page_") or not page[5:].isdigit():
            raise InvalidRequest(f"Invalid page: {page}", param="page")
        offset = int(page[5:])
    rows = list(
        PaymentIntent.objects.filter(query_filter(query)).order_by("-created", "-id")[offset : offset + limit + 1]
    )
    next_page = f"page_{offset + limit}" if len(rows) > limit else None
    return rows[:limit], next_page


def charge_counts_by_order(payment_order_ids: Iterable[str] | None = None) -> dict[str, int]:
    """How many money-moving charges (pending or succeeded) each ``metadata[payment_order_id]`` has: the chaos test's
    "PSP charges per order ≤ 1". Failed attempts are not charges of the buyer's money and are not counted."""
    charges = Charge.objects.filter(status__in=Charge.MONEY_MOVING).exclude(payment_order_id="")
    if payment_order_ids is not None:
        charges = charges.filter(payment_order_id__in=list(payment_order_ids))
    rows = charges.values("payment_order_id").annotate(n=Count("id")).values_list("payment_order_id", "n")
    return dict(rows)


def page(queryset: QuerySet[M], data: ListInput, *, kind: str) -> tuple[list[M], bool]:
    """One page of a Stripe list: newest first (``created``, then ``id``), ``limit`` at a time, after or before the
    cursor object; ``has_more`` says whether the list goes on in the direction read."""
    rows = queryset.filter(**{f"created__{op}": moment for op, moment in data.created.items()})
    cursor = data.starting_after or data.ending_before
    if cursor is None:
        found = list(rows.order_by("-created", "-id")[: data.limit + 1])
        return found[: data.limit], len(found) > data.limit
    anchor = queryset.model._default_manager.filter(pk=cursor).values_list("created", flat=True).first()
    if anchor is None:
        param = "starting_after" if data.starting_after else "ending_before"
        raise ResourceMissing(kind, cursor, param=param, status=400)
    if data.starting_after:
        older = rows.filter(Q(created__lt=anchor) | Q(created=anchor, id__lt=cursor))
        found = list(older.order_by("-created", "-id")[: data.limit + 1])
        return found[: data.limit], len(found) > data.limit
    newer = rows.filter(Q(created__gt=anchor) | Q(created=anchor, id__gt=cursor))
    found = list(newer.order_by("created", "id")[: data.limit + 1])
    return list(reversed(found[: data.limit])), len(found) > data.limit


def event_get(event_id: str) -> Event:
    event = with_pending_webhooks(Event.objects.filter(pk=event_id)).first()
    if event is None:
        raise ResourceMissing("event", event_id)
    return event


def events_list(data: ListInput, *, types: list[str]) -> tuple[list[Event], bool]:
    events = with_pending_webhooks(Event.objects.all())
    if types:
        events = events.filter(type__in=types)
    return page(events, data, kind="event")


def checkout_session_get(session_id: str) -> CheckoutSession:
    session = CheckoutSession.objects.select_related("payment_intent").filter(pk=session_id).first()
    if session is None:
        raise ResourceMissing("checkout.session", session_id, param="session")
    return session


def checkout_sessions_list(data: ListInput) -> tuple[list[CheckoutSession], bool]:
    sessions = CheckoutSession.objects.select_related("payment_intent")
    if "payment_intent" in data.filters:
        sessions = sessions.filter(payment_intent_id=data.filters["payment_intent"])
    if "status" in data.filters:
        sessions = sessions.filter(status=data.filters["status"])
    return page(sessions, data, kind="checkout.session")


def refund_get(refund_id: str) -> Refund:
    refund = Refund.objects.filter(pk=refund_id).first()
    if refund is None:
        raise ResourceMissing("refund", refund_id)
    return refund


def refunds_list(data: ListInput) -> tuple[list[Refund], bool]:
    refunds = Refund.objects.all()
    if "payment_intent" in data.filters:
        refunds = refunds.filter(payment_intent_id=data.filters["payment_intent"])
    if "charge" in data.filters:
        refunds = refunds.filter(charge_id=data.filters["charge"])
    return page(refunds, data, kind="refund")


def transfer_get(transfer_id: str) -> Transfer:
    transfer = Transfer.objects.filter(pk=transfer_id).first()
    if transfer is None:
        raise ResourceMissing("transfer", transfer_id)
    return transfer


def transfers_list(data: ListInput) -> tuple[list[Transfer], bool]:
    transfers = Transfer.objects.all()
    for name in ("destination", "transfer_group"):
        if name in data.filters:
            transfers = transfers.filter(**{name: data.filters[name]})
    return page(transfers, data, kind="transfer")


def transfer_reversals_list(transfer_id: str, data: ListInput) -> tuple[list[TransferReversal], bool]:
    return page(transfer_get(transfer_id).reversals.all(), data, kind="transfer_reversal")


def dispute_get(dispute_id: str) -> Dispute:
    dispute = Dispute.objects.select_related("withdrawal", "reinstatement", "charge").filter(pk=dispute_id).first()
    if dispute is None:
        raise ResourceMissing("dispute", dispute_id)
    return dispute


def disputes_list(data: ListInput) -> tuple[list[Dispute], bool]:
    disputes = Dispute.objects.select_related("withdrawal", "reinstatement", "charge")
    if "charge" in data.filters:
        disputes = disputes.filter(charge_id=data.filters["charge"])
    return page(disputes, data, kind="dispute")


def balance_transaction_get(txn_id: str) -> BalanceTransaction:
    txn = BalanceTransaction.objects.filter(pk=txn_id).first()
    if txn is None:
        raise ResourceMissing("balance transaction", txn_id)
    return txn


def balance_transactions_list(data: ListInput) -> tuple[list[BalanceTransaction], bool]:
    txns = BalanceTransaction.objects.all()
    for name in ("type", "source", "currency"):
        if name in data.filters:
            txns = txns.filter(**{name: data.filters[name]})
    return page(txns, data, kind="balance transaction")
