"""The executor end to end: the API queues each order, a real Celery worker sends it to the sandbox PSP over HTTP
through stripe-python, and the result lands in the order, its transition log, the ledger and the wallet."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from ledger.models import JournalTransaction
from payments.execution import order_execute
from payments.models import OrderStatus, OrderTransition, PaymentOrder
from payments.psp.gateway import UnknownPspOutcome
from psp_sandbox.models import Charge
from tests.conftest import order, payment_body, wait_until
from tests.psp_helpers import configure
from tests.sandbox import Sandbox
from wallets.selectors import wallet_ledger_balances

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def psp(sandbox: Sandbox, settings: Any) -> Sandbox:
    settings.STRIPE_API_BASE = sandbox.url
    return sandbox


def statuses(payment: dict[str, Any]) -> dict[str, str]:
    ids = [item["payment_order_id"] for item in payment["payment_orders"]]
    return dict(PaymentOrder.objects.filter(payment_order_id__in=ids).values_list("payment_order_id", "status"))


def settled(payment: dict[str, Any]) -> Callable[[], bool]:
    return lambda: all(status not in ("NOT_STARTED", "EXECUTING") for status in statuses(payment).values())


def test_a_payment_is_charged_per_order_and_posted_to_the_ledger(
    psp: Sandbox, celery_worker_app: Any, post_payment: Callable[..., Any], api: Any
) -> None:
    # when
    created = post_payment(payment_body()).json()
    wait_until(lambda: set(statuses(created).values()) == {"SUCCESS"})

    # then every order was charged once, under its own id, and posted once
    for item in created["payment_orders"]:
        order_id = item["payment_order_id"]
        charges = Charge.objects.filter(payment_order_id=order_id)
        assert [c.status for c in charges] == ["succeeded"]
        stored = PaymentOrder.objects.get(payment_order_id=order_id)
        assert stored.psp_reference == charges[0].payment_intent_id
        assert JournalTransaction.objects.filter(kind="payin", reference=order_id).count() == 1
        assert list(stored.transitions.order_by("pk").values_list("to_status", "actor")) == [
            ("EXECUTING", "executor"),
            ("SUCCESS", "executor"),
        ]
    assert wallet_ledger_balances(seller_account="seller_9", currency="EUR").pending > 0
    # and the API shows the payment done
    shown = api.get(f"/v1/payments/{created['payment_id']}").json()
    assert shown["status"] == "SUCCEEDED"


@pytest.mark.parametrize(
    ("token", "code"),
    [("pm_card_chargeDeclined", "generic_decline"), ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds")],
)
def test_a_decline_fails_the_order_with_its_code_and_posts_nothing(
    psp: Sandbox, celery_worker_app: Any, post_payment: Callable[..., Any], api: Any, token: str, code: str
) -> None:
    created = post_payment(payment_body(payment_method={"token": token}, payment_orders=[order()])).json()
    wait_until(settled(created))

    order_id = created["payment_orders"][0]["payment_order_id"]
    stored = PaymentOrder.objects.get(payment_order_id=order_id)
    assert stored.status == OrderStatus.FAILED
    assert stored.failure_code == code
    assert not JournalTransaction.objects.filter(reference=order_id).exists()
    shown = api.get(f"/v1/payments/{created['payment_id']}").json()
    assert shown["status"] == "FAILED"
    assert shown["payment_orders"][0]["failure_code"] == code


def test_a_card_that_needs_authentication_leaves_the_order_pending(
    psp: Sandbox, celery_worker_app: Any, post_payment: Callable[..., Any]
) -> None:
    created = post_payment(
        payment_body(payment_method={"token": "pm_card_authenticationRequired"}, payment_orders=[order()])
    ).json()
    wait_until(settled(created))

    stored = PaymentOrder.objects.get(payment_order_id=created["payment_orders"][0]["payment_order_id"])
    assert stored.status == OrderStatus.PENDING
    assert stored.psp_reference.startswith("pi_")
    assert not JournalTransaction.objects.filter(reference=stored.payment_order_id).exists()


def test_running_the_executor_again_and_concurrently_charges_once(
    psp: Sandbox, post_payment: Callable[..., Any]
) -> None:
    # given an order nobody has executed yet (no worker runs in this test)
    created = post_payment(payment_body(payment_orders=[order()])).json()
    order_id = created["payment_orders"][0]["payment_order_id"]

    # when eight executions race, then two more run after them
    results: list[str] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(order_execute(payment_order_id=order_id).status)
        except BaseException as exc:  # a 409 from the PSP (key in flight) is a retryable outcome, not a failure
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    order_execute(payment_order_id=order_id)
    order_execute(payment_order_id=order_id)

    # then the PSP charged once and the ledger posted once
    assert Charge.objects.filter(payment_order_id=order_id).count() == 1
    assert JournalTransaction.objects.filter(kind="payin", reference=order_id).count() == 1
    assert PaymentOrder.objects.get(payment_order_id=order_id).status == OrderStatus.SUCCESS
    assert all(type(exc).__name__ == "TransientPspError" for exc in errors), errors
    assert results, "at least one execution finished"


def test_an_unanswered_request_makes_the_order_unknown_and_a_resend_settles_it(
    psp: Sandbox, settings: Any, post_payment: Callable[..., Any]
) -> None:
    created = post_payment(payment_body(payment_orders=[order()])).json()
    order_id = created["payment_orders"][0]["payment_order_id"]

    # when the PSP cannot be reached (nothing listens on port 9 locally)
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"
    with pytest.raises(UnknownPspOutcome):
        order_execute(payment_order_id=order_id)
    assert PaymentOrder.objects.get(payment_order_id=order_id).status == OrderStatus.UNKNOWN

    # then a resend under the same key, once the PSP is back, settles it
    settings.STRIPE_API_BASE = psp.url
    assert order_execute(payment_order_id=order_id).status == OrderStatus.SUCCESS
    assert list(
        OrderTransition.objects.filter(order__payment_order_id=order_id).order_by("pk").values_list("to_status")
    ) == [("EXECUTING",), ("UNKNOWN",), ("SUCCESS",)]
    assert PaymentOrder.objects.get(payment_order_id=order_id).attempts == 2


def test_a_lost_response_leaves_the_order_unknown_and_the_resend_finds_the_first_charge(
    psp: Sandbox, post_payment: Callable[..., Any]
) -> None:
    created = post_payment(payment_body(payment_orders=[order()])).json()
    order_id = created["payment_orders"][0]["payment_order_id"]

    # when the PSP charges and the answer never arrives
    configure(psp, reset=True, fault_lost_response_rate=1.0)
    try:
        with pytest.raises(UnknownPspOutcome):
            order_execute(payment_order_id=order_id)
    finally:
        configure(psp, reset=True)

    # then the order says so, and the money did move once
    assert PaymentOrder.objects.get(payment_order_id=order_id).status == OrderStatus.UNKNOWN
    assert Charge.objects.filter(payment_order_id=order_id).count() == 1
    # and the resend under the same key hears the first charge's answer instead of charging again
    assert order_execute(payment_order_id=order_id).status == OrderStatus.SUCCESS
    assert Charge.objects.filter(payment_order_id=order_id).count() == 1
    assert JournalTransaction.objects.filter(kind="payin", reference=order_id).count() == 1


@pytest.mark.parametrize(
    ("fault", "while_failing"),
    [
        # A 500 may come after the charge was made (Stripe even stores it under the key): the outcome is unknown,
        # and each resend looks the order up first.
        ("fault_5xx_rate", OrderStatus.UNKNOWN),
        # A 429 means nothing was done: the order simply stays sent-and-unanswered.
        ("fault_429_rate", OrderStatus.EXECUTING),
    ],
)
def test_the_worker_retries_psp_errors_until_the_charge_goes_through_once(
    psp: Sandbox, celery_worker_app: Any, post_payment: Callable[..., Any], fault: str, while_failing: str
) -> None:
    configure(psp, reset=True, **{fault: 1.0})
    try:
        created = post_payment(payment_body(payment_orders=[order()])).json()
        order_id = created["payment_orders"][0]["payment_order_id"]
        # the worker keeps trying while the PSP fails
        wait_until(lambda: PaymentOrder.objects.get(payment_order_id=order_id).attempts >= 2)
        assert PaymentOrder.objects.get(payment_order_id=order_id).status == while_failing
    finally:
        configure(psp, reset=True)

    wait_until(lambda: PaymentOrder.objects.get(payment_order_id=order_id).status == OrderStatus.SUCCESS, timeout=30)
    assert Charge.objects.filter(payment_order_id=order_id, status="succeeded").count() == 1
