"""/metrics: who may read it, and that it moves with the payments: a success, a decline, a retry; and that its state
gauges come from the database, so they are right in a process that never ran the recovery sweep."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from payments.models import OrderStatus, PaymentOrder, WebhookEvent
from payments.recovery import recovery_sweep
from payments.retries import ORDER_EXECUTE_TASK, dead_letter_record, dead_letter_resolve
from tests.conftest import order, payment_body, unique, wait_until
from tests.psp_helpers import configure
from tests.sandbox import Sandbox
from tests.test_failures import psp, status_of  # noqa: F401 - the sandbox with fast retries, as the failure tests use it

Scrape = Callable[[], dict[tuple[str, frozenset[tuple[str, str]]], float]]


@pytest.fixture
def scrape(client: Client) -> Scrape:
    """Every sample of one /metrics answer, by name and labels."""

    def read() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        response = client.get("/metrics")
        assert response.status_code == 200, response.content
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.content.decode())
            for sample in family.samples
        }

    return read


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


# --- Who may read it ------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_without_a_token_only_this_machine_may_read_the_metrics(client: Client) -> None:
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 403
    # a forwarded address is anyone's to write, and is not believed
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3", HTTP_X_FORWARDED_FOR="127.0.0.1").status_code == 403


@pytest.mark.django_db
def test_the_token_or_an_allowed_network_opens_the_metrics(client: Client, settings: Any) -> None:
    settings.METRICS_TOKEN = "metrics-token-0123456789"
    settings.METRICS_ALLOWED_IPS = ["10.20.0.0/16"]

    assert client.get("/metrics", REMOTE_ADDR="192.0.2.7").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.7", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    authorized = client.get("/metrics", REMOTE_ADDR="192.0.2.7", HTTP_AUTHORIZATION=f"Bearer {settings.METRICS_TOKEN}")
    assert authorized.status_code == 200
    assert b"marketpay_payment_orders" in authorized.content
    assert client.get("/metrics", REMOTE_ADDR="10.20.3.4").status_code == 200


# --- It moves with the payments -------------------------------------------------------------------------------------


def one_order(post_payment: Callable[..., Any], method: str, currency: str = "EUR") -> str:
    amount = "700" if currency == "JPY" else "12.00"
    created = post_payment(
        payment_body(payment_method={"token": method}, payment_orders=[order(currency=currency, amount=amount)])
    ).json()
    return str(created["payment_orders"][0]["payment_order_id"])


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("psp")
def test_the_metrics_move_when_a_payment_succeeds_fails_and_is_retried(
    sandbox: Sandbox, celery_worker_app: Any, post_payment: Callable[..., Any], scrape: Scrape
) -> None:
    before = scrape()

    # when one payment succeeds and one is declined
    succeeded = one_order(post_payment, "pm_card_visa", currency="JPY")
    declined = one_order(post_payment, "pm_card_chargeDeclined")
    wait_until(lambda: status_of(succeeded) == OrderStatus.SUCCESS and status_of(declined) == OrderStatus.FAILED)
    after = scrape()

    # then the state gauges say so, by currency
    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("marketpay_payment_orders", status="SUCCESS", currency="JPY") == 1
    assert moved("marketpay_payment_orders", status="FAILED", currency="EUR") == 1
    assert moved("marketpay_payments", status="SUCCEEDED", currency="JPY") == 1
    assert moved("marketpay_payments", status="FAILED", currency="EUR") == 1
    assert moved("marketpay_payment_orders", status="SUCCESS", currency="EUR") == 0
    # and each PSP call was counted and timed under its outcome
    charges = "marketpay_psp_call_duration_seconds_count"
    assert moved(charges, psp="stripe", operation="charge", outcome="succeeded") == 1
    assert moved(charges, psp="stripe", operation="charge", outcome="failed") == 1

    # when the PSP turns a payment away twice (429) and then takes it
    configure(sandbox, fault_429_rate=1.0)
    retried = one_order(post_payment, "pm_card_visa")
    wait_until(lambda: PaymentOrder.objects.get(payment_order_id=retried).attempts >= 2)
    configure(sandbox, reset=True)
    wait_until(lambda: status_of(retried) == OrderStatus.SUCCESS, timeout=30)
    last = scrape()

    # then the retries and the transient answers are counted, and the success too
    attempts = PaymentOrder.objects.get(payment_order_id=retried).attempts
    assert (
        value(last, "marketpay_retries_total", task=ORDER_EXECUTE_TASK)
        - value(after, "marketpay_retries_total", task=ORDER_EXECUTE_TASK)
        == attempts - 1
    )
    # (a resend first looks the order up: the 429 may answer the lookup or the charge)
    transient = sum(
        value(last, charges, psp="stripe", operation=operation, outcome="transient")
        - value(after, charges, psp="stripe", operation=operation, outcome="transient")
        for operation in ("charge", "lookup")
    )
    assert transient == attempts - 1
    assert value(last, "marketpay_payment_orders", status="SUCCESS", currency="EUR") == 1
    # and the HTTP and database basics are there (django-prometheus)
    assert value(last, "django_db_execute_total", alias="default", vendor="postgresql") > 0
    assert any(name == "django_http_responses_total_by_status_total" for name, _ in last)


# --- State from the database, whoever asks ----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_overdue_orders_are_counted_without_any_sweep_having_run(
    post_payment: Callable[..., Any], scrape: Scrape
) -> None:
    # given an order stored 45 minutes ago and never executed (no worker, no relay), and no sweep ever run here
    order_id = one_order(post_payment, "pm_card_visa")
    assert value(scrape(), "marketpay_payment_orders_overdue") == 0
    PaymentOrder.objects.filter(payment_order_id=order_id).update(created_at=timezone.now() - timedelta(minutes=45))

    # then the gauge counts it, and the sweep, when it runs, agrees
    assert value(scrape(), "marketpay_payment_orders_overdue") == 1
    report = recovery_sweep()
    assert report is not None
    assert report.overdue == 1


@pytest.mark.django_db(transaction=True)
def test_open_dead_letters_and_the_webhook_lag_come_from_the_database(scrape: Scrape) -> None:
    # given a dead letter and a webhook event waiting for two minutes
    dead_letter_record(
        task=ORDER_EXECUTE_TASK,
        object_type="payment_order",
        object_id="po_stuck",
        attempts=8,
        error=RuntimeError("PSP down"),
        first_failed_at=timezone.now(),
    )
    WebhookEvent.objects.create(psp="stripe", event_id=unique("evt"), type="payment_intent.succeeded", payload="{}")
    WebhookEvent.objects.update(received_at=timezone.now() - timedelta(seconds=120))

    samples = scrape()

    assert value(samples, "marketpay_dead_letters_open", task=ORDER_EXECUTE_TASK) == 1
    assert value(samples, "marketpay_dead_letters_open", task="payments.refund_execute") == 0
    assert value(samples, "marketpay_webhook_events_waiting") == 1
    assert value(samples, "marketpay_webhook_lag_seconds") >= 120
    assert value(samples, "marketpay_metrics_database_up") == 1

    # when the letter is closed and the event processed, the gauges follow
    dead_letter_resolve(task=ORDER_EXECUTE_TASK, object_id="po_stuck", resolution="settled by hand")
    WebhookEvent.objects.update(processed_at=timezone.now())
    samples = scrape()
    assert value(samples, "marketpay_dead_letters_open", task=ORDER_EXECUTE_TASK) == 0
    assert value(samples, "marketpay_webhook_events_waiting") == 0
    assert value(samples, "marketpay_webhook_lag_seconds") == 0
