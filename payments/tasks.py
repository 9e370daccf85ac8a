"""The payment tasks. Each calls one service; every one is safe to run twice (acks_late re-delivers after a crash).

``log_context`` names the log field the task's first argument fills (ops/signals.py), so every line it logs says
which order, refund or payout it is about.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from celery import Task, shared_task
from django.utils import timezone

from payments import execution, payouts, recovery, refunds, releases, retries, webhooks
from payments.psp.gateway import PspConfigurationError, TransientPspError, UnknownPspOutcome


def _run_with_retries(
    task: Task, *, object_type: str, object_id: str, first_failed_at: str | None, run: Callable[[], Any]
) -> str:
    """Run one PSP-facing step; on a failure the PSP may recover from, retry it with backoff under the same
    idempotency key, or file a dead letter once retries.after_failure says the attempts are spent."""
    try:
        return str(run().status)
    except (TransientPspError, UnknownPspOutcome, PspConfigurationError) as exc:
        first = datetime.fromisoformat(first_failed_at) if first_failed_at else timezone.now()
        delay = retries.after_failure(
            task=task.name,
            object_type=object_type,
            object_id=object_id,
            attempts=task.request.retries + 1,
            first_failed_at=first,
            error=exc,
        )
        if delay is None:
            return "dead_letter"
        raise task.retry(countdown=delay, args=(object_id,), kwargs={"first_failed_at": first.isoformat()}) from exc


@shared_task(name=retries.ORDER_EXECUTE_TASK, bind=True, max_retries=None, log_context="payment_order_id")
def order_execute(self: Task, payment_order_id: str, first_failed_at: str | None = None) -> str:
    return _run_with_retries(
        self,
        object_type="payment_order",
        object_id=payment_order_id,
        first_failed_at=first_failed_at,
        run=lambda: execution.order_execute(payment_order_id=payment_order_id),
    )


@shared_task(name=retries.REFUND_EXECUTE_TASK, bind=True, max_retries=None, log_context="refund_id")
def refund_execute(self: Task, refund_id: str, first_failed_at: str | None = None) -> str:
    return _run_with_retries(
        self,
        object_type="refund",
        object_id=refund_id,
        first_failed_at=first_failed_at,
        run=lambda: refunds.refund_execute(refund_id=refund_id),
    )


@shared_task(name=retries.PAYOUT_EXECUTE_TASK, bind=True, max_retries=None, log_context="payout_id")
def payout_execute(self: Task, payout_id: str, first_failed_at: str | None = None) -> str:
    return _run_with_retries(
        self,
        object_type="payout",
        object_id=payout_id,
        first_failed_at=first_failed_at,
        run=lambda: payouts.payout_execute(payout_id=payout_id),
    )


# The tasks that take one object id, by name: what services queue and dead letters replay.
BY_NAME = {task.name: task for task in (order_execute, refund_execute, payout_execute)}


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


@shared_task(name="payments.funds_release_due", soft_time_limit=600, time_limit=660)
def funds_release_due() -> int:
    return releases.funds_release_due()


@shared_task(name="payments.payout_run", soft_time_limit=1800, time_limit=1860)
def payout_run() -> dict[str, int]:
    report = payouts.payout_run()
    return {"created": len(report.created), "skipped": len(report.skipped)}
