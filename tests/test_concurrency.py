"""Many requests at once: 50 threads, each through the whole Django stack on its own PostgreSQL connection."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connection
from rest_framework.response import Response
from rest_framework.test import APIClient

from api.services import IssuedKey
from payments.models import PaymentEvent, PaymentOrder
from tests.conftest import order, payment_body

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 50


def _post_all(key: str, bodies: list[dict[str, Any]], idempotency_keys: list[str]) -> list[Response]:
    barrier = threading.Barrier(len(bodies))

    def post(index: int) -> Response:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        barrier.wait()
        try:
            response: Response = client.post(
                "/v1/payments", data=bodies[index], format="json", HTTP_IDEMPOTENCY_KEY=idempotency_keys[index]
            )
            return response
        finally:
            connection.close()  # each thread opened its own connection

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        return list(pool.map(post, range(len(bodies))))


def test_fifty_posts_with_one_key_and_body_create_exactly_one_payment(issued_key: IssuedKey) -> None:
    # given
    body = payment_body()

    # when 50 clients send the same request with the same key at once
    responses = _post_all(issued_key.key, [body] * THREADS, ["same-key"] * THREADS)

    # then one payment exists, one response created it and the rest replayed it or were told to retry
    statuses = Counter(response.status_code for response in responses)
    assert set(statuses) <= {201, 409}, statuses
    assert PaymentEvent.objects.count() == 1
    assert PaymentOrder.objects.count() == 2
    created = [r for r in responses if r.status_code == 201 and "Idempotent-Replayed" not in r]
    replays = [r for r in responses if r.status_code == 201 and r.get("Idempotent-Replayed") == "true"]
    in_use = [r for r in responses if r.status_code == 409]
    assert len(created) == 1
    assert all(r.content == created[0].content for r in replays)
    assert all(r.json()["error"]["code"] == "idempotency_key_in_use" for r in in_use)
    assert len(created) + len(replays) + len(in_use) == THREADS


def test_fifty_keys_naming_one_payment_order_id_create_exactly_one_payment(issued_key: IssuedKey) -> None:
    # given 50 different requests that all claim the same payment_order_id
    bodies = [payment_body(payment_orders=[order(), order(payment_order_id="po_contested")]) for _ in range(THREADS)]

    # when they arrive at once, each with its own key
    responses = _post_all(issued_key.key, bodies, [f"key-{i}" for i in range(THREADS)])

    # then exactly one wins and every other one is a clean 409 naming the winner
    statuses = Counter(response.status_code for response in responses)
    assert statuses == {201: 1, 409: THREADS - 1}, statuses
    winner = next(r for r in responses if r.status_code == 201).json()["payment_id"]
    for response in responses:
        if response.status_code == 409:
            error = response.json()["error"]
            assert error["code"] == "payment_order_id_taken"
            assert error["field"] == "payment_orders[1].payment_order_id"
            assert winner in error["message"]
    assert PaymentEvent.objects.count() == 1
    assert PaymentOrder.objects.filter(payment_order_id="po_contested").count() == 1
    assert PaymentOrder.objects.count() == 2


def test_requests_naming_the_same_ids_in_opposite_orders_never_deadlock(issued_key: IssuedKey) -> None:
    # given pairs of requests claiming the same 50 ids, one in the reverse order of the other
    for round_number in range(25):
        ids = [f"po_r{round_number}_{i:02d}" for i in range(50)]
        forward = payment_body(payment_orders=[order(payment_order_id=i) for i in ids])
        backward = payment_body(payment_orders=[order(payment_order_id=i) for i in reversed(ids)])

        # when they race
        responses = _post_all(issued_key.key, [forward, backward], [f"fw-{round_number}", f"bw-{round_number}"])

        # then one wins and the other is a clean 409, never a deadlock's 500
        assert sorted(r.status_code for r in responses) == [201, 409], [r.content[:200] for r in responses]


def test_orders_read_back_in_the_order_they_were_sent(issued_key: IssuedKey) -> None:
    ids = ["po_z", "po_a", "po_m"]
    created = _post_all(issued_key.key, [payment_body(payment_orders=[order(payment_order_id=i) for i in ids])], ["k"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued_key.key}")

    fetched = client.get(f"/v1/payments/{created[0].json()['payment_id']}").json()

    assert [o["payment_order_id"] for o in fetched["payment_orders"]] == ids
