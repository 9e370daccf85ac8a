"""Stripe events: each state change a webhook consumer cares about is recorded as an ``Event`` in the transaction of
the change, with a snapshot of the object rendered as the API renders it, and is scheduled for delivery to the
configured webhook endpoint (psp_sandbox/webhooks.py) in the same transaction.

Emitted by the services:
- ``payment_intent.succeeded``, ``.payment_failed`` (a decline, or failed authentication), ``.processing``,
  ``.requires_action`` (3-D Secure), ``.canceled``;
- ``checkout.session.completed`` (after the intent's ``payment_intent.succeeded``), ``checkout.session.expired``;
- ``charge.refunded`` and ``refund.created``; ``refund.updated`` and ``refund.failed`` when a refund fails later;
- ``charge.dispute.created``, ``charge.dispute.funds_withdrawn``, ``charge.dispute.closed``,
  ``charge.dispute.funds_reinstated`` (a dispute won);
- ``transfer.created``, ``transfer.reversed``.
"""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from psp_sandbox import config, context, webhooks
from psp_sandbox.inserts import insert
from psp_sandbox.models import Event, WebhookDelivery, stripe_id

# The API version of the account, as stripe-python 16.1 pins it (stripe/_api_version.py): events say which version
# rendered their object.
API_VERSION = "2026-10-28.endive"


def event_emit(type: str, obj: dict[str, Any], *, previous_attributes: dict[str, Any] | None = None) -> Event:
    """Record that ``type`` happened to ``obj`` (already rendered) and schedule its delivery. Call it inside the
    transaction of the change."""
    request = context.current()
    data: dict[str, Any] = {"object": obj}
    if previous_attributes is not None:
        data["previous_attributes"] = previous_attributes
    if request is not None and request.idempotency_key:
        # The n-th event of this type caused by this idempotent request: the same in every run with the same calls.
        request.emitted[type] += 1
        identity = f"request:{request.idempotency_key}:{type}:{request.emitted[type]}"
    else:
        identity = f"object:{obj.get('id')}:{type}"
    event = insert(
        Event(
            id=stripe_id("evt"),
            type=type,
            api_version=API_VERSION,
            data=data,
            request_id=request.request_id if request is not None else "",
            idempotency_key=(request.idempotency_key or "") if request is not None else "",
            fault_identity=identity,
            transaction_id=(request.transaction_id if request is not None else None) or _transaction_id(),
            created=timezone.now(),
        )
    )
    webhooks.delivery_schedule(event, config.current())
    return event


def _transaction_id() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT txid_current()")
        return int(cursor.fetchone()[0])


def with_pending_webhooks(events: QuerySet[Event]) -> QuerySet[Event]:
    return events.annotate(pending=Count("deliveries", filter=Q(deliveries__status=WebhookDelivery.Status.PENDING)))
