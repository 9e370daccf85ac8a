"""Signed webhook delivery, Stripe's way (docs.stripe.com/webhooks).

Each event gets one ``WebhookDelivery`` row for the endpoint configured when it happened, written in the event's
transaction. The delivery loop (psp_sandbox/loop.py, a thread in every sandbox worker; or ``manage.py
sandbox_deliver``) claims due rows with ``SELECT … FOR UPDATE SKIP LOCKED`` and moves their next attempt a lease into
the future before committing, so several threads and processes deliver side by side and never send one row twice
(unless the duplicate fault says so); a process that dies mid-send leaves its rows to be retried once the lease runs
out: at least once, as at Stripe. Sends are POSTs of the event's JSON with ``Stripe-Signature:
t={unix},v1={HMAC-SHA256(secret, f"{t}.{body}")}``, which ``stripe.Webhook.construct_event`` accepts, made
concurrently over pooled keep-alive connections. A non-2xx answer or a connection failure is retried with exponential
backoff (base, doubling, capped) until the last attempt, after which the row is ``failed``.

Webhook faults are decided when the row is scheduled (psp_sandbox/faults.py): drop (``dropped``, never sent),
duplicate (sent twice), delay (its first attempt postponed), reorder (held back until a later delivery to the same
endpoint has been attempted, so that it arrives after it).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import urllib3
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from psp_sandbox import faults, knobs
from psp_sandbox.inserts import insert
from psp_sandbox.models import Event, WebhookDelivery
from psp_sandbox.objects import event_object

logger = logging.getLogger(__name__)

DEFAULT_SECRET = "whsec_sandbox"  # noqa: S105 - the sandbox's well-known test secret, as README.md says
# How long a claimed row is left alone: longer than one send can take (connect + read timeout, twice if duplicated).
LEASE = timedelta(seconds=60)
SEND_TIMEOUT = urllib3.Timeout(connect=3.0, read=10.0)
BATCH_SIZE = 32
SENDERS = 16
# A held (reordered) delivery goes out at the latest after this many hold periods, whatever else happens.
REORDER_MAX_HOLDS = 10
USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"

# Set when a transaction of this process that queued a delivery has committed: the delivery loop of this process
# (psp_sandbox/loop.py) goes at once instead of at its next poll.
queued = threading.Event()


def secret() -> str:
    return getattr(settings, "STRIPE_WEBHOOK_SECRET", "") or DEFAULT_SECRET


def signature_header(payload: str, *, secret: str, timestamp: int) -> str:
    """Stripe's scheme v1: HMAC-SHA256 over ``"{timestamp}.{payload}"`` with the endpoint's secret, hex."""
    digest = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def delivery_schedule(event: Event, config: knobs.Config) -> WebhookDelivery | None:
    """Queue ``event`` for the configured endpoint, with the webhook faults that strike it. In the event's
    transaction."""
    if not config.webhook_url:
        return None

    def strikes(kind: str, rate: float) -> bool:
        return faults.fires(rate, seed=config.fault_seed, kind=kind, identity=event.fault_identity)

    dropped = strikes("webhook_drop", config.webhook_drop_rate)
    if not dropped:
        transaction.on_commit(queued.set)
    return insert(
        WebhookDelivery(
            event=event,
            endpoint_url=config.webhook_url,
            ordering_key=ordering_key(event.data.get("object", {})),
            status=WebhookDelivery.Status.DROPPED if dropped else WebhookDelivery.Status.PENDING,
            next_attempt_at=event.created + timedelta(milliseconds=config.webhook_delay_ms),
            last_error="dropped by SANDBOX_WEBHOOK_DROP_RATE" if dropped else "",
            reordered=not dropped and strikes("webhook_reorder", config.webhook_reorder_rate),
            duplicate=not dropped and strikes("webhook_duplicate", config.webhook_duplicate_rate),
            created=event.created,
        )
    )


def ordering_key(obj: dict[str, object]) -> str:
    """The payment an object belongs to (its PaymentIntent: the intent itself, its session, charge, refunds and
    disputes), else the object itself (a transfer)."""
    intent = obj.get("payment_intent")
    if isinstance(intent, str):
        return intent[:80]
    if isinstance(intent, dict) and isinstance(intent.get("id"), str):
        return str(intent["id"])[:80]
    return str(obj.get("id", ""))[:80]


@dataclass(frozen=True)
class SendResult:
    status: int | None
    error: str

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def deliver_due(config: knobs.Config, *, limit: int = BATCH_SIZE) -> int:
    """Claim up to ``limit`` due deliveries, send them concurrently, record each outcome. Returns how many were
    attempted (a full batch tells the loop to come back at once)."""
    claimed, events = _claim(config, limit=limit)
    if not claimed:
        return 0
    key = secret()
    chains = _chains(claimed, events)
    results: dict[int, SendResult] = {}

    def send_chain(chain: list[WebhookDelivery]) -> None:
        for delivery in chain:
            results[delivery.id] = _send_all(delivery, _payload(events[delivery.event_id]), key)

    if len(chains) == 1:
        send_chain(chains[0])  # nothing to overlap: no hand-over to the sender threads
    else:
        list(_executor().map(send_chain, chains))
    now = timezone.now()
    for delivery in claimed:
        _record(delivery, results[delivery.id], config, now=now)
    _save_outcomes(claimed)
    return len(claimed)


def _chains(claimed: list[WebhookDelivery], events: dict[str, Event]) -> list[list[WebhookDelivery]]:
    """Split a batch into chains sent concurrently, each in creation order: deliveries to one endpoint of events
    written by one transaction, or about one payment (the object, its intent, its charge), share a chain, so that
    they arrive in the order they happened (an intent's ``payment_intent.succeeded`` before its session's
    ``checkout.session.completed``, a charge before its refund). Batches claimed by two workers at the same moment
    are not ordered against each other: order is kept roughly, as at Stripe, not promised."""
    parent = list(range(len(claimed)))

    def root(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    first_of: dict[tuple[str, str], int] = {}
    for index, delivery in enumerate(claimed):
        event = events[delivery.event_id]
        obj = event.data.get("object", {})
        related = {obj.get(name) for name in ("id", "payment_intent", "charge", "latest_charge")}
        links = [f"txn:{event.transaction_id}", *(f"object:{value}" for value in related if isinstance(value, str))]
        for link in links:
            other = first_of.setdefault((delivery.endpoint_url, link), index)
            parent[root(index)] = root(other)
    chains: dict[int, list[WebhookDelivery]] = {}
    for index, delivery in enumerate(claimed):
        chains.setdefault(root(index), []).append(delivery)
    return list(chains.values())


def backoff(attempts: int, config: knobs.Config) -> timedelta:
    """Wait after the ``attempts``-th failure: base, doubling each time, capped."""
    seconds = min(config.webhook_retry_cap_seconds, config.webhook_retry_base_seconds * 2 ** max(attempts - 1, 0))
    return timedelta(seconds=seconds)


# The columns a claim reads back: the delivery's, then its event's.
_DELIVERY_COLUMNS = (
    "id", "event_id", "endpoint_url", "ordering_key", "status", "attempts", "next_attempt_at", "last_status",
    "last_error", "delivered_at", "reordered", "duplicate", "created",
)  # fmt: skip
_EVENT_COLUMNS = (
    "id", "type", "api_version", "data", "request_id", "idempotency_key", "fault_identity", "transaction_id", "created",
)  # fmt: skip

# One statement, in its own transaction: lock the due rows that nobody else holds (SKIP LOCKED), move their next
# attempt a lease into the future, and read them back. It touches this one table only, so it can never deadlock with
# a statement that locks several (a TRUNCATE between tests, while the loop keeps polling).
#
# Due: pending and next_attempt_at has come; and released when reordered (held until a later delivery to the same
# endpoint has been attempted, so this one arrives after it, or, when none has come for a hold period, let go; never
# held longer than REORDER_MAX_HOLDS periods); and not before an earlier delivery about the same payment has had its
# first attempt (a held, reordered one aside): one payment's events arrive in order even when two workers claim
# batches at the same moment. That last test is a lookup per due delivery in the (ordering_key, id) index, kept one
# by OFFSET 0 (PostgreSQL does not turn such a subquery into a join): as an anti-join, planned from statistics that
# lag behind a growing backlog, it compared every due delivery with every other waiting one, two seconds a claim at
# 600 waiting, and the backlog grew on.
_CLAIM_SQL = f"""
WITH due AS (
    SELECT d.id FROM psp_sandbox_webhookdelivery AS d
    WHERE d.status = 'pending' AND d.next_attempt_at <= %(now)s
      AND (
        NOT d.reordered
        OR d.attempts > 0
        OR EXISTS (
            SELECT 1 FROM psp_sandbox_webhookdelivery AS later
            WHERE later.endpoint_url = d.endpoint_url AND later.id > d.id
              AND (later.attempts > 0 OR later.status <> 'pending')
        )
        OR (
            NOT EXISTS (
                SELECT 1 FROM psp_sandbox_webhookdelivery AS later
                WHERE later.endpoint_url = d.endpoint_url AND later.id > d.id
            )
            AND d.created <= %(hold_since)s
        )
        OR d.created <= %(max_hold_since)s
      )
      AND NOT EXISTS (
        SELECT 1 FROM psp_sandbox_webhookdelivery AS earlier
        WHERE earlier.endpoint_url = d.endpoint_url AND earlier.ordering_key = d.ordering_key
          AND earlier.id < d.id AND earlier.status = 'pending' AND earlier.attempts = 0 AND NOT earlier.reordered
        OFFSET 0
      )
    ORDER BY d.id
    LIMIT %(limit)s
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE psp_sandbox_webhookdelivery AS leased SET next_attempt_at = %(lease_until)s
FROM due WHERE leased.id = due.id
RETURNING {", ".join(f"leased.{column}" for column in _DELIVERY_COLUMNS)}
"""  # noqa: S608 - only the constant column names above are formatted in
_EVENTS_SQL = f"SELECT {', '.join(_EVENT_COLUMNS)} FROM psp_sandbox_event WHERE id = ANY(%s)"  # noqa: S608 - same


def _claim(config: knobs.Config, *, limit: int) -> tuple[list[WebhookDelivery], dict[str, Event]]:
    """The due deliveries claimed under a lease, in creation order, and their events by id."""
    now = timezone.now()
    hold = timedelta(milliseconds=config.webhook_reorder_hold_ms)
    params: dict[str, Any] = {
        "lease_until": now + LEASE,
        "now": now,
        "hold_since": now - hold,
        "max_hold_since": now - hold * REORDER_MAX_HOLDS,
        "limit": limit,
    }
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_SQL, params)
        rows = cursor.fetchall()
        if not rows:
            return [], {}
        deliveries = []
        for row in sorted(rows):  # by id: creation order
            delivery = WebhookDelivery(**dict(zip(_DELIVERY_COLUMNS, row, strict=True)))
            delivery._state.adding = False
            deliveries.append(delivery)
        cursor.execute(_EVENTS_SQL, [list({delivery.event_id for delivery in deliveries})])
        event_rows = cursor.fetchall()
    events: dict[str, Event] = {}
    for event_row in event_rows:
        values = dict(zip(_EVENT_COLUMNS, event_row, strict=True))
        if isinstance(values["data"], str | bytes):
            values["data"] = json.loads(values["data"])
        event = Event(**values)
        event._state.adding = False
        events[event.id] = event
    return deliveries, events


# Every attempt's outcome in one statement (its own transaction): the rows are ours under the lease.
_SAVE_OUTCOMES_SQL = """
UPDATE psp_sandbox_webhookdelivery AS d
SET status = outcome.status, attempts = outcome.attempts, last_status = outcome.last_status,
    last_error = outcome.last_error, delivered_at = outcome.delivered_at, next_attempt_at = outcome.next_attempt_at
FROM (VALUES {rows}) AS outcome (id, status, attempts, last_status, last_error, delivered_at, next_attempt_at)
WHERE d.id = outcome.id
"""
_OUTCOME_ROW = "(%s::bigint, %s::varchar, %s::integer, %s::smallint, %s::text, %s::timestamptz, %s::timestamptz)"


def _save_outcomes(deliveries: list[WebhookDelivery]) -> None:
    params: list[Any] = []
    for delivery in deliveries:
        params += [
            delivery.id,
            delivery.status,
            delivery.attempts,
            delivery.last_status,
            delivery.last_error,
            delivery.delivered_at,
            delivery.next_attempt_at,
        ]
    with connection.cursor() as cursor:
        cursor.execute(_SAVE_OUTCOMES_SQL.format(rows=", ".join([_OUTCOME_ROW] * len(deliveries))), params)


def _payload(event: Event) -> str:
    # The delivery under way is the one pending webhook of its event (one endpoint per event).
    return json.dumps(event_object(event, pending_webhooks=1), indent=2)


def _send_all(delivery: WebhookDelivery, payload: str, key: str) -> SendResult:
    result = _send(delivery.endpoint_url, payload, key)
    if result.ok and delivery.duplicate:
        _send(delivery.endpoint_url, payload, key)  # the duplicate fault: the endpoint sees the event twice
    return result


def _send(url: str, payload: str, key: str) -> SendResult:
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": USER_AGENT,
        "Stripe-Signature": signature_header(payload, secret=key, timestamp=int(time.time())),
    }
    try:
        response = _pool().request(
            "POST", url, body=payload.encode(), headers=headers, timeout=SEND_TIMEOUT, retries=False, redirect=False
        )
    except Exception as exc:  # any failure to send is a failed attempt, retried; never a lost batch
        return SendResult(None, f"{type(exc).__name__}: {exc}"[:500])
    if 200 <= response.status < 300:
        return SendResult(response.status, "")
    return SendResult(response.status, response.data[:200].decode(errors="replace"))


def _record(delivery: WebhookDelivery, result: SendResult, config: knobs.Config, *, now: datetime) -> None:
    delivery.attempts += 1
    delivery.last_status = result.status
    delivery.last_error = result.error
    if result.ok:
        delivery.status = WebhookDelivery.Status.DELIVERED
        delivery.delivered_at = now
        delivery.next_attempt_at = now
    elif delivery.attempts >= config.webhook_max_attempts:
        delivery.status = WebhookDelivery.Status.FAILED
        delivery.next_attempt_at = now
        logger.warning(
            "webhook %s to %s given up after %s attempts", delivery.event_id, delivery.endpoint_url, delivery.attempts
        )
    else:
        delivery.next_attempt_at = now + backoff(delivery.attempts, config)


_shared_lock = threading.Lock()
_shared: dict[str, object] = {}


def _pool() -> urllib3.PoolManager:
    # One pool per process: keep-alive connections to the endpoint, shared by the sender threads (thread-safe).
    with _shared_lock:
        pool = _shared.get("pool")
        if pool is None:
            pool = _shared["pool"] = urllib3.PoolManager(num_pools=8, maxsize=SENDERS)
    assert isinstance(pool, urllib3.PoolManager)
    return pool


def _executor() -> ThreadPoolExecutor:
    with _shared_lock:
        executor = _shared.get("executor")
        if executor is None:
            executor = _shared["executor"] = ThreadPoolExecutor(SENDERS, thread_name_prefix="psp-sandbox-webhook")
    assert isinstance(executor, ThreadPoolExecutor)
    return executor
