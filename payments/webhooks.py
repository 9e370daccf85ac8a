"""The webhook inbox: receive (verify, store, acknowledge) and process (apply to orders), as two separate steps.

Receiving does no business work, so the PSP hears 2xx within milliseconds and stops redelivering; processing runs in
a Celery task that drains the inbox, may fail and be retried with backoff, and never loses the event, which stays in
the inbox with its last error.
Processing is idempotent and indifferent to order of arrival: every result goes through ``order_apply_result``, and
the order's state machine decides what a late or repeated event may still change.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Mapping
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone
from psycopg import sql

from ops import context as log_context
from ops.metrics import retries_total
from payments.disputes import dispute_apply
from payments.execution import order_apply_result
from payments.locks import row_columns, row_instance
from payments.models import PaymentOrder, Refund, WebhookEvent
from payments.psp import payment_gateway
from payments.psp.gateway import PspNotice
from payments.refunds import refund_apply_result
from payments.retries import WEBHOOK_TASK, capped_backoff, dead_letter_record

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


_DRAIN_QUEUED = "payments:webhook-drain-queued"
_LINGER_POLL_SECONDS = 0.02


class WebhookProcessingFailed(Exception):
    """A handler raised; the event is kept with its error, for a retry and for the finance console."""


def webhook_receive(*, psp: str, payload: bytes, headers: Mapping[str, str]) -> bool:
    """Verify and store one delivery, then make sure a drain will process it. Raises InvalidWebhook, storing
    nothing, when the signature does not hold. Returns whether the event waits for processing (False for a repeat
    of an event already processed)."""
    verified = payment_gateway().webhook_verify(payload=payload, headers=headers)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                _RECEIVE,
                [psp, verified.event_id, verified.type, verified.object_id, payload.decode("utf-8")],
            )
            _, waiting = cursor.fetchone()
        if waiting:
            # Also on a repeat that finds the event still waiting: the drain that was to take it may have been lost.
            transaction.on_commit(webhook_drain_request)
    return bool(waiting)


def webhook_drain_request() -> None:
    """Queue a drain of the inbox unless one is queued or running already.

    One drain task applies every waiting event, instead of one task per event: at the PSP's pace the broker round
    trip and task start-up cost more than applying an event. The flag (in Redis, with an expiry longer than a drain
    may run) says "a drain is queued or running"; the drain clears it as it leaves. Beat drains every minute too,
    which catches a flag or a task lost with Redis.
    """
    try:
        if cache.add(_DRAIN_QUEUED, 1, timeout=settings.WEBHOOK_DRAIN_FLAG_SECONDS):
            from payments.tasks import webhook_events_drain

            webhook_events_drain.apply_async(retry=False)
    except Exception:
        with contextlib.suppress(Exception):  # Redis itself may be what failed
            cache.delete(_DRAIN_QUEUED)
        logger.warning("could not queue a webhook drain; the periodic drain will take the events", exc_info=True)


def webhook_events_drain(*, max_seconds: float = 20.0, linger_seconds: float = 1.0) -> int:
    """Process waiting events, oldest first, one transaction each, until none has come for ``linger_seconds`` or
    the time is up. Returns how many were processed (failures included).

    It lingers because events come in a stream: one drain that waits a moment for the next event costs a small query
    every few milliseconds, where a drain per event costs a task each. Several drains may still run at once (beat's,
    a flag that expired): each claims its next event with SKIP LOCKED, so no event is processed twice.
    """
    try:
        return _drain(max_seconds=max_seconds, linger_seconds=linger_seconds)
    except BaseException:
        # A drain that dies must not leave the flag saying one runs: events arriving now would wait for beat.
        with contextlib.suppress(Exception):
            cache.delete(_DRAIN_QUEUED)
        raise


def _drain(*, max_seconds: float, linger_seconds: float) -> int:
    deadline = time.monotonic() + min(max_seconds, settings.WEBHOOK_DRAIN_FLAG_SECONDS * 0.8)
    done = 0
    idle_since = time.monotonic()
    while time.monotonic() < deadline:
        if _drain_one():
            done += 1
            idle_since = time.monotonic()
            continue
        if time.monotonic() - idle_since < linger_seconds:
            time.sleep(_LINGER_POLL_SECONDS)
            continue
        # Leaving: clear the flag first, then look once more. An event stored before that look is taken here; one
        # stored after it finds the flag gone and queues the next drain itself. No event is left waiting.
        cache.delete(_DRAIN_QUEUED)
        if not _drain_one():
            return done
        done += 1
        idle_since = time.monotonic()
        if not cache.add(_DRAIN_QUEUED, 1, timeout=settings.WEBHOOK_DRAIN_FLAG_SECONDS):
            return done  # another drain was queued meanwhile; it takes the rest
    cache.delete(_DRAIN_QUEUED)
    webhook_drain_request()  # out of time: the next drain goes on
    return done


def _drain_one() -> bool:
    with transaction.atomic():
        event = _next_waiting()
        if event is None:
            return False
        _process_locked(event)
    return True


def _next_waiting() -> WebhookEvent | None:
    """The oldest event due for processing, locked (one no other drain holds). A lingering drain asks for it every
    few milliseconds, most times finding none, so it is one statement written once: the equivalent queryset's
    compilation cost four times the statement's own round trip."""
    with connection.cursor() as cursor:
        cursor.execute(_next_waiting_statement(), [settings.WEBHOOK_MAX_ATTEMPTS])
        row = cursor.fetchone()
    if row is None:
        return None
    return row_instance(WebhookEvent, row)


