"""The webhook inbox: receive (verify, store, acknowledge) and process (apply to orders), as two separate steps.

Receiving does no business work, so the PSP hears 2xx within milliseconds and stops redelivering; processing runs in
a Celery task, may fail and be retried, and never loses the event, which stays in the inbox with its last error.
Processing is idempotent and indifferent to order of arrival: every result goes through ``order_apply_result``, and
the order's state machine decides what a late or repeated event may still change.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from django.db import connection, transaction
from django.utils import timezone

from payments.execution import order_apply_result
from payments.models import PaymentOrder, WebhookEvent
from payments.psp import payment_gateway
from payments.psp.gateway import PspNotice

logger = logging.getLogger(__name__)

WEBHOOK_ACTOR = "webhook"

# One statement, safe against the PSP delivering the same event twice at once: the unique (psp, event_id) index
# decides; a repeat only counts itself. RETURNING says whether the event still waits for processing.
_RECEIVE = """
INSERT INTO payments_webhookevent AS inbox (psp, event_id, type, object_id, payload)
VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (psp, event_id) DO UPDATE SET deliveries = inbox.deliveries + 1
RETURNING inbox.id, inbox.processed_at IS NULL
"""


class WebhookProcessingFailed(Exception):
    """A handler raised; the event is kept with its error, for a retry and for the finance console."""


def webhook_receive(*, psp: str, payload: bytes, headers: Mapping[str, str]) -> WebhookEvent | None:
    """Verify and store one delivery; queue its processing. Raises InvalidWebhook, storing nothing, when the
    signature does not hold. Returns the stored event, or None for a repeat of an event already processed."""
    verified = payment_gateway().webhook_verify(payload=payload, headers=headers)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                _RECEIVE,
                [psp, verified.event_id, verified.type, verified.object_id, payload.decode("utf-8")],
            )
            pk, waiting = cursor.fetchone()
        if not waiting:
            return None
        # Queued again on a repeat that finds the event still waiting: the first task may have been lost.
        transaction.on_commit(lambda: _publish(pk))
    return WebhookEvent(pk=pk, psp=psp, event_id=verified.event_id, type=verified.type)


def _publish(pk: int) -> None:
    from payments.tasks import webhook_event_process

    try:
        webhook_event_process.apply_async((str(pk),), retry=False)
    except Exception:
        logger.warning("could not queue a webhook event; it waits in the inbox", extra={"webhook_event": pk})


def webhook_event_process(*, event_id: str) -> str:
    """Apply one stored event to our orders, once. Returns what happened, which is also kept on the event."""
    with transaction.atomic():
        # SKIP LOCKED: a duplicate task for an event being processed right now leaves it to the first one.
        event = WebhookEvent.objects.select_for_update(skip_locked=True).filter(pk=int(event_id)).first()
        if event is None or event.processed_at is not None:
            return "already processed or in progress"
        event.attempts += 1
        try:
            with transaction.atomic():
                outcome = _apply(payment_gateway().webhook_notice(payload=event.payload))
        except Exception as exc:
            event.last_error = f"{type(exc).__name__}: {exc}"[:4000]
            event.save(update_fields=["attempts", "last_error"])
            failure: Exception = exc
        else:
            event.processed_at = timezone.now()
            event.outcome = outcome
            event.last_error = ""
            event.save(update_fields=["attempts", "processed_at", "outcome", "last_error"])
            return outcome
    logger.error("webhook event processing failed", extra={"webhook_event": event.event_id, "attempts": event.attempts})
    raise WebhookProcessingFailed(event.event_id) from failure


def _apply(notice: PspNotice) -> str:
    if notice.result is None:
        return f"ignored: {notice.note}"
    if notice.payment_order_id:
        order_ids = [notice.payment_order_id]
    else:
        # Locked in primary-key order, as everywhere, through order_lock inside order_apply_result.
        order_ids = list(
            PaymentOrder.objects.filter(psp_token=notice.checkout_token)
            .order_by("pk")
            .values_list("payment_order_id", flat=True)
        )
    moved = []
    for order_id in order_ids:
        before = PaymentOrder.objects.filter(payment_order_id=order_id).values_list("status", flat=True).first()
        if before is None:
            continue  # an order id we never issued: another system's charge on the same PSP account
        after = order_apply_result(payment_order_id=order_id, result=notice.result, actor=WEBHOOK_ACTOR).status
        moved.append(f"{order_id} {before}→{after}" if before != after else f"{order_id} unchanged ({after})")
    return "; ".join(moved) if moved else "ignored: no order of ours"
