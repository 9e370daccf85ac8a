"""Idempotent POSTs with Stripe's semantics (DESIGN.md "Exactly once").

- same client + key + same request → the first response's status and body again, marked ``Idempotent-Replayed``;
- same key, other request → 422 ``idempotency_key_reused``;
- same key while the first request still runs → 409 ``idempotency_key_in_use``;
- a refused request stores nothing, so the client may fix it and retry with the same key.

The whole request runs in one transaction that also writes the key's row, so a stored response and the objects it
describes commit together or not at all: no row is ever left "in progress" by a crashed worker. A transaction-scoped
advisory lock on the (client, key) pair tells a concurrent duplicate that the first is still running without making
it wait. New keys are the common case, so the work runs without first looking for a stored answer: a repeat reveals
itself by its own conflict (its payment_order_ids are taken) or when its answer cannot be stored because a live one
is; its work is then rolled back and the stored answer is returned. The unique (client, key) index decides.

An endpoint whose work is one statement, and whose answer is known before that statement runs, may claim the key in
that statement instead (``KeyClaim``, ``claims_in_handler=True``): the statement takes the lock first and stores the
answer with the rows it writes, and is a transaction of its own, so the request makes one round trip where it would
make five (BEGIN, lock, work, answer, COMMIT). The rules above are the same; only where they run changes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from django.conf import settings
from django.db import connection, transaction
from django.http import HttpResponse
from django.utils import timezone
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from api.authentication import client_of
from api.carddata import contains_card_number
from api.errors import ApiError, CardDataNotAllowed, Conflict, InvalidInput, Unprocessable
from api.events import card_data_refused
from api.models import IdempotencyKey

HEADER = "Idempotency-Key"
REPLAY_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255


def idempotent_post(
    request: Request, handler: Callable[..., Response | None], *, claims_in_handler: bool = False
) -> HttpResponse:
    """Run ``handler`` at most once per (client, Idempotency-Key); replay its stored response afterwards.

    ``handler`` runs inside the transaction opened here (unless it claims the key, below), so the services it calls
    join it (they open nested, non-durable blocks). It returns a 2xx response or raises an ``ApiError``; raising
    rolls everything back. With ``claims_in_handler``, it is called with a ``KeyClaim`` that its statement must
    settle (see ``KeyClaim``) and returns nothing: no transaction is opened here (that statement is one of its own),
    and the response is the answer it stored.
    """
    client = client_of(request)
    key = _read_key(request)
    fingerprint = _fingerprint(request)
    claim = KeyClaim(client.pk, key, fingerprint, request.path[:255]) if claims_in_handler else None
    try:
        # A claimed handler's one statement is its own transaction (see KeyClaim); the others run in this one.
        with (
            contextlib.nullcontext() if claim is not None else transaction.atomic(durable=True),
            connection.cursor() as cursor,
        ):
            if claim is None:
                cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [lock_id(client.pk, key)])
                if not cursor.fetchone()[0]:
                    # Someone holds the key: a first request still running, or one that finished a moment ago.
                    return _answer_for_held_key(cursor, client.pk, key, fingerprint)
            # The common case is a new key, so the work runs without looking for a stored answer first. A repeat
            # shows itself below: as a conflict of its own (its payment_order_ids are taken), or when its answer
            # cannot be stored because one already is. Its work is then rolled back and the stored answer wins.
            if claim is not None:
                handler(claim)
                body, status = claim.stored_body(), claim.status
            else:
                response = handler()
                if response is None:
                    raise RuntimeError("a handler answers, unless it claims the key")
                if not 200 <= response.status_code < 300:
                    # Only a success is remembered; anything else must leave no trace, so a retry starts afresh.
                    transaction.set_rollback(True)
                    return response
                status = response.status_code
                # Rendered here and stored as text, so the first answer and every replay are the same bytes.
                body = JSONRenderer().render(response.data).decode()
                cursor.execute(
                    _INSERT_STORED,
                    [
                        client.pk,
                        key,
                        fingerprint,
                        request.path[:255],
                        status,
                        body,
                        settings.IDEMPOTENCY_KEY_TTL_HOURS,
                    ],
                )
                if cursor.fetchone() is None:
                    raise _AlreadyAnswered
    except _KeyHeld:
        # In a statement of its own: its snapshot sees a first request that committed meanwhile.
        with connection.cursor() as cursor:
            return _answer_for_held_key(cursor, client.pk, key, fingerprint)
    except (ApiError, ValidationError, _AlreadyAnswered) as exc:
        # Outside the rolled-back transaction: a stored answer for this key, committed by an earlier request.
        stored = _live_stored(client.pk, key)
        if stored is None:
            raise
        if isinstance(exc, ApiError):
            exc.after_refusal(request)  # what a refusal records stays true, even when the repeat gets its answer
        return _replay(fingerprint, *stored)
    return _json_response(body, status)


@dataclass
class KeyClaim:
    """The request's Idempotency-Key, for a handler whose one statement claims it (``claims_in_handler``).

    The handler renders its answer first (``answer``), then runs its statement with ``lock_sql()`` as its first
    common table expression, guarding every write with ``held``, and with ``store_sql(source)`` storing the answer
    when ``source`` (the CTE whose row is the handler's work) holds a row; ``params()`` gives their parameters. It
    then hands the statement's two facts to ``settle``: whether the lock was taken, and the stored row's id.

    The statement is a transaction of its own (no BEGIN, no COMMIT: a round trip each, and on a busy machine a wait
    each), so it must never commit half a job: every conflict makes it fail. The answer's INSERT fails on the key's
    unique index when the key has a row already; the handler then calls ``conflict``, which tells a live answer
    (the request is a repeat) from an expired one, whose row it deletes so that the handler can run again.
    """

    client_id: int
    key: str
    fingerprint: str
    path: str
    status: int = 201
    _body: str | None = field(default=None, init=False, repr=False)
    _settled: bool = field(default=False, init=False, repr=False)

    def answer(self, data: Any, *, status: int = 201) -> str:
        """Render the answer the statement will store, and the response will carry: the same bytes in both."""
        self.status = status
        self._body = JSONRenderer().render(data).decode()
        return self._body

    @staticmethod
    def lock_sql() -> str:
        return "claim AS (SELECT pg_try_advisory_xact_lock(%(claim_lock)s::bigint) AS held)"

    @staticmethod
    def store_sql(source: str) -> str:
        return f"answer AS ({_INSERT_CLAIMED.format(source=source)})"

    def conflict(self) -> None:
        """The answer could not be stored: the key had a row. Raise if that answer is live. Return if it had
        expired (its row is deleted here) or is gone already (the purge, or another retry with this key, came
        first): the handler then runs its statement again."""
        with connection.cursor() as cursor:
            cursor.execute(_DELETE_EXPIRED, [self.client_id, self.key])
            if cursor.rowcount == 0 and _live_stored(self.client_id, self.key) is not None:
                raise _AlreadyAnswered

    def busy(self) -> NoReturn:
        """The statement kept meeting a row for this key that others were replacing: as if the lock were held."""
        raise _KeyHeld

    def params(self) -> dict[str, Any]:
        if self._body is None:
            raise RuntimeError("KeyClaim.answer() renders the answer before the statement that stores it")
        return {
            "claim_lock": lock_id(self.client_id, self.key),
            "claim_client": self.client_id,
            "claim_key": self.key,
            "claim_fingerprint": self.fingerprint,
            "claim_path": self.path,
            "claim_status": self.status,
            "claim_body": self._body,
            "claim_ttl": settings.IDEMPOTENCY_KEY_TTL_HOURS,
        }

    def settle(self, *, held: bool, stored_id: int | None) -> None:
        """Raise what the statement's outcome means; return when it took the key and stored the answer."""
        if not held:
            raise _KeyHeld  # nothing was written: every write was guarded by the lock
        if stored_id is None:
            raise _AlreadyAnswered
        self._settled = True

    def stored_body(self) -> str:
        if not self._settled or self._body is None:
            raise RuntimeError("a handler that claims the key must store its answer and settle the claim")
        return self._body


class _KeyHeld(Exception):
    """The claiming statement could not take the key's lock: another request with this key is running or just was."""


class _AlreadyAnswered(Exception):
    """This key's answer is stored already: the request was a repeat, and its own work must be undone."""


def _answer_for_held_key(cursor: Any, client_id: int, key: str, fingerprint: str) -> HttpResponse:
    # A separate statement after the lock attempt: its snapshot sees a first request that committed meanwhile.
    cursor.execute(_SELECT_LIVE, [client_id, key])
    stored = cursor.fetchone()
    if stored is not None:
        return _replay(fingerprint, *stored)
    raise Conflict(
        "A request with this Idempotency-Key is still being processed. Retry after it finishes.",
        code="idempotency_key_in_use",
        field=HEADER,
    )


def _live_stored(client_id: int, key: str) -> tuple[str, int, str] | None:
    with connection.cursor() as cursor:
        cursor.execute(_SELECT_LIVE, [client_id, key])
        row = cursor.fetchone()
    return None if row is None else (row[0], row[1], row[2])


# Raw statements: this runs on every POST, and the ORM's query building cost more than the queries themselves.
_SELECT_LIVE = (
    "SELECT request_fingerprint, response_status, response_body FROM api_idempotencykey"
    " WHERE client_id = %s AND key = %s AND expires_at > now()"
)
# A key past its lifetime means nothing: its row is replaced. A live one stays, and the INSERT returns no row.
_INSERT_STORED = (
    "INSERT INTO api_idempotencykey"
    " (client_id, key, request_fingerprint, request_path, response_status, response_body, expires_at)"
    " VALUES (%s, %s, %s, %s, %s, %s, now() + make_interval(hours => %s))"
    " ON CONFLICT (client_id, key) DO UPDATE SET"
    " request_fingerprint = EXCLUDED.request_fingerprint, request_path = EXCLUDED.request_path,"
    " response_status = EXCLUDED.response_status, response_body = EXCLUDED.response_body,"
    " created_at = now(), expires_at = EXCLUDED.expires_at"
    " WHERE api_idempotencykey.expires_at <= now()"
    " RETURNING id"
)
# No ON CONFLICT: a claiming statement commits by itself, so a key that has a row must make it fail (KeyClaim).
# Typed: in INSERT ... SELECT, unlike VALUES, PostgreSQL does not take a parameter's type from its column.
_INSERT_CLAIMED = (
    "INSERT INTO api_idempotencykey"
    " (client_id, key, request_fingerprint, request_path, response_status, response_body, expires_at)"
    " SELECT %(claim_client)s::bigint, %(claim_key)s::varchar, %(claim_fingerprint)s::varchar,"
    " %(claim_path)s::varchar, %(claim_status)s::smallint, %(claim_body)s::text,"
    " now() + make_interval(hours => %(claim_ttl)s::integer)"
    " FROM {source}"
    " RETURNING id"
)
_DELETE_EXPIRED = "DELETE FROM api_idempotencykey WHERE client_id = %s AND key = %s AND expires_at <= now()"
# The unique index a claiming statement's answer fails on when the key has a row.
KEY_CONSTRAINT = "idempotency_key_unique_per_client"


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
    if contains_card_number(key):
        # The key is stored with the answer: a card number here would be kept for a day.
        card_data_refused(request, HEADER)
        raise CardDataNotAllowed(field=HEADER)
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
