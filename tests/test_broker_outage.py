"""Redis down when a payment commits (DESIGN.md "Failures"; nothing lost between the database and the broker).

The test runs its own Redis server as the Celery broker, so that stopping it for real stops nothing else. The API
does not touch the broker at all (the execution relay publishes), so it answers 201 at once; the relay keeps what it
could not publish and publishes it once Redis is back; the order completes once. Should the relay itself have been
down too, the recovery sweep sends the order (tests/test_failures.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bench.processes import RedisServer
from payments.models import OrderStatus, PaymentOrder
from psp_sandbox.models import Charge
from tests.conftest import order, payment_body, run_queue, running_relay, served_queues, wait_until
from tests.sandbox import Sandbox

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def broker(settings: Any) -> Iterator[RedisServer]:
    from config.celery import app

    own = RedisServer()
    own.start()
    before = app.conf.broker_url
    # The app's connection pools are made lazily from broker_url: drop them so the next publish uses the new URL.
    app.conf.broker_url = own.url
    app._pool = None
    app.amqp._producer_pool = None
    try:
        yield own
    finally:
        app.conf.broker_url = before
        app._pool = None
        app.amqp._producer_pool = None
        own.kill()


def test_a_payment_committed_while_redis_is_down_completes_once_redis_is_back(
    broker: RedisServer, sandbox: Sandbox, settings: Any, post_payment: Callable[..., Any]
) -> None:
    from celery.contrib.testing.worker import start_worker

    from config.celery import app

    settings.STRIPE_API_BASE = sandbox.url
    broker.kill()

    with running_relay():
        # when a payment is created while the broker is down
        started = time.monotonic()
        response = post_payment(payment_body(payment_orders=[order()]))

        # then the API answers at once, with the payment stored
        assert response.status_code == 201
        assert time.monotonic() - started < 3
        order_id = response.json()["payment_orders"][0]["payment_order_id"]
        assert PaymentOrder.objects.get(payment_order_id=order_id).status == OrderStatus.NOT_STARTED

        # when Redis is back and a worker runs
        broker.start()
        app._pool = None
        app.amqp._producer_pool = None
        queues = [run_queue(name) for name in served_queues()]
        with start_worker(app, pool="solo", perform_ping_check=False, queues=queues):
            # then the relay publishes what it kept, and the order completes, charged once, with no sweep
            wait_until(lambda: PaymentOrder.objects.get(payment_order_id=order_id).status == OrderStatus.SUCCESS)

    assert Charge.objects.filter(payment_order_id=order_id).count() == 1
