"""Failure handling against the sandbox's real faults and a real worker: retries and the dead letter queue, the
recovery sweep for lost tasks, unknown outcomes, lost webhooks and the in-flight alert."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.core.cache import cache
from django.utils import timezone

from ledger.models import JournalTransaction
from payments.execution import order_execute
from payments.models import DeadLetter, OrderStatus, PaymentOrder
from payments.psp.gateway import UnknownPspOutcome
from payments.recovery import _RUNNING, recovery_sweep
from payments.retries import dead_letter_replay, retry_delay
from psp_sandbox.models import Charge
from tests.conftest import order, payment_body, wait_until
from tests.psp_helpers import configure
from tests.sandbox import Sandbox

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def psp(sandbox: Sandbox, settings: Any) -> Any:
    settings.STRIPE_API_BASE = sandbox.url
    settings.PSP_RETRY_BACKOFF_SECONDS = 1
    configure(sandbox, reset=True)
    yield sandbox
    configure(sandbox, reset=True)


def status_of(order_id: str) -> str:
    return PaymentOrder.objects.get(payment_order_id=order_id).status


def one_order(post_payment: Callable[..., Any], method: str = "pm_card_visa") -> str:
    created = post_payment(payment_body(payment_method={"token": method}, payment_orders=[order()])).json()
    return str(created["payment_orders"][0]["payment_order_id"])


def later(minutes: int) -> Any:
    return timezone.now() + timedelta(minutes=minutes)


def test_full_jitter_stays_under_the_capped_exponential(settings: Any) -> None:
    settings.PSP_RETRY_BACKOFF_SECONDS = 2
    settings.PSP_RETRY_BACKOFF_MAX_SECONDS = 60
    for attempt, ceiling in ((1, 2), (2, 4), (3, 8), (6, 60), (12, 60)):
        delays = [retry_delay(attempt) for _ in range(200)]
        assert all(0 <= delay <= ceiling for delay in delays)
        assert max(delays) > ceiling / 2  # spread over the whole range, not a fixed wait


def test_retries_exhausted_leave_the_order_stuck_in_the_dead_letter_queue_and_a_replay_completes_it_once(
    psp: Sandbox, settings: Any, celery_worker_app: Any, post_payment: Callable[..., Any], caplog: Any
) -> None:
    settings.PSP_RETRY_MAX_ATTEMPTS = 3
    configure(psp, fault_5xx_rate=1.0)

    with caplog.at_level(logging.ERROR, logger="payments.retries"):
        order_id = one_order(post_payment)
        wait_until(lambda: DeadLetter.objects.filter(object_id=order_id).exists(), timeout=30)

    # the order is visibly stuck, never silently failed
    letter = DeadLetter.objects.get(object_id=order_id)
    assert (letter.task, letter.object_type, letter.attempts) == ("payments.order_execute", "payment_order", 3)
    assert "UnknownPspOutcome: PSP error 500" in letter.last_error
    assert letter.resolved_at is None
    assert status_of(order_id) == OrderStatus.UNKNOWN
    assert PaymentOrder.objects.get(payment_order_id=order_id).attempts == 3
    assert any(order_id in record.getMessage() for record in caplog.records)
    # the sweep looks it up, but while the PSP still fails it learns nothing and sends nothing
    swept = recovery_sweep(now=later(30))
    assert swept is not None
    assert order_id in swept.lookups_failed
    assert order_id not in swept.requeued

    # when the PSP is back and a person replays it, twice (a double click)
    configure(psp, reset=True)
    assert dead_letter_replay(dead_letter_id=letter.pk, actor="finance:ann") is True
    assert dead_letter_replay(dead_letter_id=letter.pk, actor="finance:ann") is False

    # then it completes, charged once
    wait_until(lambda: status_of(order_id) == OrderStatus.SUCCESS)
    assert Charge.objects.filter(payment_order_id=order_id, status="succeeded").count() == 1
    letter.refresh_from_db()
    assert letter.resolution == "replayed by finance:ann"


def test_a_psp_that_refuses_our_key_dead_letters_at_once(
    psp: Sandbox, settings: Any, celery_worker_app: Any, post_payment: Callable[..., Any]
) -> None:
    settings.STRIPE_API_KEY = "sk_test_not_ours"

    order_id = one_order(post_payment)

    wait_until(lambda: DeadLetter.objects.filter(object_id=order_id).exists())
    assert DeadLetter.objects.get(object_id=order_id).attempts == 1
    assert "PspConfigurationError" in DeadLetter.objects.get(object_id=order_id).last_error


def test_a_decline_is_not_retried(psp: Sandbox, celery_worker_app: Any, post_payment: Callable[..., Any]) -> None:
    order_id = one_order(post_payment, method="pm_card_chargeDeclined")

    wait_until(lambda: status_of(order_id) == OrderStatus.FAILED)
    assert PaymentOrder.objects.get(payment_order_id=order_id).attempts == 1
    assert not DeadLetter.objects.exists()


def test_the_sweep_sends_an_order_whose_task_was_lost(
    psp: Sandbox, post_payment: Callable[..., Any], request: pytest.FixtureRequest
) -> None:
    # given an order stored ten minutes ago whose executor message was lost: no relay heard it, and it is older than
    # what a relay catches up on when it starts
    order_id = one_order(post_payment)
    PaymentOrder.objects.filter(payment_order_id=order_id).update(created_at=timezone.now() - timedelta(minutes=10))
    request.getfixturevalue("celery_worker_app")
    assert status_of(order_id) == OrderStatus.NOT_STARTED

    # when the sweep runs a minute later than the order was stored... not yet, then later
    assert order_id not in recovery_sweep().requeued  # type: ignore[union-attr]
    report = recovery_sweep(now=later(2))

    # then it is sent and completes once
    assert report is not None
    assert report.requeued == [order_id]
    wait_until(lambda: status_of(order_id) == OrderStatus.SUCCESS)
    assert Charge.objects.filter(payment_order_id=order_id).count() == 1


def test_the_sweep_settles_an_unknown_order_by_looking_it_up(psp: Sandbox, post_payment: Callable[..., Any]) -> None:
    order_id = one_order(post_payment)
    configure(psp, fault_lost_response_rate=1.0)
    with pytest.raises(UnknownPspOutcome):
        order_execute(payment_order_id=order_id)
    configure(psp, reset=True)

    report = recovery_sweep(now=later(2))

    assert report is not None
    assert report.settled == {order_id: OrderStatus.SUCCESS}
    stored = PaymentOrder.objects.get(payment_order_id=order_id)
    assert stored.transitions.order_by("pk").last().actor == "sweep"  # type: ignore[union-attr]
    assert Charge.objects.filter(payment_order_id=order_id).count() == 1
    assert JournalTransaction.objects.filter(kind="payin", reference=order_id).count() == 1


def test_the_sweep_sends_again_an_unknown_order_the_psp_never_saw(
    psp: Sandbox, settings: Any, post_payment: Callable[..., Any], request: pytest.FixtureRequest
) -> None:
    order_id = one_order(post_payment)
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # the request never reaches the PSP
    with pytest.raises(UnknownPspOutcome):
        order_execute(payment_order_id=order_id)
    settings.STRIPE_API_BASE = psp.url
    request.getfixturevalue("celery_worker_app")

    report = recovery_sweep(now=later(2))

    assert report is not None
    assert report.requeued == [order_id]
    wait_until(lambda: status_of(order_id) == OrderStatus.SUCCESS)
    assert Charge.objects.filter(payment_order_id=order_id).count() == 1


def test_the_sweep_captures_a_hosted_page_payment_whose_webhook_was_lost(psp: Sandbox, api: Any) -> None:
    import requests

    from tests.test_payin_flows import checkout_body, post_checkout

    configure(psp, webhook_url="http://127.0.0.1:9/lost", webhook_drop_rate=1.0)
    created = post_checkout(api, checkout_body(), key="chk-lost-webhook").json()
    form = {"cardNumber": "4242424242424242", "cardExpiry": "12 / 34", "cardCvc": "123", "billingName": "Ann"}
    assert requests.post(created["hosted_page_url"], data=form, allow_redirects=False, timeout=10).status_code == 303
    ids = [item["payment_order_id"] for item in created["payment_orders"]]
    assert {status_of(i) for i in ids} == {OrderStatus.PENDING}

    report = recovery_sweep(now=later(10))

    assert report is not None
    assert report.settled == dict.fromkeys(ids, OrderStatus.SUCCESS)


def test_orders_in_flight_too_long_raise_the_alert_with_their_ids(
    post_payment: Callable[..., Any], settings: Any, caplog: Any
) -> None:
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # lookups fail; the alert must not depend on them
    order_id = one_order(post_payment)

    with caplog.at_level(logging.ERROR, logger="payments.recovery"):
        report = recovery_sweep(now=later(45))

    assert report is not None
    assert report.overdue == 1
    assert any(order_id in record.getMessage() and record.levelname == "ERROR" for record in caplog.records)
    assert recovery_sweep().overdue == 0  # type: ignore[union-attr]


def test_only_one_sweep_runs_at_a_time() -> None:
    cache.add(_RUNNING, 1, timeout=30)
    try:
        assert recovery_sweep() is None
    finally:
        cache.delete(_RUNNING)
    assert recovery_sweep() is not None


def test_the_sweep_settles_a_dead_lettered_unknown_order_by_lookup_and_closes_its_letter(
    psp: Sandbox, post_payment: Callable[..., Any]
) -> None:
    from payments.retries import dead_letter_record

    # given a charge made at the PSP whose answer never came, and whose retries ran out
    order_id = one_order(post_payment)
    configure(psp, fault_lost_response_rate=1.0)
    with pytest.raises(UnknownPspOutcome) as lost:
        order_execute(payment_order_id=order_id)
    configure(psp, reset=True)
    dead_letter_record(
        task="payments.order_execute",
        object_type="payment_order",
        object_id=order_id,
        attempts=8,
        error=lost.value,
        first_failed_at=timezone.now(),
    )

    # when the sweep comes by
    report = recovery_sweep(now=later(2))

    # then the lookup finds the charge: captured once, never sent again, and the letter is closed
    assert report is not None
    assert report.settled == {order_id: OrderStatus.SUCCESS}
    assert order_id not in report.requeued
    assert Charge.objects.filter(payment_order_id=order_id).count() == 1
    assert recovery_sweep().letters_closed == 1  # type: ignore[union-attr]
    assert DeadLetter.objects.get(object_id=order_id).resolution == "the order reached a final state"


def test_the_sweep_skips_a_round_instead_of_dying_when_redis_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    # found by the chaos run: the sweep's loop died with Redis and never came back
    def unavailable(*args: Any, **kwargs: Any) -> bool:
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(cache, "add", unavailable)

    assert recovery_sweep() is None
