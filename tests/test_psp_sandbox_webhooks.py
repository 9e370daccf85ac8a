"""The sandbox's events and their signed webhook delivery: what Stripe sends, signed so that stripe-python's own
``Webhook.construct_event`` accepts it, retried with backoff, claimed without double delivery; and the clock and the
3-D Secure page that cause events by themselves."""

from __future__ import annotations

import io
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
import requests
import stripe
from django.core.management import call_command
from django.db import connection

from psp_sandbox import config, events, webhooks
from psp_sandbox.models import Event, WebhookDelivery
from tests.conftest import unique, wait_until
from tests.psp_helpers import configure, control, intent_params
from tests.webhook_receiver import Receiver, receiving_webhooks

if TYPE_CHECKING:
    from tests.sandbox import Sandbox

over_http = pytest.mark.django_db(transaction=True)


@pytest.fixture
def receiver(sandbox: Sandbox) -> Iterator[Receiver]:
    with receiving_webhooks() as running:
        configure(sandbox, webhook_url=running.url, webhook_retry_base_seconds=0.05, webhook_retry_cap_seconds=0.2)
        yield running


def delivery_of(event_id: str) -> WebhookDelivery:
    return WebhookDelivery.objects.get(event_id=event_id)


# --- Events and their signatures --------------------------------------------------------------------------------------


@over_http
def test_a_payment_sends_a_signed_event_that_construct_event_accepts(sandbox: Sandbox, receiver: Receiver) -> None:
    # given
    key = unique("idem")
    # when
    intent = sandbox.client.v1.payment_intents.create(params=intent_params(), options={"idempotency_key": key})
    # then
    receiver.wait_for(lambda r: len(r.of_object(intent.id)) == 1)
    received = receiver.of_object(intent.id)[0]
    event = received.verified()  # stripe-python's check: signature and 300 s tolerance
    assert re.fullmatch(r"evt_[A-Za-z0-9]{24}", event.id)
    assert (event.object, event.type, event.livemode) == ("event", "payment_intent.succeeded", False)
    assert event.api_version == events.API_VERSION
    assert event.data.object["id"] == intent.id
    assert event.data.object["status"] == "succeeded"
    assert event.request.idempotency_key == key
    assert event.request.id == intent.last_response.headers["Request-Id"]
    assert event.pending_webhooks == 1
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", received.headers["Stripe-Signature"])
    assert received.headers["Content-Type"].startswith("application/json")
    wait_until(lambda: delivery_of(event.id).status == WebhookDelivery.Status.DELIVERED)
    row = delivery_of(event.id)
    assert (row.attempts, row.last_status, row.endpoint_url) == (1, 200, receiver.url)
    assert row.delivered_at is not None


