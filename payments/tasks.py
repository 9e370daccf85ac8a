"""The payment tasks. Each calls one service; every one is safe to run twice (acks_late re-delivers after a crash)."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from payments import execution, webhooks
from payments.psp.gateway import TransientPspError, UnknownPspOutcome


# Celery's retry_jitter draws the countdown uniformly between 0 and the exponential backoff: "full jitter", which
# spreads a crowd of retries (a PSP outage) instead of sending them back in one wave.
@shared_task(
    name="payments.order_execute",
    autoretry_for=(TransientPspError, UnknownPspOutcome),
    max_retries=settings.PSP_RETRY_MAX_ATTEMPTS - 1,
    retry_backoff=settings.PSP_RETRY_BACKOFF_SECONDS,
    retry_backoff_max=settings.PSP_RETRY_BACKOFF_MAX_SECONDS,
    retry_jitter=True,
)
def order_execute(payment_order_id: str) -> str:
    return execution.order_execute(payment_order_id=payment_order_id).status


# Well inside the soft time limit: a drain that runs out of time queues the next one itself.
@shared_task(name="payments.webhook_events_drain")
def webhook_events_drain() -> int:
    return webhooks.webhook_events_drain(max_seconds=20.0)
