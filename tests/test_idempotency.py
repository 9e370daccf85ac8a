from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from api.idempotency import KeyClaim, _AlreadyAnswered, idempotency_keys_purge, lock_id
from api.models import IdempotencyKey
from api.services import IssuedKey, api_client_create
from audit.models import SecurityEvent
from payments.models import PaymentEvent
from tests.conftest import order, payment_body, pg_params, unique, wait_until
from wallets.models import Seller

pytestmark = pytest.mark.django_db


def test_same_key_and_body_replays_the_first_response(post_payment: Callable[..., Any]) -> None:
    # given
    body = payment_body()
    first = post_payment(body, key="key-replay")

    # when
    second = post_payment(body, key="key-replay")

    # then
    assert first.status_code == second.status_code == 201
    assert second.content == first.content
    assert second["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert PaymentEvent.objects.count() == 1


def test_same_body_with_other_whitespace_and_key_order_is_the_same_request(post_payment: Callable[..., Any]) -> None:
    body = payment_body()
    first = post_payment(body, key="key-canonical")
    reordered = dict(reversed(list(body.items())))
    second = post_payment(None, key="key-canonical", raw=("\n" + json.dumps(reordered, indent=2)).encode())
    assert second.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert second.content == first.content


def test_same_key_with_other_body_is_rejected(post_payment: Callable[..., Any]) -> None:
    post_payment(payment_body(), key="key-reused")

    response = post_payment(payment_body(), key="key-reused")

    assert response.status_code == 422
    assert response.json()["error"] == {
        "code": "idempotency_key_reused",
        "message": response.json()["error"]["message"],
        "field": "Idempotency-Key",
    }
    assert PaymentEvent.objects.count() == 1


def test_missing_key_is_refused_and_stores_nothing(
    post_payment: Callable[..., Any], row_counts: Callable[[], dict[str, int]]
) -> None:
    before = row_counts()
    for key in (None, "", "   "):
        response = post_payment(payment_body(), key=key)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "idempotency_key_missing"
        assert response.json()["error"]["field"] == "Idempotency-Key"
    assert row_counts() == before


@pytest.mark.parametrize("key", ["tab\there", "snow\u2603man"])
def test_key_with_characters_other_than_printable_ascii_is_refused(post_payment: Callable[..., Any], key: str) -> None:
    response = post_payment(payment_body(), key=key)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "idempotency_key_invalid"


def test_a_key_holding_a_card_number_is_refused_and_stores_nothing(
    post_payment: Callable[..., Any], row_counts: Callable[[], dict[str, int]]
) -> None:
    before = row_counts()

    response = post_payment(payment_body(), key="order-4111-1111-1111-1111")

    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "card_data_not_allowed",
        "message": "Card numbers are not accepted. Send a payment method token from the PSP instead.",
        "field": "Idempotency-Key",
    }
    assert "4111" not in response.content.decode()
    assert row_counts() == before
    assert SecurityEvent.objects.get(kind="card_data_refused").detail == "in Idempotency-Key"


def test_key_longer_than_255_characters_is_refused(post_payment: Callable[..., Any]) -> None:
    assert post_payment(payment_body(), key="k" * 255).status_code == 201
    response = post_payment(payment_body(), key="k" * 256)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "idempotency_key_too_long"


def test_a_refused_request_stores_nothing_so_the_key_can_be_retried(
    post_payment: Callable[..., Any], row_counts: Callable[[], dict[str, int]]
) -> None:
    # given a request refused by validation
    before = row_counts()
    refused = post_payment(payment_body(payment_orders=[order(amount="1.005")]), key="key-retry")
    assert refused.status_code == 400
    assert row_counts() == before

    # when the client fixes the body and retries with the same key
    accepted = post_payment(payment_body(), key="key-retry")

    # then it is processed as a new request
    assert accepted.status_code == 201
    assert "Idempotent-Replayed" not in accepted


def test_a_conflict_stores_nothing_either(
    post_payment: Callable[..., Any], row_counts: Callable[[], dict[str, int]]
) -> None:
    taken = post_payment(payment_body()).json()["payment_orders"][0]["payment_order_id"]
    before = row_counts()
    conflicting = post_payment(
        payment_body(payment_orders=[order(seller_account="seller_new"), order(payment_order_id=taken)]), key="key-409"
    )
    assert conflicting.status_code == 409
    assert row_counts() == before  # not the event, not the other order, not the new seller, not the key

    fixed = post_payment(payment_body(), key="key-409")

    assert fixed.status_code == 201
    assert "Idempotent-Replayed" not in fixed


