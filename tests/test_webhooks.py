"""The webhook inbox: signed deliveries are verified on the raw body, stored once, acknowledged at once and applied by
a real Celery worker; duplicates, late and reordered events change nothing the state machine has moved past."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from api.services import IssuedKey
from ledger.models import JournalTransaction
from payments.models import OrderStatus, PaymentOrder, WebhookEvent
from payments.services import BuyerInfo, NewOrder, payment_create
from payments.webhooks import WebhookProcessingFailed, webhook_event_process, webhook_events_drain
from tests.conftest import unique, wait_until

URL = "/v1/webhooks/stripe"


def signed(body: bytes, *, secret: str | None = None, timestamp: int | None = None) -> str:
    """The Stripe-Signature header Stripe would send with this body."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new((secret or settings.STRIPE_WEBHOOK_SECRET).encode(), f"{t}.".encode() + body, hashlib.sha256)
    return f"t={t},v1={digest.hexdigest()}"


def intent_event(event_type: str, order_id: str, *, status: str, pi: str = "pi_test", **extra: Any) -> dict[str, Any]:
    return {
        "id": unique("evt"),
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "data": {
            "object": {
                "id": pi,
                "object": "payment_intent",
                "status": status,
                "metadata": {"payment_order_id": order_id},
                **extra,
            }
        },
    }


def deliver(event: dict[str, Any], **signing: Any) -> Any:
    body = json.dumps(event).encode()
    return Client().post(URL, data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=signed(body, **signing))


@pytest.fixture
def executing_order(issued_key: IssuedKey) -> Callable[[], str]:
    """An order sent to the PSP with no answer yet. Made by the service without a payment method, so that no
    executor is queued: a worker running in the test must leave it to the webhooks."""

    def make() -> str:
        order_id = unique("po")
        payment_create(
            client=issued_key.client,
            checkout_id="chk_webhooks",
            buyer=BuyerInfo(id="buyer_1"),
            payment_method_token="",
            orders=[NewOrder(order_id, "seller_7", Decimal("10.00"), "EUR")],
        )
        stored = PaymentOrder.objects.get(payment_order_id=order_id)
        stored.start_execution(actor="test")
        stored.save()
        return order_id

    return make


def status_of(order_id: str) -> str:
    return PaymentOrder.objects.get(payment_order_id=order_id).status


@pytest.mark.django_db(transaction=True)
def test_a_success_event_is_stored_acknowledged_and_applied_by_the_worker(
    celery_worker_app: Any, executing_order: Callable[[], str]
) -> None:
    order_id = executing_order()
    event = intent_event("payment_intent.succeeded", order_id, status="succeeded", pi="pi_ok")

    response = deliver(event)

    assert response.status_code == 200
    assert response.json() == {"received": True}
    wait_until(lambda: status_of(order_id) == OrderStatus.SUCCESS)
    stored = WebhookEvent.objects.get(event_id=event["id"])
    wait_until(lambda: WebhookEvent.objects.get(pk=stored.pk).processed_at is not None)
    stored.refresh_from_db()
    assert (stored.type, stored.object_id, stored.deliveries) == ("payment_intent.succeeded", "pi_ok", 1)
    assert json.loads(stored.payload) == event  # kept as it came
    assert f"{order_id} EXECUTING→SUCCESS" in stored.outcome
    assert PaymentOrder.objects.get(payment_order_id=order_id).psp_reference == "pi_ok"
    assert JournalTransaction.objects.filter(kind="payin", reference=order_id).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_duplicate_delivery_is_counted_and_applied_once(
    celery_worker_app: Any, executing_order: Callable[[], str]
) -> None:
    order_id = executing_order()
    event = intent_event("payment_intent.succeeded", order_id, status="succeeded")

    for _ in range(3):
        assert deliver(event).status_code == 200

    wait_until(lambda: WebhookEvent.objects.filter(event_id=event["id"], processed_at__isnull=False).exists())
    stored = WebhookEvent.objects.get(event_id=event["id"])
    assert stored.deliveries == 3
    assert stored.attempts == 1
    assert JournalTransaction.objects.filter(kind="payin", reference=order_id).count() == 1
    assert list(
        PaymentOrder.objects.get(payment_order_id=order_id).transitions.values_list("to_status", flat=True)
    ) == [
        "EXECUTING",
        "SUCCESS",
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "late",
    [
        ("payment_intent.processing", "processing"),
        ("payment_intent.payment_failed", "requires_payment_method"),
        ("payment_intent.requires_action", "requires_action"),
    ],
)
def test_an_event_arriving_after_the_success_changes_nothing(executing_order: Callable[[], str], late: Any) -> None:
    # given the success arrived first (delivered out of order)
    order_id = executing_order()
    first = intent_event("payment_intent.succeeded", order_id, status="succeeded")
    deliver(first)
    webhook_event_process(event_id=str(WebhookEvent.objects.get(event_id=first["id"]).pk))
    assert status_of(order_id) == OrderStatus.SUCCESS

    # when an older event arrives
    event_type, status = late
    older = intent_event(event_type, order_id, status=status)
    deliver(older)
    outcome = webhook_event_process(event_id=str(WebhookEvent.objects.get(event_id=older["id"]).pk))

    # then the order stays captured, posted once
    assert outcome == f"{order_id} unchanged (SUCCESS)"
    assert status_of(order_id) == OrderStatus.SUCCESS
    assert JournalTransaction.objects.filter(reference=order_id).count() == 1


