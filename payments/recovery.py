"""The recovery sweep (DESIGN.md "Failures"; the seeds' scheduled job over in-flight orders). Beat runs it every
minute, one at a time. A lost Celery message, a killed worker, a restarted Redis or a lost webhook can delay a
payment; this is what makes sure none of them loses it.

1. Orders whose task was lost: ``NOT_STARTED`` (the task was never queued, or the message vanished) or ``EXECUTING``
   (a worker died mid-call) for longer than any retry would wait: queued again. Same idempotency key: never a second
   charge.
2. ``UNKNOWN`` and old ``PENDING`` orders (dead-lettered ones too): looked up at the PSP and moved to what it says.
   An ``UNKNOWN`` order the PSP has never seen was not charged: it is sent again.
3. Dead letters whose order has reached a final state since (a webhook, a lookup): closed.
4. Orders in flight past the alert threshold: an ERROR log line with their ids, and the count in the report (the
   same query as the ``marketpay_payment_orders_overdue`` gauge, which /metrics computes at every scrape).
5. Webhook events waiting in the inbox: a drain is queued.
6. Refunds and payouts, the same way: lost or ``UNKNOWN`` ones are queued again (their executor looks them up before
   it sends again, under the same idempotency key); old ``PENDING`` refunds are looked up. Dead-lettered ones wait
   for a person's replay.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db.models import Case, Exists, OuterRef, Q, When
from django.db.models.functions import Now
from django.utils import timezone

from payments.execution import order_apply_result
from payments.models import (
    FINAL_STATUSES,
    DeadLetter,
    OrderStatus,
    PaymentOrder,
    Payout,
    Refund,
    RefundStatus,
    RiskReviewStatus,
    WebhookEvent,
)
from payments.psp import payment_gateway
from payments.psp.gateway import ChargeResult, PspConfigurationError, TransientPspError, UnknownPspOutcome
from payments.refunds import refund_apply_result
from payments.retries import ORDER_EXECUTE_TASK, PAYOUT_EXECUTE_TASK, REFUND_EXECUTE_TASK
from payments.selectors import orders_overdue
from payments.services import executions_enqueue, tasks_enqueue
from payments.webhooks import webhook_drain_request

logger = logging.getLogger(__name__)

SWEEP_ACTOR = "sweep"
_RUNNING = "payments:recovery-sweep-running"


@dataclass
class SweepReport:
    requeued: list[str] = field(default_factory=list)
    settled: dict[str, str] = field(default_factory=dict)  # payment_order_id → status after the lookup
    lookups_failed: list[str] = field(default_factory=list)
    letters_closed: int = 0
    overdue: int = 0
    webhooks_waiting: int = 0
    refunds_requeued: list[str] = field(default_factory=list)
    payouts_requeued: list[str] = field(default_factory=list)
    refunds_settled: dict[str, str] = field(default_factory=dict)


def recovery_sweep(*, now: datetime | None = None, limit: int = 500) -> SweepReport | None:
    """One sweep; None when another is running (the flag expires by itself if a sweep dies)."""
    try:
        if not cache.add(_RUNNING, 1, timeout=settings.RECOVERY_SWEEP_LOCK_SECONDS):
            return None
    except Exception:
        # Redis is down: skip this round rather than run unguarded; the next minute tries again.
        logger.warning("recovery sweep skipped: its lock (in Redis) is unavailable", exc_info=True)
        return None
    try:
        return _sweep(now or timezone.now(), limit)
    finally:
        with contextlib.suppress(Exception):
            cache.delete(_RUNNING)


def _sweep(now: datetime, limit: int) -> SweepReport:
    report = SweepReport()
    open_letter = DeadLetter.objects.filter(
        task=ORDER_EXECUTE_TASK, object_id=OuterRef("payment_order_id"), resolved_at__isnull=True
    )
    # 1. Lost tasks. EXECUTING waits out the longest retry backoff first: a retry in its countdown is not lost.
    lost = (
        PaymentOrder.objects.exclude(event__payment_method_token="")
        .filter(
            Q(status=OrderStatus.NOT_STARTED, updated_at__lt=now - timedelta(seconds=settings.RECOVERY_STALE_SECONDS))
            | Q(
                status=OrderStatus.EXECUTING,
                updated_at__lt=now
                - timedelta(seconds=settings.RECOVERY_STALE_SECONDS + settings.PSP_RETRY_BACKOFF_MAX_SECONDS),
            )
        )
        .exclude(Exists(open_letter))
        .exclude(risk_review__status=RiskReviewStatus.PENDING)  # held for a person, not lost
        .order_by("updated_at")
        .values_list("payment_order_id", flat=True)[:limit]
    )
    report.requeued = list(lost)
    # Bookkeeping first, so that it happens even when the PSP is slow and the lookups below take the time.
    # 3. Letters whose order is done.
    done = PaymentOrder.objects.filter(payment_order_id=OuterRef("object_id"), status__in=FINAL_STATUSES)
    report.letters_closed = (
        DeadLetter.objects.filter(task=ORDER_EXECUTE_TASK, resolved_at__isnull=True)
        .filter(Exists(done))
        .update(resolved_at=now, resolution="the order reached a final state")
    )
    # 4. The alert.
    overdue = orders_overdue(now=now)
    report.overdue = overdue.count()
    if report.overdue:
        first_ids = list(overdue.order_by("created_at").values_list("payment_order_id", flat=True)[:50])
        # The ids in the message itself: whatever the log format, the person paged sees which orders.
        logger.error(
            "%d payment orders in flight for more than %d s: %s%s",
            report.overdue,
            settings.ORDER_IN_FLIGHT_ALERT_SECONDS,
            ", ".join(first_ids),
            " (and more)" if report.overdue > len(first_ids) else "",
            extra={"count": report.overdue, "payment_order_ids": first_ids},
        )
    # 5. The inbox.
    report.webhooks_waiting = WebhookEvent.objects.filter(
        processed_at__isnull=True,
        attempts__lt=settings.WEBHOOK_MAX_ATTEMPTS,
        received_at__lt=now - timedelta(seconds=settings.RECOVERY_STALE_SECONDS),
    ).count()
    if report.webhooks_waiting:
        webhook_drain_request()
    # 2. Ask the PSP, UNKNOWN orders first, a bounded number per sweep. Dead-lettered orders too: a lookup is what
    # settles an order whose retries ran out. An order the PSP says nothing new about is put to the back of the line
    # (its updated_at is touched), so an abandoned 3-D Secure payment cannot hold the sweep on the same orders.
    unsettled = (
        PaymentOrder.objects.filter(
            Q(status=OrderStatus.UNKNOWN, updated_at__lt=now - timedelta(seconds=settings.RECOVERY_STALE_SECONDS))
            | Q(
                status=OrderStatus.PENDING,
                updated_at__lt=now - timedelta(seconds=settings.RECOVERY_PENDING_LOOKUP_SECONDS),
            )
        )
        .order_by(Case(When(status=OrderStatus.UNKNOWN, then=0), default=1), "updated_at")
        .values_list("payment_order_id", "status", "psp_token")[: settings.RECOVERY_LOOKUPS_PER_SWEEP]
    )
    gateway = payment_gateway()
    sessions: dict[str, ChargeResult | None] = {}
    unchanged: list[str] = []
    for order_id, status, token in unsettled:
        try:
            if token:
                if token not in sessions:
                    sessions[token] = gateway.checkout_lookup(token=token)
                result = sessions[token]
            else:
                result = gateway.lookup(payment_order_id=order_id)
        except (TransientPspError, UnknownPspOutcome, PspConfigurationError):
            logger.warning("recovery lookup failed", extra={"payment_order_id": order_id}, exc_info=True)
            report.lookups_failed.append(order_id)
            unchanged.append(order_id)
            continue
        if result is None:
            if status == OrderStatus.UNKNOWN and not token:
                report.requeued.append(order_id)  # the PSP never saw it: nothing was charged; send it
            else:
                unchanged.append(order_id)
            continue
        order, before = order_apply_result(payment_order_id=order_id, result=result, actor=SWEEP_ACTOR)
        if order.status != before:
            report.settled[order_id] = order.status
        else:
            unchanged.append(order_id)
    if unchanged:
        PaymentOrder.objects.filter(payment_order_id__in=unchanged).update(updated_at=Now())
    if report.requeued:
        executions_enqueue(report.requeued)
    _money_out(report, now, limit)
    if report.requeued or report.settled or report.letters_closed or report.refunds_requeued or report.payouts_requeued:
        logger.info(
            "recovery sweep",
            extra={
                "requeued": len(report.requeued),
                "settled": len(report.settled),
                "letters_closed": report.letters_closed,
                "refunds_requeued": len(report.refunds_requeued),
                "payouts_requeued": len(report.payouts_requeued),
            },
        )
    return report


def _money_out(report: SweepReport, now: datetime, limit: int) -> None:
    """Step 6: refunds and payouts whose task was lost, or whose outcome is unknown, go back to their executor."""
    stale = now - timedelta(seconds=settings.RECOVERY_STALE_SECONDS)
    executing_stale = stale - timedelta(seconds=settings.PSP_RETRY_BACKOFF_MAX_SECONDS)
    for model, id_field, task, requeued in (
        (Refund, "refund_id", REFUND_EXECUTE_TASK, report.refunds_requeued),
        (Payout, "payout_id", PAYOUT_EXECUTE_TASK, report.payouts_requeued),
    ):
        open_letter = DeadLetter.objects.filter(task=task, object_id=OuterRef(id_field), resolved_at__isnull=True)
        lost = (
            model.objects.filter(
                Q(status__in=["NOT_STARTED", "UNKNOWN"], updated_at__lt=stale)
                | Q(status="EXECUTING", updated_at__lt=executing_stale)
            )
            .exclude(Exists(open_letter))
            .order_by("updated_at")
            .values_list(id_field, flat=True)[:limit]
        )
        requeued.extend(lost)
        if requeued:
            model.objects.filter(**{f"{id_field}__in": requeued}).update(updated_at=Now())
            tasks_enqueue(task, list(requeued))
    waiting = Refund.objects.filter(
        status=RefundStatus.PENDING, updated_at__lt=now - timedelta(seconds=settings.RECOVERY_PENDING_LOOKUP_SECONDS)
    ).select_related("order")
    for refund in waiting.order_by("updated_at")[: settings.RECOVERY_LOOKUPS_PER_SWEEP]:
        try:
            found = payment_gateway().refund_lookup(
                refund_id=refund.refund_id, payment_intent=refund.order.psp_reference
            )
        except (TransientPspError, UnknownPspOutcome, PspConfigurationError):
            logger.warning("refund lookup failed", extra={"refund_id": refund.refund_id}, exc_info=True)
            continue
        after = refund_apply_result(refund_id=refund.refund_id, result=found, actor=SWEEP_ACTOR) if found else refund
        if after.status != refund.status:
            report.refunds_settled[refund.refund_id] = after.status
        else:
            Refund.objects.filter(pk=refund.pk).update(updated_at=Now())
