"""The sandbox's clock: what happens at Stripe with time alone. Run by the background loop (psp_sandbox/loop.py).

- A ``processing`` PaymentIntent (``pm_card_processing``) succeeds ``SANDBOX_PROCESSING_DELAY_SECONDS`` after it
  started processing (``payment_intent.succeeded``).
- An open Checkout Session past its ``expires_at`` expires (``checkout.session.expired``).
- A refund of a ``pm_card_refundFail`` charge fails once its time comes (``refund.updated``, ``refund.failed``).

Each change goes through its service, which locks the row and re-checks its state, so two workers' clocks racing for
the same row change it (and emit its event) once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import connection
from django.utils import timezone

from psp_sandbox import checkout, config, refunds, services
from psp_sandbox.models import PaymentIntent

BATCH = 200

# Whether anything is due, one table at a time (most ticks find nothing): the conditions of the scans below and of
# checkout.sessions_expire_due and refunds.refunds_fail_due, each served by a partial index. Raw SQL, as the loop
# asks four times a second in every worker; one table per statement, so that the loop never deadlocks with a
# statement locking several (a TRUNCATE between tests).
_INTENTS_DUE_SQL = "SELECT 1 FROM psp_sandbox_paymentintent WHERE status = 'processing' AND updated <= %s LIMIT 1"
_SESSIONS_DUE_SQL = "SELECT 1 FROM psp_sandbox_checkoutsession WHERE status = 'open' AND expires_at <= %s LIMIT 1"
_REFUNDS_DUE_SQL = "SELECT 1 FROM psp_sandbox_refund WHERE status = 'succeeded' AND fails_at <= %s LIMIT 1"


def _any(sql: str, moment: datetime) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(sql, [moment])
        return cursor.fetchone() is not None


def tick() -> None:
    now = timezone.now()
    delay = timedelta(seconds=config.current().processing_delay_seconds)
    if _any(_INTENTS_DUE_SQL, now - delay):
        due = PaymentIntent.objects.filter(status=PaymentIntent.Status.PROCESSING, updated__lte=now - delay)
        for intent_id in due.values_list("id", flat=True)[:BATCH]:
            services.payment_intent_settle(intent_id=intent_id, succeed=True)
    if _any(_SESSIONS_DUE_SQL, now):
        checkout.sessions_expire_due(limit=BATCH)
    if _any(_REFUNDS_DUE_SQL, now):
        refunds.refunds_fail_due(limit=BATCH)