@pytest.mark.django_db
def test_processing_then_success_in_order_moves_through_pending(executing_order: Callable[[], str]) -> None:
    order_id = executing_order()
    for event in (
        intent_event("payment_intent.processing", order_id, status="processing"),
        intent_event("payment_intent.succeeded", order_id, status="succeeded"),
    ):
        deliver(event)
        webhook_event_process(event_id=str(WebhookEvent.objects.get(event_id=event["id"]).pk))

    transitions = PaymentOrder.objects.get(payment_order_id=order_id).transitions.order_by("pk")
    assert list(transitions.values_list("to_status", "actor")) == [
        ("EXECUTING", "test"),
        ("PENDING", "webhook"),
        ("SUCCESS", "webhook"),
    ]


@pytest.mark.django_db
def test_a_decline_event_fails_the_order_with_the_decline_code(executing_order: Callable[[], str]) -> None:
    order_id = executing_order()
    event = intent_event(
        "payment_intent.payment_failed",
        order_id,
        status="requires_payment_method",
        last_payment_error={"code": "card_declined", "decline_code": "insufficient_funds", "message": "No funds."},
    )
    deliver(event)
    webhook_event_process(event_id=str(WebhookEvent.objects.get(event_id=event["id"]).pk))

    stored = PaymentOrder.objects.get(payment_order_id=order_id)
    assert (stored.status, stored.failure_code, stored.failure_reason) == ("FAILED", "insufficient_funds", "No funds.")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "signature_missing"),
        ("t=1,v1=00", "signature_invalid"),
        ("garbage", "signature_invalid"),
    ],
)
def test_a_missing_or_bad_signature_is_refused_and_nothing_is_stored(
    executing_order: Callable[[], str], header: str | None, code: str
) -> None:
    order_id = executing_order()
    body = json.dumps(intent_event("payment_intent.succeeded", order_id, status="succeeded")).encode()
    extra = {} if header is None else {"HTTP_STRIPE_SIGNATURE": header}

    response = Client().post(URL, data=body, content_type="application/json", **extra)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["field"] == "Stripe-Signature"
    assert not WebhookEvent.objects.exists()
    assert status_of(order_id) == OrderStatus.EXECUTING


@pytest.mark.django_db
def test_a_signature_made_with_another_secret_or_too_long_ago_is_refused(executing_order: Callable[[], str]) -> None:
    order_id = executing_order()
    event = intent_event("payment_intent.succeeded", order_id, status="succeeded")

    forged = deliver(event, secret="whsec_someone_else")
    stale = deliver(event, timestamp=int(time.time()) - settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS - 5)
    # a body altered after signing: the signature no longer covers it
    body = json.dumps(event).encode()
    altered = Client().post(
        URL,
        data=body.replace(b"succeeded", b"SUCCEEDED"),
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=signed(body),
    )

    assert [r.status_code for r in (forged, stale, altered)] == [400, 400, 400]
    assert not WebhookEvent.objects.exists()


@pytest.mark.django_db
def test_an_event_whose_handler_fails_is_kept_with_its_error(executing_order: Callable[[], str]) -> None:
    order_id = executing_order()
    event = intent_event("payment_intent.succeeded", order_id, status="succeeded")
    del event["data"]["object"]["status"]  # a body the handler cannot read
    deliver(event)
    stored = WebhookEvent.objects.get(event_id=event["id"])

    with pytest.raises(WebhookProcessingFailed):
        webhook_event_process(event_id=str(stored.pk))

    stored.refresh_from_db()
    assert stored.processed_at is None
    assert stored.attempts == 1
    assert "KeyError" in stored.last_error
    assert stored.next_attempt_at is not None
    assert stored.next_attempt_at > timezone.now()
    assert status_of(order_id) == OrderStatus.EXECUTING
    # and a drain leaves it alone until its backoff has passed, then tries again
    assert webhook_events_drain(max_seconds=5, linger_seconds=0) == 0
    WebhookEvent.objects.filter(pk=stored.pk).update(next_attempt_at=timezone.now())
    assert webhook_events_drain(max_seconds=5, linger_seconds=0) == 1
    stored.refresh_from_db()
    assert stored.attempts == 2


