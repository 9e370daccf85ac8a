"""The payment tasks. Each calls one service; every one is safe to run twice (acks_late re-delivers after a crash)."""

from __future__ import annotations

from datetime import datetime

from celery import Task, shared_task
from django.utils import timezone

from payments import execution, recovery, retries, webhooks
from payments.psp.gateway import PspConfigurationError, TransientPspError, UnknownPspOutcome


@shared_task(name=retries.ORDER_EXECUTE_TASK, bind=True, max_retries=None)
def order_execute(self: Task, payment_order_id: str, first_failed_at: str | None = None) -> str:
    try:
        return execution.order_execute(payment_order_id=payment_order_id).status
    except (TransientPspError, UnknownPspOutcome, PspConfigurationError) as exc:
        first = datetime.fromisoformat(first_failed_at) if first_failed_at else timezone.now()
        delay = retries.after_failure(
            task=retries.ORDER_EXECUTE_TASK,
            object_type="payment_order",
            object_id=payment_order_id,
            attempts=self.request.retries + 1,
            first_failed_at=first,
            error=exc,
        )
        if delay is None:
            return "dead_letter"
        raise self.retry(
            countdown=delay, kwargs={"payment_order_id": payment_order_id, "first_failed_at": first.isoformat()}
        ) from exc


# Well inside the soft time limit: a drain that runs out of time queues the next one itself.
@shared_task(name="payments.webhook_events_drain")
def webhook_events_drain() -> int:
    return webhooks.webhook_events_drain(max_seconds=20.0)


# One at a time (a flag in Redis), and short: beat queues the next one a minute later.
@shared_task(name="payments.recovery_sweep", soft_time_limit=240, time_limit=270)
def recovery_sweep() -> dict[str, int] | None:
    report = recovery.recovery_sweep()
    if report is None:
        return None
    return {"requeued": len(report.requeued), "settled": len(report.settled), "overdue": report.overdue}
