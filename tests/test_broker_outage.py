"""Redis down when a payment commits (DESIGN.md "Failures"; nothing lost between the database and the broker).

The test runs its own Redis server as the Celery broker, so that stopping it for real stops nothing else. The API
does not touch the broker at all (the execution relay publishes), so it answers 201 at once; the relay keeps what it
could not publish and publishes it once Redis is back; the order completes once. Should the relay itself have been
down too, the recovery sweep sends the order (tests/test_failures.py).
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from bench.processes import RedisServer
from ops.signals import HEADER
from payments import relay
from payments.models import OrderStatus, PaymentOrder
from psp_sandbox.models import Charge
from tests.conftest import order, payment_body, run_queue, running_relay, served_queues, wait_until
from tests.sandbox import Sandbox

pytestmark = pytest.mark.django_db(transaction=True)


def pools_dropped() -> None:
    """The app's connection pools are made lazily from broker_url: dropped, the next publish connects afresh (to a new
    URL, or to a broker that has come back)."""
    from config.celery import app

    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def broker(settings: Any) -> Iterator[RedisServer]:
    from config.celery import app

    own = RedisServer()
    own.start()
    before = app.conf.broker_url
    app.conf.broker_url = own.url
    pools_dropped()
    try:
        yield own
    finally:
        app.conf.broker_url = before
        pools_dropped()
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
        pools_dropped()
        queues = [run_queue(name) for name in served_queues()]
        with start_worker(app, pool="solo", perform_ping_check=False, queues=queues):
            # then the relay publishes what it kept, and the order completes, charged once, with no sweep
            wait_until(lambda: PaymentOrder.objects.get(payment_order_id=order_id).status == OrderStatus.SUCCESS)

    assert Charge.objects.filter(payment_order_id=order_id).count() == 1


def test_the_relay_keeps_a_burst_while_the_broker_is_down_and_then_queues_every_order_once(
    broker: RedisServer,
) -> None:
    # given more orders announced at once than the relay sends in one batch, while the broker is down
    announced = [f"po_burst_{n} req_{n}" for n in range(relay.PUBLISH_BATCH + 7)]
    pending = deque(announced)
    broker.kill()

    # when the relay tries to publish them, then it keeps them all
    relay._publish(pending, relay._Outage())
    assert list(pending) == announced

    # when the broker is back and the relay tries again
    broker.start()
    pools_dropped()
    relay._publish(pending, relay._Outage())

    # then nothing waits any more, and each order has one executor message, with the request that created it
    assert not pending
    queue = run_queue("payments")
    messages = [json.loads(raw) for raw in redis.Redis.from_url(broker.url).lrange(queue, 0, -1)]
    queued = sorted((message["headers"]["argsrepr"], message["headers"][HEADER]["request_id"]) for message in messages)
    assert queued == sorted((repr((f"po_burst_{n}",)), f"req_{n}") for n in range(relay.PUBLISH_BATCH + 7))
