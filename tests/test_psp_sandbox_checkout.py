"""Checkout Sessions over stripe-python, and the hosted payment page driven as a browser would drive it: plain form
posts to ``/c/pay/{id}`` with the field names a browser test uses (cardNumber, cardExpiry, cardCvc, billingName)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
import requests
import stripe
from django.db import connection
from django.utils import timezone

from psp_sandbox.models import Charge, CheckoutSession, Event
from tests.conftest import unique, wait_until
from tests.psp_helpers import configure
from tests.webhook_receiver import Receiver, receiving_webhooks

if TYPE_CHECKING:
    from tests.sandbox import Sandbox

over_http = pytest.mark.django_db(transaction=True)
VISA = "4242 4242 4242 4242"


@pytest.fixture
def receiver(sandbox: Sandbox) -> Iterator[Receiver]:
    with receiving_webhooks() as running:
        configure(sandbox, webhook_url=running.url)
        yield running


def line_item(currency: str, unit_amount: int, name: str, quantity: int) -> dict[str, Any]:
    price = {"currency": currency, "unit_amount": unit_amount, "product_data": {"name": name}}
    return {"price_data": price, "quantity": quantity}


def session_params(**overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": [line_item("eur", 1250, "Tea pot", 2), line_item("eur", 499, "Cups", 1)],
        "success_url": "https://shop.example/paid?session={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://shop.example/cart",
        "client_reference_id": "chk_1001",
        "metadata": {"checkout_id": "chk_1001"},
        "payment_intent_data": {
            "metadata": {"payment_id": unique("pay"), "payment_order_id": unique("po")},
            "description": "Order chk_1001",
        },
    }
    params.update(overrides)
    return params


def pay(session_url: str, number: str = VISA, **fields: str) -> requests.Response:
    form = {"email": "ann@example.com", "cardNumber": number, "cardExpiry": "12 / 34", "cardCvc": "123"}
    form["billingName"] = "Ann Example"
    form.update(fields)
    return requests.post(session_url, data=form, allow_redirects=False, timeout=10)


def stored_anywhere(text: str) -> int:
    """Rows of any sandbox table whose text holds ``text``."""
    found = 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE 'psp_sandbox_%'")
        for (table,) in cursor.fetchall():
            cursor.execute(f'SELECT count(*) FROM "{table}" t WHERE t::text LIKE %s', [f"%{text}%"])  # noqa: S608
            found += cursor.fetchone()[0]
    return found


@over_http
def test_a_session_is_created_with_stripes_fields_and_a_hosted_page_url(sandbox: Sandbox) -> None:
    session = sandbox.client.v1.checkout.sessions.create(params=session_params(expand=["line_items"]))

    assert re.fullmatch(r"cs_test_[A-Za-z0-9]{58}", session.id)
    assert (session.object, session.mode, session.status, session.payment_status) == (
        "checkout.session",
        "payment",
        "open",
        "unpaid",
    )
    assert (session.amount_subtotal, session.amount_total, session.currency) == (2999, 2999, "eur")
    assert session.url == f"{sandbox.url}/c/pay/{session.id}"
    assert session.payment_intent is None
    assert session.client_reference_id == "chk_1001"
    assert session.metadata.to_dict() == {"checkout_id": "chk_1001"}
    assert abs(session.expires_at - (time.time() + 24 * 3600)) < 60
    assert session.line_items is not None
    assert [(item.description, item.quantity, item.amount_total) for item in session.line_items.data] == [
        ("Tea pot", 2, 2500),
        ("Cups", 1, 499),
    ]
    assert sandbox.client.v1.checkout.sessions.retrieve(session.id).amount_total == 2999


@over_http
@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        (
            {"line_items": [line_item("eur", 500, "A", 1), line_item("usd", 500, "B", 1)]},
            "line_items",
        ),
        ({"mode": "subscription"}, "mode"),
        ({"expires_at": int(time.time()) + 600}, "expires_at"),
        ({"expires_at": int(time.time()) + 25 * 3600}, "expires_at"),
        ({"success_url": None}, "success_url"),
        ({"line_items": [{"price": "price_123", "quantity": 1}]}, "line_items[0][price]"),
    ],
)
def test_a_session_stripe_would_refuse_is_a_400(sandbox: Sandbox, overrides: dict[str, Any], param: str) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        sandbox.client.v1.checkout.sessions.create(params=session_params(**overrides))
    assert (caught.value.http_status, caught.value.param) == (400, param)
    assert CheckoutSession.objects.count() == 0


@over_http
def test_the_hosted_page_shows_the_items_the_total_and_the_card_form(sandbox: Sandbox) -> None:
    session = sandbox.client.v1.checkout.sessions.create(params=session_params())
    assert session.url is not None

    page = requests.get(session.url, timeout=10)

    assert page.status_code == 200
    for needle in ['id="cardNumber"', 'id="cardExpiry"', 'id="cardCvc"', 'id="billingName"', 'id="submit"']:
        assert needle in page.text
    assert "Tea pot" in page.text
    assert "29.99 EUR" in page.text
    assert 'href="https://shop.example/cart"' in page.text


@over_http
def test_paying_with_a_good_card_completes_the_session_and_redirects_to_success(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    # given
    params = session_params()
    session = sandbox.client.v1.checkout.sessions.create(params=params)
    assert session.url is not None
    # when
    answer = pay(session.url)
    # then
    assert answer.status_code == 303
    assert answer.headers["Location"] == f"https://shop.example/paid?session={session.id}"
    paid = sandbox.client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["payment_intent"]})
    assert (paid.status, paid.payment_status, paid.url) == ("complete", "paid", None)
    assert paid.customer_details is not None
    assert (paid.customer_details.name, paid.customer_details.email) == ("Ann Example", "ann@example.com")
    intent = paid.payment_intent
    assert isinstance(intent, stripe.PaymentIntent)
    assert (intent.status, intent.amount, intent.currency, intent.description) == (
        "succeeded",
        2999,
        "eur",
        "Order chk_1001",
    )
    assert intent.metadata.to_dict() == {**params["payment_intent_data"]["metadata"], "checkout_session_id": session.id}
    charge = Charge.objects.get(payment_intent_id=intent.id)
    assert (charge.card_brand, charge.card_last4, charge.status) == ("visa", "4242", "succeeded")
    receiver.wait_for(lambda r: len(r.event_types()) == 2)
    assert receiver.event_types() == ["payment_intent.succeeded", "checkout.session.completed"]
    assert receiver.delivered()[1].verified().data.object["id"] == session.id
    listed = sandbox.client.v1.checkout.sessions.list(params={"payment_intent": intent.id})
    assert [item.id for item in listed.data] == [session.id]
    # the card number is nowhere
    assert stored_anywhere("4242424242424242") == 0
    assert stored_anywhere("4242 4242 4242 4242") == 0


@over_http
def test_a_declined_card_stays_on_the_page_with_the_error_and_another_card_pays_the_same_intent(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    # given
    session = sandbox.client.v1.checkout.sessions.create(params=session_params())
    assert session.url is not None
    # when
    declined = pay(session.url, "4000 0000 0000 0002")
    # then
    assert declined.status_code == 402
    assert re.search(r'id="error"[^>]*>\s*Your card was declined\.', declined.text)
    assert "4000 0000 0000 0002" not in declined.text
    assert "4000000000000002" not in declined.text
    still_open = sandbox.client.v1.checkout.sessions.retrieve(session.id)
    assert (still_open.status, still_open.payment_status) == ("open", "unpaid")
    first_intent = still_open.payment_intent
    assert first_intent is not None
    receiver.wait_for(lambda r: r.event_types() == ["payment_intent.payment_failed"])
    # when: another card
    insufficient = pay(session.url, "4000000000009995")
    assert "insufficient funds" in insufficient.text
    paid = pay(session.url)
    # then
    assert paid.status_code == 303
    done = sandbox.client.v1.checkout.sessions.retrieve(session.id)
    assert (done.status, done.payment_intent) == ("complete", first_intent)
    assert Charge.objects.filter(payment_intent_id=first_intent).count() == 3
    receiver.wait_for(lambda r: len(r.event_types()) == 4)
    assert receiver.event_types()[2:] == ["payment_intent.succeeded", "checkout.session.completed"]
    # and the page now says it is paid
    assert "This payment is complete" in requests.get(session.url, timeout=10).text


@over_http
def test_a_3ds_card_goes_through_the_authentication_page_then_to_success(sandbox: Sandbox) -> None:
    session = sandbox.client.v1.checkout.sessions.create(params=session_params())
    assert session.url is not None

    to_authenticate = pay(session.url, "4000 0027 6000 3184")
    page_url = to_authenticate.headers["Location"]
    completed = requests.post(page_url, data={"outcome": "succeed"}, allow_redirects=False, timeout=10)

    assert to_authenticate.status_code == 303
    assert re.fullmatch(rf"{sandbox.url}/v1/sandbox/authenticate/pi_[A-Za-z0-9]+", page_url)
    assert completed.status_code == 303
    assert completed.headers["Location"] == f"https://shop.example/paid?session={session.id}"
    assert sandbox.client.v1.checkout.sessions.retrieve(session.id).status == "complete"
    assert Charge.objects.get().card_last4 == "3184"


@over_http
def test_failed_authentication_goes_back_to_the_page_which_shows_the_failure(sandbox: Sandbox) -> None:
    session = sandbox.client.v1.checkout.sessions.create(params=session_params())
    assert session.url is not None

    page_url = pay(session.url, "4000002760003184").headers["Location"]
    failed = requests.post(page_url, data={"outcome": "fail"}, allow_redirects=False, timeout=10)

    assert failed.headers["Location"] == session.url
    page = requests.get(session.url, timeout=10)
    assert 'id="error"' in page.text
    assert sandbox.client.v1.checkout.sessions.retrieve(session.id).status == "open"


@over_http
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"cardNumber": "4242 4242 4242 4241"}, "Your card number is invalid."),
        ({"cardExpiry": "13/30"}, "Your card's expiration date is incomplete."),
        ({"cardExpiry": "01/20"}, "Your card's expiration year is in the past."),
        ({"cardCvc": "1"}, "Your card's security code is incomplete."),
        ({"billingName": ""}, "Enter the name on the card."),
    ],
)
def test_bad_card_input_is_refused_on_the_page_without_echoing_it(
    sandbox: Sandbox, fields: dict[str, str], message: str
) -> None:
    session = sandbox.client.v1.checkout.sessions.create(params=session_params())
    assert session.url is not None

    answer = pay(session.url, **fields)

    assert answer.status_code == 400
    assert message.replace("'", "&#x27;") in answer.text
    assert "4242 4242 4242 424" not in answer.text
    assert Event.objects.count() == 0
    assert sandbox.client.v1.checkout.sessions.retrieve(session.id).payment_intent is None


@over_http
def test_expiring_a_session_sends_expired_and_its_page_says_so(sandbox: Sandbox, receiver: Receiver) -> None:
    # given: a first attempt declined, so the session has an intent
    session = sandbox.client.v1.checkout.sessions.create(params=session_params())
    assert session.url is not None
    pay(session.url, "4000000000000002")
    # when
    expired = sandbox.client.v1.checkout.sessions.expire(session.id)
    # then
    assert (expired.status, expired.url) == ("expired", None)
    assert sandbox.client.v1.payment_intents.retrieve(str(expired.payment_intent)).status == "canceled"
    receiver.wait_for(lambda r: "checkout.session.expired" in r.event_types())
    assert receiver.event_types() == [
        "payment_intent.payment_failed",
        "payment_intent.canceled",
        "checkout.session.expired",
    ]
    assert "has expired" in requests.get(session.url, timeout=10).text
    assert pay(session.url).headers["Location"] == session.url
    with pytest.raises(stripe.InvalidRequestError):
        sandbox.client.v1.checkout.sessions.expire(session.id)


@over_http
def test_the_clock_expires_a_session_past_its_expires_at(sandbox: Sandbox, receiver: Receiver) -> None:
    session = sandbox.client.v1.checkout.sessions.create(params=session_params(expires_at=int(time.time()) + 31 * 60))
    CheckoutSession.objects.filter(pk=session.id).update(expires_at=timezone.now() - timedelta(seconds=1))

    receiver.wait_for(lambda r: r.event_types() == ["checkout.session.expired"])

    assert sandbox.client.v1.checkout.sessions.retrieve(session.id).status == "expired"
    wait_until(lambda: Event.objects.filter(type="checkout.session.expired").count() == 1)
