"""The execution relay: from "an order to execute was committed" to "its executor task is in the broker".

``payment_create`` announces every order to execute with a NOTIFY in the statement that stores it; PostgreSQL
delivers it when, and only if, the transaction commits. This process LISTENs and publishes one executor task per
order, with the id of the request that created it in the task's headers (ops/signals.py), for the logs. So the API
request does no broker round trip and does not care whether Redis is up: the orders table is the outbox, and this is
its relay (one more process in the Procfile, ``manage.py relay_executions``).

Nothing is lost when a piece stops:
- Redis down: what could not be published is kept and published again, oldest first, until Redis is back.
- The relay itself down: notifications sent meanwhile are gone, so on every (re)connection it first publishes the
  orders still ``NOT_STARTED`` from the last few minutes; older ones are the recovery sweep's.
- A duplicate publish (a catch-up that overlaps a notification) costs one executor run that finds the order already
  moving and does nothing.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from datetime import timedelta
from typing import Any

import psycopg
from django.conf import settings
from django.db import connection
from django.utils import timezone

from ops import context
from payments.models import OrderStatus, PaymentOrder
from payments.services import EXECUTIONS_CHANNEL

logger = logging.getLogger(__name__)

RECONNECT_PAUSE_SECONDS = 1.0
# Queued publishes kept while the broker is down; past this the oldest are dropped (the sweep finds them).
PENDING_LIMIT = 100_000
# Executor messages sent to the broker in one round trip.
PUBLISH_BATCH = 500


def relay_run(*, stop: threading.Event, dsn_params: dict[str, Any] | None = None) -> None:
    """Relay until ``stop`` is set. ``dsn_params``: psycopg connection parameters (default: Django's database)."""
    pending: deque[str] = deque(maxlen=PENDING_LIMIT)
    outage = _Outage()
    while not stop.is_set():
        try:
            with psycopg.connect(**(dsn_params or _django_params()), autocommit=True) as conn:
                conn.execute(f"LISTEN {EXECUTIONS_CHANNEL}")
                pending.extend(_recent_not_started())
                while not stop.is_set():
                    _publish(pending, outage)
                    # Wake on the first notification or after a short wait: a backlog left by a broker outage is
                    # retried at that pace.
                    for notify in conn.notifies(timeout=0.5 if not pending else 1.0, stop_after=1):
                        pending.append(notify.payload)
                    # Whatever else has arrived meanwhile, without waiting.
                    for notify in conn.notifies(timeout=0, stop_after=10_000):
                        pending.append(notify.payload)
        except Exception:
            # A lost database connection, usually; whatever it was, the relay must outlive it.
            logger.warning("execution relay failed; reconnecting", exc_info=True)
            stop.wait(RECONNECT_PAUSE_SECONDS)


def _django_params() -> dict[str, Any]:
    params = dict(connection.get_connection_params())
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return params


def _recent_not_started() -> list[str]:
    since = timezone.now() - timedelta(seconds=settings.RECOVERY_STALE_SECONDS * 5)
    ids = list(
        PaymentOrder.objects.filter(status=OrderStatus.NOT_STARTED, created_at__gte=since)
        .exclude(event__payment_method_token="")
        .order_by("pk")
        .values_list("payment_order_id", flat=True)
    )
    connection.close()  # this thread's Django connection is only for this query; the relay lives on its own
    return ids


class _Outage:
    """A broker outage is logged when it starts and then once a minute, not once per retry."""

    def __init__(self) -> None:
        self.logged_at: float | None = None

    def failed(self, waiting: int) -> None:
        if self.logged_at is None or time.monotonic() - self.logged_at > 60:
            self.logged_at = time.monotonic()
            logger.warning("execution relay cannot reach the broker; %d orders wait to be queued", waiting)

    def ended(self) -> None:
        if self.logged_at is not None:
            self.logged_at = None
            logger.info("execution relay reaches the broker again")


def _publish(pending: deque[str], outage: _Outage) -> None:
    """Queue an executor for every order waiting, a batch of them per round trip to the broker: a publish of its own
    per order cost the relay a Redis client and a round trip each, most of its time at a hundred orders a second.

    A batch leaves ``pending`` only once the broker took all of it. A batch that fails part way (its commands are
    sent together, not as a transaction) is published again whole: a duplicate costs one executor run that finds
    the order already moving and does nothing.
    """
    from payments.tasks import order_execute

    while pending:
        batch = list(itertools.islice(pending, PUBLISH_BATCH))
        try:
            with order_execute.app.producer_or_acquire() as producer, producer.batch(max_size=2 * PUBLISH_BATCH):
                for item in batch:
                    # "<payment_order_id> <request_id>" from a notification (payments/services.py), a bare id from a
                    # catch-up.
                    payment_order_id, _, request_id = item.partition(" ")
                    with context.bound(request_id=request_id, payment_order_id=payment_order_id):
                        order_execute.apply_async((payment_order_id,), retry=False, producer=producer)
        except Exception:
            outage.failed(len(pending))
            return
        outage.ended()
        for _ in batch:
            pending.popleft()
