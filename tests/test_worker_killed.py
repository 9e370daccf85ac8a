"""A Celery worker SIGKILLed in the middle of a PSP call: the order completes once, charged once.

The worker runs as its own process (it must be killable), on this run's queues and the test database. acks_late
keeps the message, but Redis hands an unacknowledged message back only after the visibility timeout (an hour): the
recovery sweep, which re-sends an EXECUTING order left alone longer than any retry would wait, is what finishes it
sooner. The resend carries the same idempotency key, so the PSP answers with the charge it already made.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from bench.processes import celery_worker
from payments.models import OrderStatus, PaymentOrder
from payments.recovery import recovery_sweep
from psp_sandbox.models import Charge
from tests.conftest import order, payment_body, run_queue, running_relay, served_queues, wait_until
from tests.psp_helpers import configure
from tests.sandbox import Sandbox, database_url

pytestmark = pytest.mark.django_db(transaction=True)


@contextmanager
def worker_process(sandbox: Sandbox) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url(connection.settings_dict),
        "SECRET_KEY": settings.SECRET_KEY,
        "REDIS_URL": settings.REDIS_URL,
        "STRIPE_API_BASE": sandbox.url,
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    queues = [run_queue(name) for name in served_queues()]
    process = celery_worker(env, "killable", queues=queues, pool="solo", concurrency=1)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def test_a_worker_killed_mid_call_leaves_an_order_the_sweep_completes_once(
    sandbox: Sandbox, settings: Any, post_payment: Callable[..., Any]
) -> None:
    settings.STRIPE_API_BASE = sandbox.url
    configure(sandbox, reset=True, latency_ms=3000)  # every PSP call takes three seconds: time to kill the worker
    try:
        with running_relay(), worker_process(sandbox) as worker:
            created = post_payment(payment_body(payment_orders=[order()])).json()
            order_id = created["payment_orders"][0]["payment_order_id"]
            # when the worker is inside the PSP call (EXECUTING commits just before it; the call then takes 3 s)
            wait_until(lambda: PaymentOrder.objects.get(payment_order_id=order_id).status == OrderStatus.EXECUTING)
            time.sleep(1)
            worker.send_signal(signal.SIGKILL)
            worker.wait()
        # the PSP finishes the call the dead worker made; the order stays EXECUTING, its message unacknowledged
        wait_until(lambda: Charge.objects.filter(payment_order_id=order_id).exists())
        assert PaymentOrder.objects.get(payment_order_id=order_id).status == OrderStatus.EXECUTING
    finally:
        configure(sandbox, reset=True)

    # then a new worker and the sweep (once the order has been left alone long enough) finish it
    with running_relay(), worker_process(sandbox):
        report = recovery_sweep(now=timezone.now() + timedelta(minutes=10))
        assert report is not None
        assert report.requeued == [order_id]
        wait_until(
            lambda: PaymentOrder.objects.get(payment_order_id=order_id).status == OrderStatus.SUCCESS, timeout=30
        )

    assert Charge.objects.filter(payment_order_id=order_id).count() == 1
    transitions = PaymentOrder.objects.get(payment_order_id=order_id).transitions.order_by("pk")
    assert list(transitions.values_list("to_status", flat=True)) == ["EXECUTING", "SUCCESS"]
