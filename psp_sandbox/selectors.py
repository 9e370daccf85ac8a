"""Reads of the sandbox PSP: the objects its GET endpoints return, and the counts the chaos test checks."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Count

from psp_sandbox.errors import InvalidRequest, ResourceMissing
from psp_sandbox.models import Charge, PaymentIntent
from psp_sandbox.search import query_filter


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