@over_http
def test_a_signature_made_with_another_secret_is_refused_by_construct_event(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    intent = sandbox.client.v1.payment_intents.create(params=intent_params())
    receiver.wait_for(lambda r: len(r.of_object(intent.id)) == 1)
    with pytest.raises(stripe.SignatureVerificationError):
        receiver.of_object(intent.id)[0].verified("whsec_not_the_one")


def test_the_signature_header_is_stripes_scheme_v1() -> None:
    payload = '{"id": "evt_1"}'
    header = webhooks.signature_header(payload, secret="whsec_x", timestamp=int(time.time()))
    assert stripe.WebhookSignature.verify_header(payload, header, "whsec_x", tolerance=300)


@over_http
def test_a_decline_sends_payment_failed_and_a_replay_sends_nothing_more(sandbox: Sandbox, receiver: Receiver) -> None:
    # given
    key = unique("idem")
    params = intent_params("pm_card_chargeDeclined")
    with pytest.raises(stripe.CardError) as caught:
        sandbox.client.v1.payment_intents.create(params=params, options={"idempotency_key": key})
    assert caught.value.error is not None
    assert caught.value.error.payment_intent is not None
    intent_id = caught.value.error.payment_intent.id
    # when: the same request again is a replay
    with pytest.raises(stripe.CardError):
        sandbox.client.v1.payment_intents.create(params=params, options={"idempotency_key": key})
    # then
    receiver.wait_for(lambda r: len(r.of_object(intent_id)) == 1)
    event = receiver.of_object(intent_id)[0].verified()
    assert event.type == "payment_intent.payment_failed"
    assert event.data.object["last_payment_error"]["decline_code"] == "generic_decline"
    assert Event.objects.filter(data__object__id=intent_id).count() == 1


@over_http
def test_canceling_an_intent_sends_payment_intent_canceled(sandbox: Sandbox, receiver: Receiver) -> None:
    intent = sandbox.client.v1.payment_intents.create(params=intent_params(confirm=False))

    canceled = sandbox.client.v1.payment_intents.cancel(intent.id, params={"cancellation_reason": "abandoned"})

    assert (canceled.status, canceled.cancellation_reason) == ("canceled", "abandoned")
    receiver.wait_for(lambda r: r.event_types() == ["payment_intent.canceled"])
    with pytest.raises(stripe.InvalidRequestError) as caught:
        sandbox.client.v1.payment_intents.cancel(intent.id)
    assert caught.value.code == "payment_intent_unexpected_state"


@over_http
def test_events_are_listed_newest_first_and_retrieved(sandbox: Sandbox) -> None:
    # given: no endpoint configured; events are recorded anyway
    first = sandbox.client.v1.payment_intents.create(params=intent_params())
    with pytest.raises(stripe.CardError):
        sandbox.client.v1.payment_intents.create(params=intent_params("pm_card_chargeDeclined"))
    last = sandbox.client.v1.payment_intents.create(params=intent_params())
    # when
    listed = sandbox.client.v1.events.list(params={"limit": 2})
    succeeded = sandbox.client.v1.events.list(params={"type": "payment_intent.succeeded"})
    rest = sandbox.client.v1.events.list(params={"limit": 2, "starting_after": listed.data[-1].id})
    # then
    assert next(e.data.object["id"] for e in listed.data) == last.id
    assert listed.has_more is True
    assert [e.data.object["id"] for e in succeeded.data] == [last.id, first.id]
    assert [e.data.object["id"] for e in rest.data] == [first.id]
    assert rest.has_more is False
    fetched = sandbox.client.v1.events.retrieve(listed.data[0].id)
    assert (fetched.type, fetched.pending_webhooks) == ("payment_intent.succeeded", 0)
    assert WebhookDelivery.objects.count() == 0
    with pytest.raises(stripe.InvalidRequestError) as caught:
        sandbox.client.v1.events.retrieve("evt_missing")
    assert caught.value.http_status == 404


# --- Retries --------------------------------------------------------------------------------------------------------


@over_http
def test_a_failing_endpoint_is_retried_with_backoff_until_it_answers_2xx(sandbox: Sandbox, receiver: Receiver) -> None:
    # given
    receiver.answer_with(500, 503)
    # when
    intent = sandbox.client.v1.payment_intents.create(params=intent_params())
    # then
    receiver.wait_for(lambda r: len(r.of_object(intent.id)) == 1)
    attempts = [item for item in receiver.all() if item.event["data"]["object"]["id"] == intent.id]
    assert [item.status for item in attempts] == [500, 503, 200]
    # the second wait is about twice the first (base 0.05 s, doubling)
    assert attempts[2].at - attempts[1].at >= 0.09
    event_id = attempts[0].event["id"]
    wait_until(lambda: delivery_of(event_id).status == WebhookDelivery.Status.DELIVERED)
    assert delivery_of(event_id).attempts == 3


@over_http
def test_delivery_gives_up_after_the_last_attempt_and_keeps_the_error(sandbox: Sandbox, receiver: Receiver) -> None:
    configure(sandbox, webhook_max_attempts=3)
    receiver.answer_with(*[500] * 10)

    intent = sandbox.client.v1.payment_intents.create(params=intent_params())

    event_id = Event.objects.get(data__object__id=intent.id).id
    wait_until(lambda: delivery_of(event_id).status == WebhookDelivery.Status.FAILED)
    row = delivery_of(event_id)
    assert (row.attempts, row.last_status, row.delivered_at) == (3, 500, None)
    assert len(receiver.all()) == 3


@over_http
def test_an_unreachable_endpoint_is_a_connection_error_retried(sandbox: Sandbox) -> None:
    with receiving_webhooks() as closed:
        url = closed.url
    configure(sandbox, webhook_url=url, webhook_retry_base_seconds=0.05, webhook_max_attempts=2)

    intent = sandbox.client.v1.payment_intents.create(params=intent_params())

    event_id = Event.objects.get(data__object__id=intent.id).id
    wait_until(lambda: delivery_of(event_id).status == WebhookDelivery.Status.FAILED)
    row = delivery_of(event_id)
    assert (row.attempts, row.last_status) == (2, None)
    assert "Error" in row.last_error


def test_backoff_doubles_from_the_base_up_to_the_cap() -> None:
    settings = config._effective({"webhook_retry_base_seconds": 1, "webhook_retry_cap_seconds": 60})
    waits = [webhooks.backoff(attempt, settings).total_seconds() for attempt in range(1, 9)]
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60]


