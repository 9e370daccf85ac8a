"""What /metrics answers: the event metrics every process counted (ops/metrics.py, django-prometheus), and gauges of
the state of payments computed from the database now, at the scrape.

State comes from the database rather than from counters kept in memory: it is then right whichever process answers
(one that never ran the recovery sweep, a web process just started) and however many processes there are, and it
cannot drift from the truth the way an incremented and decremented gauge does when a process dies in between.
Every query is an indexed one (payments/selectors.py); together they run in one transaction under a statement
timeout, so a slow database makes a scrape fail fast instead of piling scrapes up. Gauges are the same from every
web instance: aggregate them across instances with max(), not sum().
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)


def exposition() -> bytes:
    return generate_latest(_Together([_event_metrics(), DatabaseGauges()]))


def _event_metrics() -> Collector:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Every process's counters and histograms, from the files they write, added up (dead processes' too, which
        # keeps each counter's total from going down when a worker is replaced).
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY  # one process (tests, a lone runserver): its own metrics are all there is


class _Together(Collector):
    def __init__(self, collectors: list[Collector]) -> None:
        self.collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for collector in self.collectors:
            yield from collector.collect()


class DatabaseGauges(Collector):
    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "marketpay_metrics_database_up",
            "1 when the database answered this scrape's queries; 0 when it did not, and the state gauges are missing.",
        )
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("SELECT set_config('statement_timeout', %s, true)", [str(_timeout_ms())])
                families = list(_state_families())
        except DatabaseError:
            logger.warning("metrics: the database did not answer the state queries", exc_info=True)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families


def _timeout_ms() -> int:
    return int(settings.METRICS_QUERY_TIMEOUT_MS)


def _state_families() -> Iterator[Metric]:
    from payments import selectors
    from payments.models import OrderStatus, PaymentEvent, PayoutStatus, RefundStatus
    from payments.retries import ORDER_EXECUTE_TASK, PAYOUT_EXECUTE_TASK, REFUND_EXECUTE_TASK, WEBHOOK_TASK

    now = timezone.now()
    since = now - timedelta(seconds=settings.METRICS_WINDOW_SECONDS)
    window = GaugeMetricFamily(
        "marketpay_metrics_window_seconds",
        "The stretch of time the by-status gauges count over (METRICS_WINDOW_SECONDS).",
    )
    window.add_metric([], settings.METRICS_WINDOW_SECONDS)
    yield window
    for name, what, statuses, counts in (
        ("marketpay_payments", "Payments", PaymentEvent.Status.values, selectors.payment_counts(since=since)),
        ("marketpay_payment_orders", "Payment orders", OrderStatus.values, selectors.order_counts(since=since)),
        ("marketpay_refunds", "Refunds", RefundStatus.values, selectors.refund_counts(since=since)),
        ("marketpay_payouts", "Payouts", PayoutStatus.values, selectors.payout_counts(since=since)),
    ):
        yield _by_status(name, f"{what} created in the metrics window, by status now and currency.", statuses, counts)

    overdue = GaugeMetricFamily(
        "marketpay_payment_orders_overdue",
        "Orders not final ORDER_IN_FLIGHT_ALERT_SECONDS after their creation, whatever their age: the recovery "
        "sweep's alert, counted at the scrape.",
    )
    overdue.add_metric([], selectors.orders_overdue(now=now).count())
    yield overdue

    letters = GaugeMetricFamily("marketpay_dead_letters_open", "Open dead letters, by task.", labels=["task"])
    open_letters = dict.fromkeys((ORDER_EXECUTE_TASK, REFUND_EXECUTE_TASK, PAYOUT_EXECUTE_TASK, WEBHOOK_TASK), 0)
    open_letters.update(selectors.dead_letters_open())
    for task, n in sorted(open_letters.items()):
        letters.add_metric([task], n)
    yield letters

    backlog = selectors.webhook_backlog()
    waiting = GaugeMetricFamily("marketpay_webhook_events_waiting", "Webhook events received and not processed yet.")
    waiting.add_metric([], backlog.waiting)
    yield waiting
    lag = GaugeMetricFamily(
        "marketpay_webhook_lag_seconds",
        "Age of the oldest webhook event waiting to be processed; 0 when none waits. Grows while the drain is stuck.",
    )
    oldest = backlog.oldest_received_at
    lag.add_metric([], max((now - oldest).total_seconds(), 0.0) if oldest else 0.0)
    yield lag

    yield from reconciliation_families()


def _by_status(
    name: str, documentation: str, statuses: Iterable[str], counts: dict[tuple[str, str], int]
) -> GaugeMetricFamily:
    # Every status and accepted currency appears, 0 when nothing is there: an alert on "== 0" needs the series.
    family = GaugeMetricFamily(name, documentation, labels=["status", "currency"])
    keys = {(status, currency) for status in statuses for currency in settings.PAYMENT_CURRENCIES} | set(counts)
    for status, currency in sorted(keys):
        family.add_metric([status, currency], counts.get((status, currency), 0))
    return family


def reconciliation_families() -> Iterator[Metric]:
    """The reconciliation's gauges belong here: mismatches by category and the last run's outcome, read from its
    run reports (reconciliation/selectors.py) when the reconciliation issue brings them. None are invented before."""
    return iter(())
