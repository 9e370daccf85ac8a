"""When to try a PSP call again, and what happens after the last attempt (DESIGN.md "Failures").

Transient failures (429, 5xx, no connection) and unknown outcomes are retried under the same idempotency key with
exponential backoff and full jitter: the wait is drawn uniformly between zero and ``base * 2**(attempt-1)`` (capped),
so a crowd of orders failing together at a PSP outage comes back spread out instead of in one wave. Retries are
bounded twice: in attempts and in total time since the first failure. After that the work goes to the dead letter
queue, with the order left where it stopped.
"""

from __future__ import annotations

import logging
import random
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from ops.metrics import retries_total
from payments.models import DeadLetter
from payments.psp.gateway import PspConfigurationError
from payments.services import tasks_enqueue

logger = logging.getLogger(__name__)

ORDER_EXECUTE_TASK = "payments.order_execute"
REFUND_EXECUTE_TASK = "payments.refund_execute"
PAYOUT_EXECUTE_TASK = "payments.payout_execute"
WEBHOOK_TASK = "payments.webhook_event"


def capped_backoff(attempt: int, *, base: float, cap: float) -> float:
    """``base`` doubled after every failed attempt but the first, never above ``cap``: the wait after ``attempt``."""
    return float(min(base * 2 ** (attempt - 1), cap))


def retry_delay(attempt: int, *, rng: random.Random | None = None) -> float:
    """Seconds to wait before attempt ``attempt + 1``, after ``attempt`` attempts failed (full jitter)."""
    ceiling = capped_backoff(
        attempt, base=settings.PSP_RETRY_BACKOFF_SECONDS, cap=settings.PSP_RETRY_BACKOFF_MAX_SECONDS
    )
    return (rng or random).uniform(0, ceiling)


def retry_allowed(*, attempts: int, first_failed_at: datetime, delay: float, now: datetime | None = None) -> bool:
    """Whether one more attempt, ``delay`` seconds from now, stays inside both bounds."""
    if attempts >= settings.PSP_RETRY_MAX_ATTEMPTS:
        return False
    elapsed = ((now or timezone.now()) - first_failed_at).total_seconds()
    return elapsed + delay <= settings.PSP_RETRY_MAX_SECONDS


def after_failure(
    *, task: str, object_type: str, object_id: str, attempts: int, first_failed_at: datetime, error: BaseException
) -> float | None:
    """The retry policy in one place: seconds until the next attempt, or None when the work went to the dead letter
    queue (retries exhausted, or an error no retry can fix: our configuration, which a person must correct)."""
    if not isinstance(error, PspConfigurationError):
        delay = retry_delay(attempts)
        if retry_allowed(attempts=attempts, first_failed_at=first_failed_at, delay=delay):
            retries_total.labels(task).inc()
            return delay
    dead_letter_record(
        task=task,
        object_type=object_type,
        object_id=object_id,
        attempts=attempts,
        error=error,
        first_failed_at=first_failed_at,
    )
    return None


def dead_letter_record(
    *, task: str, object_type: str, object_id: str, attempts: int, error: BaseException, first_failed_at: datetime
) -> DeadLetter:
    """File the open dead letter for this piece of work, or update it if one is open, and raise the alarm."""
    now = timezone.now()
    message = f"{type(error).__name__}: {error}"[:4000]
    with transaction.atomic():
        try:
            with transaction.atomic():
                letter = DeadLetter.objects.create(
                    task=task,
                    object_type=object_type,
                    object_id=object_id,
                    attempts=attempts,
                    last_error=message,
                    first_failed_at=first_failed_at,
                    last_failed_at=now,
                )
        except IntegrityError:
            # A letter is open for this work already (the unique index on open letters says so, also under a race):
            # it is updated instead.
            open_letters = DeadLetter.objects.select_for_update().filter(resolved_at__isnull=True)
            letter = open_letters.get(task=task, object_id=object_id)
            letter.attempts = max(letter.attempts, attempts)
            letter.last_error = message
            letter.last_failed_at = now
            letter.save(update_fields=["attempts", "last_error", "last_failed_at"])
    logger.error(
        "dead letter %s: %s for %s %s failed %d attempts: %s",
        letter.pk,
        task,
        object_type,
        object_id,
        attempts,
        message,
        extra={"task": task, object_type: object_id, "attempts": attempts, "dead_letter": letter.pk},
    )
    return letter


def dead_letter_replay(*, dead_letter_id: int, actor: str) -> bool:
    """Send the work again, once: the letter is closed as replayed and the task queued when the transaction
    commits. Replaying a closed letter does nothing (returns False), so a double click sends nothing twice."""
    with transaction.atomic():
        letter = DeadLetter.objects.select_for_update().filter(pk=dead_letter_id, resolved_at__isnull=True).first()
        if letter is None:
            return False
        letter.resolved_at = timezone.now()
        letter.resolution = f"replayed by {actor}"
        letter.save(update_fields=["resolved_at", "resolution"])
        if letter.task in (ORDER_EXECUTE_TASK, REFUND_EXECUTE_TASK, PAYOUT_EXECUTE_TASK):
            tasks_enqueue(letter.task, [letter.object_id])
        elif letter.task == WEBHOOK_TASK:
            from payments.webhooks import webhook_event_retry

            webhook_event_retry(event_id=letter.object_id)
        else:
            raise ValueError(f"no replay for {letter.task}")
    logger.info("dead letter replayed", extra={"dead_letter": dead_letter_id, "actor": actor})
    return True


def dead_letter_resolve(*, task: str, object_id: str, resolution: str) -> int:
    """Close the open letter of this work, if any (it succeeded after all, or a person settled it)."""
    return DeadLetter.objects.filter(task=task, object_id=object_id, resolved_at__isnull=True).update(
        resolved_at=timezone.now(), resolution=resolution
    )