@pytest.mark.django_db
def test_events_we_do_not_act_on_are_stored_and_marked_ignored() -> None:
    event = {"id": unique("evt"), "type": "customer.created", "data": {"object": {"id": "cus_1"}}}
    deliver(event)
    stored = WebhookEvent.objects.get(event_id=event["id"])

    assert webhook_event_process(event_id=str(stored.pk)) == "ignored: no handler for customer.created"
    stored.refresh_from_db()
    assert stored.processed_at is not None


@pytest.mark.django_db
def test_a_body_holding_a_card_number_is_refused_unstored() -> None:
    event = {
        "id": unique("evt"),
        "type": "charge.succeeded",
        "data": {"object": {"id": "ch_1", "x": "4242424242424242"}},
    }
    response = deliver(event)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "card_data_not_allowed"
    assert not WebhookEvent.objects.exists()


@pytest.mark.django_db
def test_an_event_failing_every_attempt_goes_to_the_dead_letter_queue_and_a_replay_tries_it_again(
    executing_order: Callable[[], str], settings: Any
) -> None:
    from payments.models import DeadLetter
    from payments.retries import dead_letter_replay

    settings.WEBHOOK_MAX_ATTEMPTS = 2
    event = intent_event("payment_intent.succeeded", executing_order(), status="succeeded")
    del event["data"]["object"]["status"]  # a body the handler cannot read
    deliver(event)
    stored = WebhookEvent.objects.get(event_id=event["id"])

    for _ in range(2):
        WebhookEvent.objects.filter(pk=stored.pk).update(next_attempt_at=timezone.now())
        webhook_events_drain(max_seconds=5, linger_seconds=0)

    # then it is dead-lettered and no longer retried by itself
    letter = DeadLetter.objects.get(task="payments.webhook_event", object_id=event["id"])
    assert (letter.object_type, letter.attempts) == ("webhook_event", 2)
    assert "KeyError" in letter.last_error
    WebhookEvent.objects.filter(pk=stored.pk).update(next_attempt_at=timezone.now())
    assert webhook_events_drain(max_seconds=5, linger_seconds=0) == 0

    # when a person replays it, it is tried again
    assert dead_letter_replay(dead_letter_id=letter.pk, actor="finance:ann") is True
    assert webhook_events_drain(max_seconds=5, linger_seconds=0) == 1
    stored.refresh_from_db()
    assert stored.attempts == 1


# --- Under attack (the security issue, section 6): refusals store nothing; a replay is applied once ---------------


@pytest.mark.django_db
def test_a_thousand_forged_signatures_are_refused_and_store_nothing() -> None:
    client = Client()
    event = intent_event("payment_intent.succeeded", "po_target", status="succeeded")
    body = json.dumps(event).encode()
    answers = set()
    for attempt in range(1000):
        # a wrong secret, a tampered body, a made-up digest: all the shapes a forger can send
        kind = attempt % 3
        if kind == 0:
            header = signed(body, secret=f"whsec_guess_{attempt}")
        elif kind == 1:
            header = signed(body.replace(b"succeeded", b"failed"), secret=None)
        else:
            header = f"t={int(time.time())},v1={attempt:064x}"
        answers.add(
            client.post(URL, data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=header).status_code
        )

    assert answers == {400}
    assert not WebhookEvent.objects.exists()


@pytest.mark.django_db
def test_stale_timestamps_are_refused() -> None:
    event = intent_event("payment_intent.succeeded", "po_target", status="succeeded")
    body = json.dumps(event).encode()
    for age in (301, 3600, 86_400 * 30):
        answer = Client().post(
            URL,
            data=body,
            content_type="application/json",
            HTTP_STRIPE_SIGNATURE=signed(body, timestamp=int(time.time()) - age),
        )
        assert answer.status_code == 400
        assert answer.json()["error"]["code"] == "signature_invalid"
    assert not WebhookEvent.objects.exists()


@pytest.mark.django_db
def test_one_valid_event_replayed_a_hundred_times_is_processed_once(executing_order: Callable[[], str]) -> None:
    order_id = executing_order()
    event = intent_event("payment_intent.succeeded", order_id, status="succeeded", pi=unique("pi"))
    body = json.dumps(event).encode()
    client = Client()

    answers = {
        client.post(URL, data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=signed(body)).status_code
        for _ in range(100)
    }
    webhook_events_drain(linger_seconds=0)

    assert answers == {200}
    stored = WebhookEvent.objects.get()
    assert (stored.deliveries, stored.attempts) == (100, 1)
    assert PaymentOrder.objects.get(payment_order_id=order_id).status == OrderStatus.SUCCESS
    assert JournalTransaction.objects.filter(kind="payin", reference=order_id).count() == 1