@functools.cache
def _next_waiting_statement() -> sql.Composed:
    # Served by the partial index on waiting events (processed_at IS NULL), in id order.
    return sql.SQL(
        "SELECT {columns} FROM {table} WHERE processed_at IS NULL AND attempts < %s"
        " AND (next_attempt_at IS NULL OR next_attempt_at <= statement_timestamp())"
        " ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
    ).format(
        columns=row_columns(WebhookEvent, WebhookEvent._meta.db_table),
        table=sql.Identifier(WebhookEvent._meta.db_table),
    )


def webhook_event_process(*, event_id: str) -> str:
    """Apply one stored event now, whatever its retry schedule (the console's "process again"). Returns the outcome;
    raises WebhookProcessingFailed when the handler fails, keeping the error on the event."""
    with transaction.atomic():
        # SKIP LOCKED: an event a drain is applying right now is left to it.
        event = WebhookEvent.objects.select_for_update(skip_locked=True).filter(pk=int(event_id)).first()
        if event is None or event.processed_at is not None:
            return "already processed or in progress"
        if _process_locked(event):
            return event.outcome
    raise WebhookProcessingFailed(event.event_id)


def _process_locked(event: WebhookEvent) -> bool:
    """Apply an event whose row lock the caller holds; record the outcome, or the error and the next attempt."""
    event.attempts += 1
    try:
        with transaction.atomic():
            outcome = _apply(payment_gateway().webhook_notice(payload=event.payload))
    except Exception as exc:
        event.last_error = f"{type(exc).__name__}: {exc}"[:4000]
        delay = capped_backoff(
            event.attempts, base=settings.WEBHOOK_RETRY_BASE_SECONDS, cap=settings.WEBHOOK_RETRY_MAX_SECONDS
        )
        event.next_attempt_at = timezone.now() + timedelta(seconds=delay)
        event.save(update_fields=["attempts", "last_error", "next_attempt_at"])
        if event.attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
            # Retrying will not help: a person must look (the event stays in the inbox, unprocessed, with its error).
            dead_letter_record(
                task=WEBHOOK_TASK,
                object_type="webhook_event",
                object_id=event.event_id,
                attempts=event.attempts,
                error=exc,
                first_failed_at=event.received_at,
            )
        else:
            retries_total.labels(WEBHOOK_TASK).inc()
            logger.error(
                "webhook event %s failed (attempt %d); retried in %d s",
                event.event_id,
                event.attempts,
                delay,
                extra={"webhook_event": event.event_id},
            )
        return False
    event.processed_at = timezone.now()
    event.outcome = outcome
    event.last_error = ""
    event.save(update_fields=["attempts", "processed_at", "outcome", "last_error"])
    return True


def _apply(notice: PspNotice) -> str:
    if notice.dispute is not None:
        return dispute_apply(notice=notice.dispute, actor=WEBHOOK_ACTOR)
    if notice.refund_result is not None:
        if not Refund.objects.filter(refund_id=notice.refund_id).exists():
            return "ignored: no refund of ours"
        refund = refund_apply_result(refund_id=notice.refund_id, result=notice.refund_result, actor=WEBHOOK_ACTOR)
        return f"refund {refund.refund_id} {refund.status}"
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
        try:
            with log_context.bound(payment_order_id=order_id):
                order, before = order_apply_result(payment_order_id=order_id, result=notice.result, actor=WEBHOOK_ACTOR)
        except PaymentOrder.DoesNotExist:
            continue  # an order id we never issued: another system's charge on the same PSP account
        after = order.status
        moved.append(f"{order_id} {before}→{after}" if before != after else f"{order_id} unchanged ({after})")
    return "; ".join(moved) if moved else "ignored: no order of ours"


def webhook_event_retry(*, event_id: str) -> bool:
    """Give a dead-lettered event its attempts back and queue a drain (a replay, once the cause is fixed)."""
    updated = WebhookEvent.objects.filter(event_id=event_id, processed_at__isnull=True).update(
        attempts=0, next_attempt_at=None
    )
    if updated:
        transaction.on_commit(webhook_drain_request)
    return bool(updated)