@pytest.mark.django_db(transaction=True)
def test_same_key_while_the_first_request_runs_is_409(issued_key: IssuedKey, post_payment: Callable[..., Any]) -> None:
    # given another session holds the key's in-flight lock, as a running first request does
    with psycopg.connect(**pg_params(), autocommit=False) as running:
        running.execute("SELECT pg_advisory_xact_lock(%s)", [lock_id(issued_key.client.pk, "key-busy")])

        # when the same key arrives, naming a seller not seen before
        response = post_payment(payment_body(payment_orders=[order(seller_account="seller_busy")]), key="key-busy")

        # then it is told to come back, and nothing is stored: the payment's statement writes nothing without the
        # key's lock, not even the new seller
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "idempotency_key_in_use"
        assert not IdempotencyKey.objects.filter(key="key-busy").exists()
        assert not PaymentEvent.objects.exists()
        assert not Seller.objects.filter(account="seller_busy").exists()
        running.rollback()

    # and once the first request is over, the key is free
    assert post_payment(payment_body(), key="key-busy").status_code == 201


def test_keys_are_scoped_per_client(
    post_payment: Callable[..., Any], make_api: Callable[[str | None], APIClient]
) -> None:
    other = make_api(api_client_create(name=unique("other")).key)

    mine = post_payment(payment_body(), key="shared-key")
    theirs = post_payment(payment_body(), key="shared-key", client=other)

    assert mine.status_code == theirs.status_code == 201
    assert "Idempotent-Replayed" not in theirs
    assert mine.json()["payment_id"] != theirs.json()["payment_id"]


def test_a_key_expires_after_its_lifetime(post_payment: Callable[..., Any]) -> None:
    # given a key used more than 24 hours ago
    body = payment_body()
    post_payment(body, key="key-old")
    IdempotencyKey.objects.filter(key="key-old").update(expires_at=timezone.now() - timedelta(seconds=1))

    # when it is used again, for a new operation
    response = post_payment(payment_body(), key="key-old")

    # then it is a fresh request
    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    assert PaymentEvent.objects.count() == 2


def test_keys_live_24_hours(post_payment: Callable[..., Any]) -> None:
    post_payment(payment_body(), key="key-ttl")
    stored = IdempotencyKey.objects.get(key="key-ttl")
    assert stored.expires_at - stored.created_at == pytest.approx(timedelta(hours=24), abs=timedelta(seconds=5))


def test_purge_removes_only_expired_keys(post_payment: Callable[..., Any]) -> None:
    for key in ("k-expired-1", "k-expired-2", "k-live"):
        post_payment(payment_body(), key=key)
    IdempotencyKey.objects.filter(key__startswith="k-expired").update(expires_at=timezone.now() - timedelta(hours=1))

    assert idempotency_keys_purge(batch_size=1) == 2

    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["k-live"]


@pytest.mark.django_db(transaction=True)
def test_the_periodic_purge_task_runs_on_a_real_worker(
    celery_worker_app: Any, post_payment: Callable[..., Any]
) -> None:
    # given an expired key and a live one
    post_payment(payment_body(), key="k-task-expired")
    post_payment(payment_body(), key="k-task-live")
    IdempotencyKey.objects.filter(key="k-task-expired").update(expires_at=timezone.now() - timedelta(hours=1))

    # when beat's entry fires (sent by name, through Redis, as beat sends it)
    from config.schedule import BEAT_SCHEDULE

    entry = BEAT_SCHEDULE["purge-expired-idempotency-keys"]
    assert settings.CELERY_TASK_ROUTES[entry["task"]] == {"queue": "maintenance"}  # the Procfile's worker serves it
    celery_worker_app.send_task(entry["task"])  # routed to this run's copy of the queue

    # then the worker deletes the expired key only
    wait_until(lambda: not IdempotencyKey.objects.filter(key="k-task-expired").exists())
    assert IdempotencyKey.objects.filter(key="k-task-live").exists()


def test_the_answer_is_the_stored_payment(post_payment: Callable[..., Any], api: APIClient) -> None:
    # The payment's statement stores the answer rendered before it ran: what it says must be what the rows hold.
    created = post_payment(payment_body(), key="key-answer")

    read = api.get(f"/v1/payments/{created.json()['payment_id']}")

    assert read.json()["created_at"] == created.json()["created_at"]
    assert read.json()["payment_orders"] == created.json()["payment_orders"]
    assert IdempotencyKey.objects.get(key="key-answer").response_body.encode() == created.content


