"""Idempotent POSTs with Stripe's v1 semantics (docs.stripe.com/api/idempotent_requests):

- same API key + ``Idempotency-Key`` + same endpoint and parameters → the first response again, status and body,
  with ``Idempotent-Replayed: true``;
- same key, other parameters or another endpoint → 400 ``idempotency_error``;
- same key while the first request is still running → 409 ``idempotency_error`` / ``idempotency_key_in_use``;
- a result is saved only once the endpoint started executing: a request refused by validation (400) saves nothing,
  while a card decline (402) is saved and replayed like a success;
- keys live 24 hours; after that the same key is a new request.

The race this prevents: two identical requests (a client's retry racing its own first attempt, or twenty threads)
both find no stored response, both charge the card, both store one. Here the whole request, the stored response
and the objects it created run in ONE transaction that starts by taking a transaction-scoped advisory lock on
(API key, idempotency key). Whoever gets the lock runs; a concurrent duplicate does not wait for it (a client would
time out) but answers 409 at once, as Stripe does; once the first commits, the lock is gone and its stored row is
visible, so every later duplicate replays it. A crash rolls back the charge and the key together: nothing is ever left
"in progress". The unique constraint on (API key, key) is the last word if two ever got past the lock.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from psp_sandbox import context
from psp_sandbox.errors import IdempotencyError, IdempotencyKeyInUse, InvalidRequest
from psp_sandbox.inserts import insert
from psp_sandbox.models import IdempotencyKey

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
KEY_LIFETIME = timedelta(hours=24)


@dataclass(frozen=True)
class Outcome:
    status: int
    body: str
    replayed: bool = False


# Returns (status, body) to be saved and answered; raising a StripeError means "refused before execution began":
# everything rolls back and nothing is saved, so the caller may fix the request and retry with the same key.
Handler = Callable[[], tuple[int, dict[str, Any]]]


def api_key_digest(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def lock_id(api_key: str, key: str) -> int:
    """The advisory lock that marks (API key, idempotency key) as in flight: 64 bits of a hash."""
    digest = hashlib.sha256(f"psp_sandbox:idempotency:{api_key_digest(api_key)}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def fingerprint(params: dict[str, Any]) -> str:
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def run_post(
    *, api_key: str, key: str | None, method: str, path: str, params: dict[str, Any], handler: Handler
) -> Outcome:
    """Run ``handler`` in its own transaction, at most once per (API key, idempotency key)."""
    if key is None:
        with transaction.atomic(durable=True):
            status, body = handler()
        return Outcome(status, _render(body))
    _check_key(key)
    digest = api_key_digest(api_key)
    request_fingerprint = fingerprint(params)
    request = context.current()
    try:
        with transaction.atomic(durable=True):
            with connection.cursor() as cursor:
                # Lock first, then read: the SELECT's snapshot must be taken after the lock is ours, or it could miss
                # the row of a first request that committed (and let go of the lock) while this one was starting.
                # The transaction's id comes along for the events the request writes (psp_sandbox/events.py).
                cursor.execute("SELECT pg_try_advisory_xact_lock(%s), txid_current()", [lock_id(api_key, key)])
                locked_value, transaction_id = cursor.fetchone()
                locked = bool(locked_value)
            if request is not None:
                request.transaction_id = int(transaction_id)
            stored = _stored(digest, key)
            if stored is not None and stored.expires_at <= timezone.now():
                # Past its lifetime the key means nothing; whoever holds its lock removes it, so that races nobody.
                if locked:
                    stored.delete()
                stored = None
            if stored is not None:
                return _replay(stored, key=key, method=method, path=path, request_fingerprint=request_fingerprint)
            if not locked:
                raise IdempotencyKeyInUse(key)
            status, body = handler()
            rendered = _render(body)
            insert(
                IdempotencyKey(
                    api_key_digest=digest,
                    key=key,
                    request_method=method,
                    request_path=path[:255],
                    request_fingerprint=request_fingerprint,
                    response_status=status,
                    response_body=rendered,
                    expires_at=timezone.now() + KEY_LIFETIME,
                )
            )
    except IntegrityError as exc:
        # Only the unique key row can clash here: another request with this key committed first. Everything this
        # one did, its charge included, has been rolled back.
        raise IdempotencyKeyInUse(key) from exc
    finally:
        if request is not None:
            request.transaction_id = None
    return Outcome(status, rendered)


# The stored response of a key, if any: on every keyed POST, so a plain statement rather than one the ORM compiles.
_STORED_COLUMNS = (
    "id", "api_key_digest", "key", "request_method", "request_path", "request_fingerprint", "response_status",
    "response_body", "created", "expires_at",
)  # fmt: skip
_STORED_SQL = (
    f"SELECT {', '.join(_STORED_COLUMNS)} FROM psp_sandbox_idempotencykey "  # noqa: S608 - constant column names
    "WHERE api_key_digest = %s AND key = %s"
)


def _stored(digest: str, key: str) -> IdempotencyKey | None:
    with connection.cursor() as cursor:
        cursor.execute(_STORED_SQL, [digest, key])
        row = cursor.fetchone()
    if row is None:
        return None
    stored = IdempotencyKey(**dict(zip(_STORED_COLUMNS, row, strict=True)))
    stored._state.adding = False
    stored._state.db = connection.alias
    return stored


def idempotency_keys_purge(*, batch_size: int = 5000) -> int:
    """Delete expired keys in small batches (short transactions). Returns how many went."""
    deleted = 0
    while True:
        ids = list(
            IdempotencyKey.objects.filter(expires_at__lte=timezone.now()).values_list("pk", flat=True)[:batch_size]
        )
        if not ids:
            return deleted
        deleted += IdempotencyKey.objects.filter(pk__in=ids).delete()[0]


def _replay(stored: IdempotencyKey, *, key: str, method: str, path: str, request_fingerprint: str) -> Outcome:
    if stored.request_method != method or stored.request_path != path:
        raise IdempotencyError(
            "Keys for idempotent requests can only be used for the same endpoint they were first used for "
            f"('{stored.request_method} {stored.request_path}' vs '{method} {path}'). "
            f"Try using a key other than '{key}' if you meant to execute a different request."
        )
    if stored.request_fingerprint != request_fingerprint:
        raise IdempotencyError(
            "Keys for idempotent requests can only be used with the same parameters they were first used with. "
            f"Try using a key other than '{key}' if you meant to execute a different request."
        )
    return Outcome(stored.response_status, stored.response_body, replayed=True)


def _check_key(key: str) -> None:
    if not key.strip() or len(key) > MAX_KEY_LENGTH or not all(" " <= char <= "~" for char in key):
        raise InvalidRequest(
            f"Invalid idempotency key: at most {MAX_KEY_LENGTH} printable ASCII characters, not blank.",
            param=HEADER,
        )


def _render(body: dict[str, Any]) -> str:
    # Rendered once and stored as text, so the first answer and every replay are the same bytes.
    return json.dumps(body, indent=2)
