"""The sandbox's clock: what happens at Stripe with time alone. Run by the background loop (psp_sandbox/loop.py).

- A ``processing`` PaymentIntent (``pm_card_processing``) succeeds ``SANDBOX_PROCESSING_DELAY_SECONDS`` after it
  started processing (``payment_intent.succeeded``).
- An open Checkout Session past its ``expires_at`` expires (``checkout.session.expired``).
- A refund of a ``pm_card_refundFail`` charge fails once its time comes (``refund.updated``, ``refund.failed``).

Each change goes through its service, which locks the row and re-checks its state, so two workers' clocks racing for
the same row change it (and emit its event) once.
"""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from psp_sandbox import checkout, config, refunds, services
from psp_sandbox.models import PaymentIntent

BATCH = 200


def tick() -> None:
    now = timezone.now()
    delay = timedelta(seconds=config.current().processing_delay_seconds)
    due = PaymentIntent.objects.filter(status=PaymentIntent.Status.PROCESSING, updated__lte=now - delay)
    for intent_id in due.values_list("id", flat=True)[:BATCH]:
        services.payment_intent_settle(intent_id=intent_id, succeed=True)
    checkout.sessions_expire_due(limit=BATCH)
    refunds.refunds_fail_due(limit=BATCH)