@pytest.mark.django_db(transaction=True)
def test_the_payment_statement_is_prepared_once_per_connection(post_payment: Callable[..., Any]) -> None:
    # given a payment, written by the statement this connection prepared
    first = post_payment(payment_body())
    assert first.status_code == 201
    assert _prepared_payment_statements() == ["payment_insert_claimed"]

    # when a request is rolled back (its payment_order_id is taken), the statement stays prepared
    taken = first.json()["payment_orders"][0]["payment_order_id"]
    assert post_payment(payment_body(payment_orders=[order(payment_order_id=taken)])).status_code == 409
    assert _prepared_payment_statements() == ["payment_insert_claimed"]
    assert post_payment(payment_body()).status_code == 201

    # and a new connection prepares it again
    connection.close()
    again = post_payment(payment_body())
    assert again.status_code == 201
    assert PaymentEvent.objects.filter(payment_id=again.json()["payment_id"]).exists()
    assert _prepared_payment_statements() == ["payment_insert_claimed"]


def _prepared_payment_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements WHERE name LIKE 'payment_insert%' ORDER BY name")
        return [name for (name,) in cursor.fetchall()]


def test_a_claim_is_rendered_before_its_statement_and_settled_before_its_answer_is_sent() -> None:
    claim = KeyClaim(client_id=1, key="k", fingerprint="f", path="/v1/payments")
    with pytest.raises(RuntimeError):
        claim.params()  # nothing to store yet

    claim.answer({"payment_id": "pay_1"})
    assert claim.params()["claim_body"] == '{"payment_id":"pay_1"}'
    with pytest.raises(RuntimeError):
        claim.stored_body()  # rendered, but the statement has not stored it

    claim.settle(held=True, stored_id=7)
    assert claim.stored_body() == '{"payment_id":"pay_1"}'


# Through the API, the payment's statement is a transaction of its own: without a test's surrounding transaction (as
# in production), each conflict must make it fail whole.


@pytest.mark.django_db(transaction=True)
def test_on_its_own_a_refused_payment_stores_nothing(
    post_payment: Callable[..., Any], row_counts: Callable[[], dict[str, int]]
) -> None:
    # given a payment
    first = post_payment(payment_body(), key="key-first")
    taken = first.json()["payment_orders"][0]["payment_order_id"]
    before = row_counts()

    # when one request names its order id (and a new seller), and another reuses its key for another payment
    conflicting = post_payment(
        payment_body(payment_orders=[order(seller_account="seller_new"), order(payment_order_id=taken)]), key="k-409"
    )
    reused = post_payment(payment_body(), key="key-first")

    # then both are refused, and neither wrote a row
    assert conflicting.status_code == 409
    assert conflicting.json()["error"]["code"] == "payment_order_id_taken"
    assert reused.status_code == 422
    assert row_counts() == before


@pytest.mark.django_db(transaction=True)
def test_on_its_own_an_expired_key_is_used_afresh(post_payment: Callable[..., Any]) -> None:
    post_payment(payment_body(), key="key-expired")
    IdempotencyKey.objects.filter(key="key-expired").update(expires_at=timezone.now() - timedelta(seconds=1))

    response = post_payment(payment_body(), key="key-expired")

    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    assert PaymentEvent.objects.count() == 2
    assert IdempotencyKey.objects.get(key="key-expired").response_body.encode() == response.content


@pytest.mark.django_db(transaction=True)
def test_on_its_own_a_repeat_gets_the_first_answer(post_payment: Callable[..., Any]) -> None:
    body = payment_body()
    first = post_payment(body, key="key-again")

    again = post_payment(body, key="key-again")

    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert PaymentEvent.objects.count() == 1


def test_a_claim_meeting_a_row_tells_a_live_answer_from_an_expired_or_vanished_one(
    post_payment: Callable[..., Any], issued_key: IssuedKey
) -> None:
    post_payment(payment_body(), key="key-live")
    post_payment(payment_body(), key="key-stale")
    IdempotencyKey.objects.filter(key="key-stale").update(expires_at=timezone.now() - timedelta(seconds=1))

    def claim(key: str) -> KeyClaim:
        return KeyClaim(client_id=issued_key.client.pk, key=key, fingerprint="f", path="/v1/payments")

    with pytest.raises(_AlreadyAnswered):  # the request is a repeat: its answer is replayed
        claim("key-live").conflict()
    claim("key-stale").conflict()  # expired: deleted, and the statement runs again
    assert not IdempotencyKey.objects.filter(key="key-stale").exists()
    claim("key-gone").conflict()  # deleted meanwhile by someone else: the statement runs again
