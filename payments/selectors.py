from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Count, Min, Prefetch, QuerySet

from api.models import ApiClient
from payments.errors import PaymentNotFound, PaymentOrderNotFound, PayoutNotFound, RefundNotFound
from payments.models import (
    CAPTURED_STATUSES,
    FINAL_STATUSES,
    IN_FLIGHT_STATUSES,
    DeadLetter,
    OrderStatus,
    PaymentEvent,
    PaymentOrder,
    Payout,
    Refund,
    WebhookEvent,
)


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


# --- What operations watch (ops/scrape.py turns these into gauges at every scrape) ----------------------------------
# Each is one indexed query: a scrape may come every few seconds, from several Prometheus servers.


def orders_overdue(*, now: datetime) -> QuerySet[PaymentOrder]:
    """Orders not final ORDER_IN_FLIGHT_ALERT_SECONDS after their creation: the recovery sweep's alert and the
    overdue gauge, one definition for both. In-flight statuses by name, so the status index serves it."""
    return PaymentOrder.objects.filter(
        status__in=IN_FLIGHT_STATUSES,
        created_at__lt=now - timedelta(seconds=settings.ORDER_IN_FLIGHT_ALERT_SECONDS),
    )


StatusCounts = dict[tuple[str, str], int]  # (status, currency) → how many


def _by_status(queryset: QuerySet[PaymentOrder] | QuerySet[Refund] | QuerySet[Payout], currency: str) -> StatusCounts:
    rows = queryset.values_list("status", currency).annotate(n=Count("pk")).order_by()
    return {(status, code): n for status, code, n in rows}


def order_counts(*, since: datetime) -> StatusCounts:
    """Orders created since ``since``, by their status now and currency (the created_at index)."""
    return _by_status(PaymentOrder.objects.filter(created_at__gte=since), "amount_currency")


def refund_counts(*, since: datetime) -> StatusCounts:
    return _by_status(Refund.objects.filter(created_at__gte=since), "currency")


def payout_counts(*, since: datetime) -> StatusCounts:
    return _by_status(Payout.objects.filter(created_at__gte=since), "currency")


# A payment's status is derived from its orders (PaymentEvent.status_of); here from the three facts it needs, one row
# per payment, summed per fact and currency. A payment's orders may be in several currencies: it counts as "mixed".
_PAYMENT_FACTS = """
SELECT all_final, all_captured, all_failed, currency, count(*)
FROM (
    SELECT bool_and(status = ANY(%(final)s)) AS all_final,
           bool_and(status = ANY(%(captured)s)) AS all_captured,
           bool_and(status = %(failed)s) AS all_failed,
           CASE WHEN min(amount_currency) = max(amount_currency) THEN min(amount_currency) ELSE 'mixed' END AS currency
    FROM payments_paymentorder
    WHERE created_at >= %(since)s
    GROUP BY event_id
) AS payments
GROUP BY 1, 2, 3, 4
"""


def payment_counts(*, since: datetime) -> StatusCounts:
    """Payments created since ``since`` (their orders are created with them), by status now and currency."""
    with connection.cursor() as cursor:
        cursor.execute(
            _PAYMENT_FACTS,
            {
                "final": sorted(FINAL_STATUSES),
                "captured": sorted(CAPTURED_STATUSES),
                "failed": OrderStatus.FAILED.value,
                "since": since,
            },
        )
        rows = cursor.fetchall()
    counts: StatusCounts = {}
    for all_final, all_captured, all_failed, currency, n in rows:
        status = PaymentEvent.status_of(all_final=all_final, all_captured=all_captured, all_failed=all_failed)
        counts[(status.value, currency)] = counts.get((status.value, currency), 0) + n
    return counts


def dead_letters_open() -> dict[str, int]:
    """Open dead letters by task (the partial unique index on open letters)."""
    rows = DeadLetter.objects.filter(resolved_at__isnull=True).values_list("task").annotate(n=Count("pk")).order_by()
    return dict(rows)


@dataclass(frozen=True)
class WebhookBacklog:
    waiting: int  # received, not processed, still to be tried (dead-lettered ones are the dead letters' count)
    oldest_received_at: datetime | None


def webhook_backlog() -> WebhookBacklog:
    """The inbox's waiting events (the partial index on unprocessed events): how many, and since when."""
    found = WebhookEvent.objects.filter(
        processed_at__isnull=True, attempts__lt=settings.WEBHOOK_MAX_ATTEMPTS
    ).aggregate(waiting=Count("pk"), oldest=Min("received_at"))
    return WebhookBacklog(waiting=found["waiting"], oldest_received_at=found["oldest"])