# --- Concurrent delivery ----------------------------------------------------------------------------------------------


@over_http
def test_several_processes_and_threads_deliver_each_event_exactly_once(sandbox: Sandbox, receiver: Receiver) -> None:
    # given: 300 events queued at once (written here, as a burst of payments would)
    count = 300
    for index in range(count):
        events.event_emit("payment_intent.succeeded", {"id": f"pi_burst{index}", "object": "payment_intent"})
    stop = threading.Event()

    def help_deliver() -> None:
        # Four delivery loops in this process, racing the sandbox's two workers for the same rows.
        try:
            while not stop.is_set():
                if webhooks.deliver_due(config.current()) == 0:
                    time.sleep(0.01)
        finally:
            connection.close()

    helpers = [threading.Thread(target=help_deliver) for _ in range(4)]
    for helper in helpers:
        helper.start()
    # when
    try:
        receiver.wait_for(lambda r: len(r.delivered()) >= count, timeout=30)
        # A batch is recorded once all of its sends are back.
        delivered = WebhookDelivery.objects.filter(status=WebhookDelivery.Status.DELIVERED)
        wait_until(lambda: delivered.count() == count)
    finally:
        stop.set()
        for helper in helpers:
            helper.join()
    # then
    # Every event reached the endpoint exactly once, whichever process and thread claimed it. (A send that failed on
    # a loaded machine is retried: attempts may exceed one, deliveries may not. Speed is bench/sandbox.py's concern.)
    received = Counter(item.event["id"] for item in receiver.all() if item.status < 300)
    assert len(received) == count
    assert set(received.values()) == {1}


# --- The clock and 3-D Secure ----------------------------------------------------------------------------------------


@over_http
def test_a_processing_payment_succeeds_by_itself_after_the_delay(sandbox: Sandbox, receiver: Receiver) -> None:
    configure(sandbox, processing_delay_seconds=0.3)

    intent = sandbox.client.v1.payment_intents.create(params=intent_params("pm_card_processing"))

    assert intent.status == "processing"
    receiver.wait_for(lambda r: len(r.of_object(intent.id)) == 2)
    assert [item.event["type"] for item in receiver.of_object(intent.id)] == [
        "payment_intent.processing",
        "payment_intent.succeeded",
    ]
    settled = sandbox.client.v1.payment_intents.retrieve(intent.id, params={"expand": ["latest_charge"]})
    assert settled.status == "succeeded"
    assert isinstance(settled.latest_charge, stripe.Charge)
    assert settled.latest_charge.balance_transaction is not None


