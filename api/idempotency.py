"""Idempotent POSTs with Stripe's semantics (DESIGN.md "Exactly once").

- same client + key + same request → the first response's status and body again, marked ``Idempotent-Replayed``;
- same key, other request → 422 ``idempotency_key_reused``;
- same key while the first request still runs → 409 ``idempotency_key_in_use``;
- a refused request stores nothing, so the client may fix it and retry with the same key.

The whole request runs in one transaction that also writes the key's row, so a stored response and the objects it
describes commit together or not at all: no row is ever left "in progress" by a crashed worker. A transaction-scoped
advisory lock on the (client, key) pair tells a concurrent duplicate that the first is still running without making
it wait; the unique constraint on the row stays the last word if two ever slipped past the lock.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.http import HttpResponse
from django.utils import timezone
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from api.authentication import client_of
from api.errors import Conflict, InvalidInput, Unprocessable
from api.models import IdempotencyKey

HEADER = "Idempotency-Key"
REPLAY_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255


def idempotent_post(request: Request, handler: Callable[[], Response]) -> HttpResponse:
    """Run ``handler`` at most once per (client, Idempotency-Key); replay its stored response afterwards.

    ``handler`` runs inside the transaction opened here, so the services it calls join it (they open nested,
    non-durable blocks). It returns a 2xx response or raises an ``ApiError``; raising rolls everything back.
    """
    client = client_of(request)
    key = _read_key(request)
    fingerprint = _fingerprint(request)
    with transaction.atomic(durable=True), connection.cursor() as cursor:
        # Two statements, in this order: the SELECT must take its snapshot after the lock is ours, or it could miss
        # the row of a first request that committed (and let go of the lock) while the statement was starting.
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [lock_id(client.pk, key)])
        locked = bool(cursor.fetchone()[0])
        cursor.execute(_SELECT_STORED, [client.pk, key])
        stored = cursor.fetchone()
        if stored is not None and stored[3] <= timezone.now():
            # Past its lifetime the key means nothing. Whoever holds its lock removes it, so that races with nobody.
            if locked:
                cursor.execute(_DELETE_STORED, [client.pk, key])
            stored = None
        if stored is not None:
            return _replay(fingerprint, *stored[:3])
        if not locked:
            raise Conflict(
                "A request with this Idempotency-Key is still being processed. Retry after it finishes.",
                code="idempotency_key_in_use",
                field=HEADER,
            )
        response = handler()
        if not 200 <= response.status_code < 300:
            # Only a success is remembered; anything else must leave no trace, so a retry starts afresh.
            transaction.set_rollback(True)
            return response
        # Rendered here and stored as text, so the first answer and every replay are the same bytes.
        body = JSONRenderer().render(response.data).decode()
        cursor.execute(
            _INSERT_STORED,
            [
                client.pk,
                key,
                fingerprint,
                request.path[:255],
                response.status_code,
                body,
                settings.IDEMPOTENCY_KEY_TTL_HOURS,
            ],
        )
    return _json_response(body, response.status_code)


# Raw statements: this runs on every POST, and the ORM's query building cost more than the queries themselves.
_SELECT_STORED = (
    "SELECT request_fingerprint, response_status, response_body, expires_at FROM api_idempotencykey"
    " WHERE client_id = %s AND key = %s"
)
_DELETE_STORED = "DELETE FROM api_idempotencykey WHERE client_id = %s AND key = %s"
_INSERT_STORED = (
    "INSERT INTO api_idempotencykey"
    " (client_id, key, request_fingerprint, request_path, response_status, response_body, expires_at)"
    " VALUES (%s, %s, %s, %s, %s, %s, now() + make_interval(hours => %s))"
)


def idempotency_keys_purge(*, now: Any = None, batch_size: int = 5000) -> int:
    """Delete expired keys in small batches (short transactions, no long lock on the table). Returns the count."""
    now = now or timezone.now()
    deleted = 0
    while True:
        ids = list(IdempotencyKey.objects.filter(expires_at__lte=now).values_list("pk", flat=True)[:batch_size])
        if not ids:
            return deleted
        deleted += IdempotencyKey.objects.filter(pk__in=ids).delete()[0]


def lock_id(client_id: int, key: str) -> int:
    """The advisory lock that marks (client, key) as in flight: 64 bits of a hash, so collisions are negligible."""
    digest = hashlib.sha256(f"idempotency:{client_id}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _read_key(request: Request) -> str:
    key = request.headers.get(HEADER, "")
    if not key.strip():
        raise InvalidInput(
            "Every POST needs an Idempotency-Key header: a unique string per operation, reused on retries.",
            code="idempotency_key_missing",
            field=HEADER,
        )
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(
            f"The Idempotency-Key header is at most {MAX_KEY_LENGTH} characters.",
            code="idempotency_key_too_long",
            field=HEADER,
        )
    if not all(" " <= char <= "~" for char in key):
        raise InvalidInput(
            "The Idempotency-Key header holds printable ASCII characters only.",
            code="idempotency_key_invalid",
            field=HEADER,
        )
    return key


def _fingerprint(request: Request) -> str:
    # Reading request.data parses the body, which runs the card-number guard before anything else sees it.
    canonical = json.dumps(request.data, sort_keys=True, separators=(",", ":"), default=_decimal_marker)
    return hashlib.sha256(f"{request.method} {request.path}\n{canonical}".encode()).hexdigest()


def _decimal_marker(value: Any) -> Any:
    # Parsed numbers are Decimals (api.parsers): keep them distinct from the same digits sent as a string.
    return {"$number": str(value)}


def _replay(fingerprint: str, stored_fingerprint: str, status: int, body: str) -> HttpResponse:
    if stored_fingerprint != fingerprint:
        raise Unprocessable(
            "This Idempotency-Key was already used with a different request. Use a new key for a new operation.",
            code="idempotency_key_reused",
            field=HEADER,
        )
    response = _json_response(body, status)
    response[REPLAY_HEADER] = "true"
    return response


def _json_response(body: str, status: int) -> HttpResponse:
    return HttpResponse(body.encode(), status=status, content_type="application/json")
