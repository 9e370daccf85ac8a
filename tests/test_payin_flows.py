"""Pay-in end to end with every part real: our API (live server), a Celery worker on Redis, the sandbox PSP in its own
process reached through stripe-python, and the sandbox's signed webhooks delivered to our endpoint over HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from ledger.models import JournalTransaction
from payments.models import OrderStatus, PaymentOrder, WebhookEvent
from psp_sandbox.models import Charge
from tests.conftest import order, payment_body, wait_until
from tests.psp_helpers import configure, control
from tests.sandbox import Sandbox

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def wired(sandbox: Sandbox, settings: Any, live_server: Any, celery_worker_app: Any) -> Iterator[Sandbox]:
    """The sandbox as our PSP, delivering its webhooks to our live server."""
    settings.STRIPE_API_BASE = sandbox.url
    configure(sandbox, reset=True, webhook_url=f"{live_server.url}/v1/webhooks/stripe", processing_delay_seconds=0.5)
    yield sandbox
    configure(sandbox, reset=True)


def order_of(payment: dict[str, Any], index: int = 0) -> PaymentOrder:
    return PaymentOrder.objects.get(payment_order_id=payment["payment_orders"][index]["payment_order_id"])


def reaches(payment: dict[str, Any], status: str) -> Callable[[], bool]:
    ids = [item["payment_order_id"] for item in payment["payment_orders"]]
    return lambda: (
        set(PaymentOrder.objects.filter(payment_order_id__in=ids).values_list("status", flat=True)) == {status}
    )


def test_3d_secure_waits_pending_then_the_webhook_captures_it(
    wired: Sandbox, post_payment: Callable[..., Any], api: Any
) -> None:
    created = post_payment(
        payment_body(payment_method={"token": "pm_card_authenticationRequired"}, payment_orders=[order()])
    ).json()
    wait_until(reaches(created, OrderStatus.PENDING))

    # the storefront learns where the buyer authenticates
    shown = api.get(f"/v1/payments/{created['payment_id']}").json()
    action_url = shown["payment_orders"][0]["next_action_url"]
    pending = order_of(created)
    assert action_url.endswith(f"/v1/sandbox/authenticate/{pending.psp_reference}")

    # when the buyer completes authentication at the PSP
    assert control(wired, f"/v1/sandbox/payment_intents/{pending.psp_reference}/authenticate", outcome="succeed").ok

    # then the PSP's webhook, and nothing else, captures the order
    wait_until(reaches(created, OrderStatus.SUCCESS))
    captured = order_of(created)
    assert list(captured.transitions.order_by("pk").values_list("to_status", "actor")) == [
        ("EXECUTING", "executor"),
        ("PENDING", "executor"),
        ("SUCCESS", "webhook"),
    ]
    assert JournalTransaction.objects.filter(kind="payin", reference=captured.payment_order_id).count() == 1
    assert api.get(f"/v1/payments/{created['payment_id']}").json()["payment_orders"][0]["next_action_url"] is None


def test_a_failed_authentication_fails_the_order_by_webhook(wired: Sandbox, post_payment: Callable[..., Any]) -> None:
    created = post_payment(
        payment_body(payment_method={"token": "pm_card_authenticationRequired"}, payment_orders=[order()])
    ).json()
    wait_until(reaches(created, OrderStatus.PENDING))

    control(wired, f"/v1/sandbox/payment_intents/{order_of(created).psp_reference}/authenticate", outcome="fail")

    wait_until(reaches(created, OrderStatus.FAILED))
    assert order_of(created).failure_code
    assert not JournalTransaction.objects.filter(reference=order_of(created).payment_order_id).exists()


def test_a_processing_payment_succeeds_later_by_webhook(wired: Sandbox, post_payment: Callable[..., Any]) -> None:
    created = post_payment(payment_body(payment_method={"token": "pm_card_processing"})).json()

    wait_until(reaches(created, OrderStatus.SUCCESS))
    for index in (0, 1):
        statuses = list(order_of(created, index).transitions.order_by("pk").values_list("to_status", flat=True))
        assert statuses == ["EXECUTING", "PENDING", "SUCCESS"]


def test_duplicated_webhooks_are_applied_once(wired: Sandbox, post_payment: Callable[..., Any]) -> None:
    configure(wired, webhook_duplicate_rate=1.0)
    created = post_payment(
        payment_body(payment_method={"token": "pm_card_authenticationRequired"}, payment_orders=[order()])
    ).json()
    wait_until(reaches(created, OrderStatus.PENDING))
    reference = order_of(created).psp_reference

    control(wired, f"/v1/sandbox/payment_intents/{reference}/authenticate", outcome="succeed")

    wait_until(reaches(created, OrderStatus.SUCCESS))
    wait_until(lambda: WebhookEvent.objects.filter(object_id=reference, deliveries__gte=2).exists())
    assert JournalTransaction.objects.filter(kind="payin", reference=order_of(created).payment_order_id).count() == 1
    assert Charge.objects.filter(payment_order_id=order_of(created).payment_order_id, status="succeeded").count() == 1


def test_a_webhook_overtaken_by_a_later_one_changes_nothing_when_it_arrives(
    wired: Sandbox, post_payment: Callable[..., Any]
) -> None:
    # the processing event is held back (reorder fault) long enough for the succeeded event to overtake it
    configure(wired, webhook_reorder_rate=1.0, webhook_reorder_hold_ms=2000, processing_delay_seconds=1.0)
    created = post_payment(payment_body(payment_method={"token": "pm_card_processing"}, payment_orders=[order()]))
    created = created.json()
    wait_until(reaches(created, OrderStatus.PENDING))
    configure(wired, webhook_reorder_rate=0.0)  # what comes next is sent at once

    wait_until(reaches(created, OrderStatus.SUCCESS))
    reference = order_of(created).psp_reference
    wait_until(lambda: WebhookEvent.objects.filter(object_id=reference, processed_at__isnull=False).count() == 2)
    arrived = list(WebhookEvent.objects.filter(object_id=reference).order_by("pk").values_list("type", "outcome"))
    order_id = order_of(created).payment_order_id
    assert arrived == [
        ("payment_intent.succeeded", f"{order_id} PENDING→SUCCESS"),
        ("payment_intent.processing", f"{order_id} unchanged (SUCCESS)"),
    ]
    assert JournalTransaction.objects.filter(kind="payin", reference=order_id).count() == 1


def checkout_body(**overrides: Any) -> dict[str, Any]:
    body = payment_body()
    del body["payment_method"]
    body["success_url"] = "https://shop.example/paid/{PAYMENT_ID}?session={CHECKOUT_SESSION_ID}"
    body["cancel_url"] = "https://shop.example/cart/{PAYMENT_ID}"
    body.update(overrides)
    return body


def post_checkout(api: Any, body: dict[str, Any], key: str = "chk-key") -> Any:
    return api.post("/v1/checkouts", data=body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def pay_on_hosted_page(url: str, card: str) -> requests.Response:
    """What the buyer's browser does: open the PSP's page, type a card, submit."""
    assert requests.get(url, timeout=10).status_code == 200
    form = {"cardNumber": card, "cardExpiry": "12 / 34", "cardCvc": "123", "billingName": "Ann Buyer"}
    return requests.post(url, data=form, allow_redirects=False, timeout=10)


def test_a_checkout_is_paid_on_the_hosted_page_and_captured_by_webhook(wired: Sandbox, api: Any) -> None:
    # when the storefront creates a checkout
    body = checkout_body()
    response = post_checkout(api, body)

    # then the PSP's page is registered before we answer, and the orders wait for the buyer
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["hosted_page_url"].startswith(f"{wired.url}/c/pay/cs_")
    token = order_of(created).psp_token
    assert token.startswith("cs_")
    assert set(PaymentOrder.objects.filter(psp_token=token).values_list("status", flat=True)) == {"PENDING"}
    # a retry with the same key and body is the same checkout, registered at the PSP once
    again = post_checkout(api, body)
    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == created

    # when the buyer pays with 4242 4242 4242 4242
    paid = pay_on_hosted_page(created["hosted_page_url"], "4242 4242 4242 4242")

    # then the buyer goes back to the storefront with our ids filled in, and the webhook captures every order
    assert paid.status_code == 303
    assert paid.headers["Location"] == f"https://shop.example/paid/{created['payment_id']}?session={token}"
    wait_until(reaches(created, OrderStatus.SUCCESS))
    reference = order_of(created).psp_reference
    assert reference.startswith("pi_")
    assert {o.psp_reference for o in PaymentOrder.objects.filter(psp_token=token)} == {reference}
    for item in created["payment_orders"]:
        assert JournalTransaction.objects.filter(kind="payin", reference=item["payment_order_id"]).count() == 1
    assert api.get(f"/v1/payments/{created['payment_id']}").json()["status"] == "SUCCEEDED"


def test_a_declined_card_on_the_hosted_page_changes_nothing_and_an_abandoned_page_fails_the_orders(
    wired: Sandbox, api: Any
) -> None:
    from payments.checkouts import checkout_abandon
    from payments.models import PaymentEvent

    created = post_checkout(api, checkout_body(), key="chk-decline").json()

    declined = pay_on_hosted_page(created["hosted_page_url"], "4000 0000 0000 0002")

    assert declined.status_code == 402
    assert 'id="error"' in declined.text
    assert "4000000000000002" not in declined.text
    # the buyer may still try another card: the orders wait
    wait_until(lambda: WebhookEvent.objects.filter(type="payment_intent.payment_failed").exists())
    wait_until(lambda: WebhookEvent.objects.filter(processed_at__isnull=True).count() == 0)
    assert set(PaymentOrder.objects.filter(psp_token=order_of(created).psp_token).values_list("status", flat=True)) == {
        "PENDING"
    }

    # when the buyer gives up (the storefront's cancel page closes the PSP's page)
    checkout_abandon(event=PaymentEvent.objects.get(payment_id=created["payment_id"]))

    # then the PSP's expiry webhook fails every order
    wait_until(reaches(created, OrderStatus.FAILED))
    assert {o.failure_code for o in PaymentOrder.objects.filter(psp_token=order_of(created).psp_token)} == {
        "checkout_expired"
    }


def test_a_checkout_in_two_currencies_is_refused_and_stores_nothing(
    wired: Sandbox, api: Any, row_counts: Callable[[], dict[str, int]]
) -> None:
    before = row_counts()
    body = checkout_body(payment_orders=[order(currency="EUR"), order(currency="USD")])

    response = post_checkout(api, body, key="chk-mixed")

    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "checkout_mixed_currencies",
        "message": "Every order of a checkout must be in the same currency.",
        "field": "payment_orders",
    }
    assert row_counts() == before


def test_a_checkout_when_the_psp_is_down_stores_nothing_and_may_be_retried(
    wired: Sandbox, api: Any, settings: Any, row_counts: Callable[[], dict[str, int]]
) -> None:
    before = row_counts()
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"

    response = post_checkout(api, checkout_body(), key="chk-down")

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "psp_unavailable"
    assert response["Retry-After"]
    assert row_counts() == before
    # the same request, once the PSP is back, goes through under the same key
    settings.STRIPE_API_BASE = wired.url
    assert post_checkout(api, checkout_body(), key="chk-down").status_code == 201