@over_http
def test_the_authentication_page_completes_3ds_and_redirects_to_the_return_url(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    # given
    params = intent_params("pm_card_authenticationRequired", return_url="https://shop.example/return?order=7")
    intent = sandbox.client.v1.payment_intents.create(params=params)
    assert intent.next_action is not None
    page_url = intent.next_action.redirect_to_url["url"]
    assert page_url == f"{sandbox.url}/v1/sandbox/authenticate/{intent.id}"
    # when: the buyer's browser opens the page and presses "Complete authentication"
    page = requests.get(page_url, timeout=10)
    answer = requests.post(page_url, data={"outcome": "succeed"}, allow_redirects=False, timeout=10)
    # then
    assert page.status_code == 200
    assert 'id="complete"' in page.text
    assert 'id="fail"' in page.text
    assert "19.99 EUR" in page.text
    assert answer.status_code == 303
    assert answer.headers["Location"] == (
        f"https://shop.example/return?order=7&payment_intent={intent.id}"
        f"&payment_intent_client_secret={intent.client_secret}&redirect_status=succeeded"
    )
    assert sandbox.client.v1.payment_intents.retrieve(intent.id).status == "succeeded"
    receiver.wait_for(lambda r: len(r.of_object(intent.id)) == 2)
    assert [item.event["type"] for item in receiver.of_object(intent.id)] == [
        "payment_intent.requires_action",
        "payment_intent.succeeded",
    ]
    # and the page, opened again, says it is over
    assert "no longer waiting" in requests.get(page_url, timeout=10).text


@over_http
def test_failing_authentication_on_the_page_without_return_url_shows_a_done_page(sandbox: Sandbox) -> None:
    intent = sandbox.client.v1.payment_intents.create(params=intent_params("pm_card_authenticationRequired"))
    page_url = f"{sandbox.url}/v1/sandbox/authenticate/{intent.id}"

    answer = requests.post(page_url, data={"outcome": "fail"}, timeout=10)

    assert answer.status_code == 200
    assert "Authentication failed" in answer.text
    failed = sandbox.client.v1.payment_intents.retrieve(intent.id)
    assert failed.status == "requires_payment_method"
    assert Event.objects.filter(data__object__id=intent.id).order_by("created").last().type == (  # type: ignore[union-attr]
        "payment_intent.payment_failed"
    )


@over_http
@pytest.mark.parametrize(("outcome", "status"), [("succeed", "succeeded"), ("fail", "requires_payment_method")])
def test_the_authenticate_control_call_settles_3ds_without_a_browser(
    sandbox: Sandbox, outcome: str, status: str
) -> None:
    intent = sandbox.client.v1.payment_intents.create(params=intent_params("pm_card_authenticationRequired"))
    path = f"/v1/sandbox/payment_intents/{intent.id}/authenticate"

    answer = control(sandbox, path, outcome=outcome)
    again = control(sandbox, path, outcome=outcome)

    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == status
    assert again.status_code == 400
    assert again.json()["error"]["code"] == "payment_intent_unexpected_state"
    assert control(sandbox, path, outcome="maybe").status_code == 400


# --- The control endpoint ---------------------------------------------------------------------------------------------


@over_http
def test_config_changes_are_validated_and_can_be_undone(sandbox: Sandbox) -> None:
    url = f"{sandbox.url}/v1/sandbox/config"
    headers = {"Authorization": f"Bearer {sandbox.api_key}"}
    # unknown knob, bad rate, bad URL, bad count: 400s naming the knob
    for body, param in [
        ({"colour": 1}, "colour"),
        ({"fault_5xx_rate": 1.5}, "fault_5xx_rate"),
        ({"webhook_url": "ftp://x"}, "webhook_url"),
        ({"webhook_max_attempts": 2.5}, "webhook_max_attempts"),
        ({"latency_ms": "soon"}, "latency_ms"),
    ]:
        refused = requests.post(url, json=body, headers=headers, timeout=10)
        assert refused.status_code == 400, body
        assert refused.json()["error"]["param"] == param
    # a change, then undoing it
    changed = configure(sandbox, fault_5xx_rate=0.25, webhook_url="http://127.0.0.1:1/hook")
    assert (changed["fault_5xx_rate"], changed["overrides"]["webhook_url"]) == (0.25, "http://127.0.0.1:1/hook")
    assert configure(sandbox, fault_5xx_rate=None)["fault_5xx_rate"] == 0.0
    assert configure(sandbox, reset=True)["overrides"] == {}
    # form bodies work too, and the key is required
    assert requests.post(url, data={"latency_ms": "5"}, headers=headers, timeout=10).json()["latency_ms"] == 5
    assert requests.get(url, timeout=10).status_code == 401


@pytest.mark.django_db
def test_sandbox_deliver_sends_what_is_due_once() -> None:
    # given: no sandbox process; an event queued for an endpoint
    with receiving_webhooks() as endpoint:
        config.config_update(changes={"webhook_url": endpoint.url})
        event = events.event_emit("transfer.created", {"id": "tr_by_hand", "object": "transfer"})
        out = io.StringIO()
        # when
        call_command("sandbox_deliver", stdout=out)
        call_command("sandbox_deliver", stdout=io.StringIO())
    # then
    assert out.getvalue().strip() == "1 deliveries attempted"
    assert [item.verified().id for item in endpoint.all()] == [event.id]
    assert delivery_of(event.id).status == WebhookDelivery.Status.DELIVERED


@pytest.mark.django_db
def test_a_claim_looks_up_earlier_deliveries_per_due_one_in_the_index_not_by_comparing_all_pairs() -> None:
    # given a table the planner has no statistics for, as while a backlog builds up under load
    with connection.cursor() as cursor:
        cursor.execute(
            "EXPLAIN " + webhooks._CLAIM_SQL,
            {"lease_until": "now", "now": "now", "hold_since": "now", "max_hold_since": "now", "limit": 100},
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())

    # then the earlier-delivery test is a subplan probing the ordering index, never an anti-join over every waiting
    # delivery (quadratic: two seconds a claim at 600 waiting)
    assert "Anti Join" not in plan
    assert "psp_sandbox_dlv_ordering" in plan
