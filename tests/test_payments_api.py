from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from api.services import IssuedKey, api_client_create
from payments.models import OrderStatus, PaymentEvent, PaymentOrder
from tests.conftest import order, payment_body, unique
from wallets.models import Seller

pytestmark = pytest.mark.django_db


def test_create_payment_returns_the_payment_with_its_orders(post_payment: Callable[..., Any]) -> None:
    # given
    body = payment_body()

    # when
    response = post_payment(body)

    # then
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["payment_id"].startswith("pay_")
    assert data["checkout_id"] == body["checkout_id"]
    assert data["status"] == "IN_PROGRESS"
    assert data["created_at"]
    assert data["hosted_page_url"] is None
    assert [o["payment_order_id"] for o in data["payment_orders"]] == [
        o["payment_order_id"] for o in body["payment_orders"]
    ]
    assert data["payment_orders"][0] == {
        "payment_order_id": body["payment_orders"][0]["payment_order_id"],
        "seller_account": "seller_7",
        "amount": "19.99",
        "currency": "EUR",
        "status": "NOT_STARTED",
        "failure_code": None,
        "next_action_url": None,
    }
    event = PaymentEvent.objects.get(payment_id=data["payment_id"])
    assert event.buyer_id == "buyer_42"
    assert event.payment_method_token == "pm_card_visa"
    assert sorted(str(o.amount.amount) for o in event.orders.all()) == ["19.990", "5.000"]
    assert set(event.orders.values_list("status", flat=True)) == {OrderStatus.NOT_STARTED}
    assert Seller.objects.filter(account__in=["seller_7", "seller_9"]).count() == 2


def test_created_payment_reads_back(api: APIClient, post_payment: Callable[..., Any]) -> None:
    created = post_payment(payment_body()).json()

    fetched = api.get(f"/v1/payments/{created['payment_id']}")
    order_id = created["payment_orders"][1]["payment_order_id"]
    fetched_order = api.get(f"/v1/payment-orders/{order_id}")

    assert fetched.status_code == 200
    assert fetched.json() == created
    assert fetched_order.status_code == 200
    assert fetched_order.json() == {
        **created["payment_orders"][1],
        "payment_id": created["payment_id"],
        "released": False,
        "refunds": [],
        "disputes": [],
    }


@pytest.mark.parametrize(("currency", "amount"), [("JPY", "1500"), ("KWD", "1.005"), ("EUR", "0.01")])
def test_amounts_keep_the_currency_decimal_places(post_payment: Callable[..., Any], currency: str, amount: str) -> None:
    response = post_payment(payment_body(payment_orders=[order(amount=amount, currency=currency)]))
    assert response.status_code == 201, response.content
    assert response.json()["payment_orders"][0]["amount"] == amount


def test_without_an_api_key_the_answer_is_401(make_api: Callable[[str | None], APIClient]) -> None:
    anonymous = make_api(None)
    for response in (
        anonymous.post("/v1/payments", data="{}", content_type="application/json", HTTP_IDEMPOTENCY_KEY="k"),
        anonymous.get("/v1/payments/pay_x"),
        make_api("mpk_not_a_real_key").get("/v1/payments/pay_x"),
    ):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "authentication_failed"
        assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_client_cannot_see_another_clients_payment(
    post_payment: Callable[..., Any], make_api: Callable[[str | None], APIClient]
) -> None:
    # given a payment of the first client
    created = post_payment(payment_body()).json()
    other = make_api(api_client_create(name=unique("other")).key)

    # when the second client asks for it
    payment = other.get(f"/v1/payments/{created['payment_id']}")
    payment_order = other.get(f"/v1/payment-orders/{created['payment_orders'][0]['payment_order_id']}")

    # then it does not exist for them
    assert payment.status_code == 404
    assert payment.json()["error"]["code"] == "not_found"
    assert payment_order.status_code == 404


def test_unknown_ids_answer_404(api: APIClient) -> None:
    assert api.get("/v1/payments/pay_doesnotexist").status_code == 404
    assert api.get("/v1/payment-orders/po_doesnotexist").status_code == 404


def test_a_cached_key_is_looked_up_again_once_its_cache_entry_expires(
    issued_key: IssuedKey, api: APIClient, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a key in use, cached by this process for a minute
    settings.API_KEY_CACHE_SECONDS = 60
    assert api.get("/v1/payments/pay_x").status_code == 404
    issued_key.client.revoked_at = timezone.now()
    issued_key.client.save()

    # when the minute has passed
    from api import authentication

    later = authentication.time.monotonic() + 61
    monkeypatch.setattr(authentication.time, "monotonic", lambda: later)

    # then the revocation is seen
    assert api.get("/v1/payments/pay_x").status_code == 401


def test_a_revoked_key_stops_working_once_its_cache_entry_expires(
    issued_key: IssuedKey, api: APIClient, settings: Any
) -> None:
    # given a key in use, cached by this process for API_KEY_CACHE_SECONDS
    settings.API_KEY_CACHE_SECONDS = 0
    assert api.get("/v1/payments/pay_x").status_code == 404

    # when it is revoked
    issued_key.client.revoked_at = timezone.now()
    issued_key.client.save()

    # then the next lookup after expiry refuses it
    assert api.get("/v1/payments/pay_x").status_code == 401


# --- Input rules: each has its own code, names the field, and stores nothing. -------------------------------------

INVALID_BODIES: list[tuple[str, Callable[[], dict[str, Any]], str, str | None]] = [
    (
        "amount as a JSON number",
        lambda: payment_body(payment_orders=[order(amount=19.99)]),
        "amount_not_string",
        "payment_orders[0].amount",
    ),
    (
        "amount as an integer",
        lambda: payment_body(payment_orders=[order(amount=20)]),
        "amount_not_string",
        "payment_orders[0].amount",
    ),
    (
        "too many EUR decimals",
        lambda: payment_body(payment_orders=[order(amount="1.005")]),
        "amount_precision_exceeded",
        "payment_orders[0].amount",
    ),
    (
        "decimals on JPY",
        lambda: payment_body(payment_orders=[order(amount="100.5", currency="JPY")]),
        "amount_precision_exceeded",
        "payment_orders[0].amount",
    ),
    (
        "four KWD decimals",
        lambda: payment_body(payment_orders=[order(amount="1.0001", currency="KWD")]),
        "amount_precision_exceeded",
        "payment_orders[0].amount",
    ),
    (
        "zero amount",
        lambda: payment_body(payment_orders=[order(amount="0.00")]),
        "amount_not_positive",
        "payment_orders[0].amount",
    ),
    (
        "negative amount",
        lambda: payment_body(payment_orders=[order(amount="-5.00")]),
        "amount_invalid",
        "payment_orders[0].amount",
    ),
    (
        "amount in exponent form",
        lambda: payment_body(payment_orders=[order(amount="1e2")]),
        "amount_invalid",
        "payment_orders[0].amount",
    ),
    (
        "amount over the maximum",
        lambda: payment_body(payment_orders=[order(amount="100000.01")]),
        "amount_too_large",
        "payment_orders[0].amount",
    ),
    (
        "unsupported currency",
        lambda: payment_body(payment_orders=[order(currency="XYZ")]),
        "currency_not_supported",
        "payment_orders[0].currency",
    ),
    (
        "lower-case currency",
        lambda: payment_body(payment_orders=[order(currency="eur")]),
        "currency_not_supported",
        "payment_orders[0].currency",
    ),
    ("no orders", lambda: payment_body(payment_orders=[]), "too_few_orders", "payment_orders"),
    (
        "51 orders",
        lambda: payment_body(payment_orders=[order() for _ in range(51)]),
        "too_many_orders",
        "payment_orders",
    ),
    ("orders not a list", lambda: payment_body(payment_orders={"a": 1}), "field_not_a_list", "payment_orders"),
    (
        "same payment_order_id twice",
        lambda: payment_body(payment_orders=[order(payment_order_id="po_twice"), order(payment_order_id="po_twice")]),
        "duplicate_payment_order_id",
        "payment_orders[1].payment_order_id",
    ),
    (
        "bad payment_order_id",
        lambda: payment_body(payment_orders=[order(payment_order_id="po 1")]),
        "payment_order_id_invalid",
        "payment_orders[0].payment_order_id",
    ),
    (
        "bad seller_account",
        lambda: payment_body(payment_orders=[order(seller_account="seller/7")]),
        "seller_account_invalid",
        "payment_orders[0].seller_account",
    ),
    (
        "seller_account too long",
        lambda: payment_body(payment_orders=[order(seller_account="s" * 65)]),
        "seller_account_invalid",
        "payment_orders[0].seller_account",
    ),
    ("bad buyer id", lambda: payment_body(buyer_info={"id": "buyer 42"}), "buyer_id_invalid", "buyer_info.id"),
    ("numeric buyer id", lambda: payment_body(buyer_info={"id": 42}), "buyer_id_invalid", "buyer_info.id"),
    (
        "bad email",
        lambda: payment_body(buyer_info={"id": "b1", "email": "not-an-email"}),
        "email_invalid",
        "buyer_info.email",
    ),
    (
        "bad country",
        lambda: payment_body(buyer_info={"id": "b1", "country": "XX"}),
        "country_invalid",
        "buyer_info.country",
    ),
    ("bad checkout_id", lambda: payment_body(checkout_id="chk 1"), "checkout_id_invalid", "checkout_id"),
    ("empty checkout_id", lambda: payment_body(checkout_id=""), "checkout_id_invalid", "checkout_id"),
    (
        "missing checkout_id",
        lambda: {k: v for k, v in payment_body().items() if k != "checkout_id"},
        "field_required",
        "checkout_id",
    ),
    (
        "missing amount",
        lambda: payment_body(payment_orders=[{k: v for k, v in order().items() if k != "amount"}]),
        "field_required",
        "payment_orders[0].amount",
    ),
    (
        "bad payment method token",
        lambda: payment_body(payment_method={"token": "pm card"}),
        "payment_method_token_invalid",
        "payment_method.token",
    ),
    ("unknown top-level field", lambda: payment_body(coupon="X"), "unknown_field", "coupon"),
    (
        "unknown nested field",
        lambda: payment_body(payment_method={"token": "pm_card_visa", "cvc": "123"}),
        "unknown_field",
        "payment_method.cvc",
    ),
    (
        "unknown order field",
        lambda: payment_body(payment_orders=[order(fee="1.00")]),
        "unknown_field",
        "payment_orders[0].fee",
    ),
    (
        "card number as token",
        lambda: payment_body(payment_method={"token": "4242424242424242"}),
        "card_data_not_allowed",
        "payment_method.token",
    ),
    (
        "card number with spaces in an unknown field",
        lambda: payment_body(payment_method={"token": "pm_card_visa", "number": "4242 4242 4242 4242"}),
        "card_data_not_allowed",
        "payment_method.number",
    ),
    (
        "card number as a JSON number",
        lambda: payment_body(checkout_id=4000056655665556),
        "card_data_not_allowed",
        "checkout_id",
    ),
    ("body is a list", lambda: [payment_body()], "field_invalid", None),
]


@pytest.mark.parametrize(("case", "make_body", "code", "field"), INVALID_BODIES, ids=[c[0] for c in INVALID_BODIES])
def test_invalid_input_is_refused_with_its_code_and_stores_nothing(
    post_payment: Callable[..., Any],
    row_counts: Callable[[], dict[str, int]],
    case: str,
    make_body: Callable[[], dict[str, Any]],
    code: str,
    field: str | None,
) -> None:
    # given
    before = row_counts()

    # when
    response = post_payment(make_body())

    # then
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == code
    assert error["field"] == field
    assert error["message"]
    assert row_counts() == before


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"", "field_required"),
        (b'{"amount": NaN}', "invalid_json"),
        (b'{"checkout_id": "a", "checkout_id": "b"}', "duplicate_key"),
    ],
)
def test_malformed_json_is_refused(
    post_payment: Callable[..., Any], row_counts: Callable[[], dict[str, int]], raw: bytes, code: str
) -> None:
    before = row_counts()
    response = post_payment(None, raw=raw)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert row_counts() == before


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b'{"x": 1e1000000000000}', 400, "invalid_json"),
        (b'{"x": 1e300000000}', 400, "invalid_json"),
        (b"[" * 50_000 + b"]" * 50_000, 400, "body_too_deep"),
        (b'{"a":' * 17 + b"1" + b"}" * 17, 400, "body_too_deep"),
        (b'{"checkout_id": "' + b"x" * 3_000_000 + b'"}', 413, "body_too_large"),
    ],
    ids=["huge exponent", "large exponent", "50k levels", "17 levels", "3 MB"],
)
def test_hostile_bodies_are_refused_cheaply(
    post_payment: Callable[..., Any], row_counts: Callable[[], dict[str, int]], raw: bytes, status: int, code: str
) -> None:
    before = row_counts()
    response = post_payment(None, raw=raw)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert row_counts() == before


@pytest.mark.parametrize(
    ("make_body", "field"),
    [
        (lambda: payment_body(checkout_id="x4242424242424242"), "checkout_id"),
        (lambda: payment_body(buyer_info={"id": "c4000056655665556"}), "buyer_info.id"),
        (lambda: payment_body(payment_method={"token": "pm4242424242424242"}), "payment_method.token"),
    ],
    ids=["checkout_id", "buyer id", "token"],
)
def test_a_card_number_glued_to_letters_is_still_refused(
    post_payment: Callable[..., Any], make_body: Callable[[], dict[str, Any]], field: str
) -> None:
    response = post_payment(make_body())
    assert response.status_code == 400
    assert response.json()["error"] == {**response.json()["error"], "code": "card_data_not_allowed", "field": field}


@pytest.mark.parametrize(
    ("currency", "maximum", "over"), [("JPY", "15000000", "15000001"), ("KWD", "30000.000", "30000.001")]
)
def test_each_currency_has_its_own_maximum(
    post_payment: Callable[..., Any], currency: str, maximum: str, over: str
) -> None:
    assert post_payment(payment_body(payment_orders=[order(currency=currency, amount=maximum)])).status_code == 201
    response = post_payment(payment_body(payment_orders=[order(currency=currency, amount=over)]))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "amount_too_large"


def test_a_body_that_is_not_json_is_415(api: APIClient) -> None:
    response = api.post(
        "/v1/payments", data="a=b", content_type="application/x-www-form-urlencoded", HTTP_IDEMPOTENCY_KEY="k-form"
    )
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


def test_a_card_number_is_neither_stored_nor_logged(
    post_payment: Callable[..., Any], caplog: pytest.LogCaptureFixture, row_counts: Callable[[], dict[str, int]]
) -> None:
    # given a body carrying a card number
    before = row_counts()
    body = payment_body(buyer_info={"id": "b1", "email": "ann@example.com", "country": "DE"})
    body["payment_orders"][0]["payment_order_id"] = "po_4242-4242-4242-4242"

    # when
    with caplog.at_level(logging.DEBUG):
        response = post_payment(body)

    # then it is refused, without echo, without trace
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "card_data_not_allowed"
    assert "4242" not in response.content.decode()
    assert "4242" not in caplog.text
    assert row_counts() == before


def test_an_order_id_already_used_is_a_409_naming_the_payment(post_payment: Callable[..., Any]) -> None:
    first = post_payment(payment_body()).json()
    taken = first["payment_orders"][1]["payment_order_id"]

    response = post_payment(payment_body(payment_orders=[order(), order(payment_order_id=taken)]))

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "payment_order_id_taken"
    assert error["field"] == "payment_orders[1].payment_order_id"
    assert first["payment_id"] in error["message"]
    assert PaymentOrder.objects.filter(payment_order_id=taken).count() == 1
    assert PaymentEvent.objects.count() == 1


def test_an_order_id_used_by_another_client_is_taken_without_saying_by_whom(
    post_payment: Callable[..., Any], make_api: Callable[[str | None], APIClient]
) -> None:
    first = post_payment(payment_body()).json()
    taken = first["payment_orders"][0]["payment_order_id"]
    other = make_api(api_client_create(name=unique("other")).key)

    response = post_payment(payment_body(payment_orders=[order(payment_order_id=taken)]), client=other)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "payment_order_id_taken"
    assert first["payment_id"] not in json.dumps(response.json())


def test_responses_match_the_documented_output_serializers(post_payment: Callable[..., Any]) -> None:
    # given a payment whose orders are in different states, one failed with a code
    from payments.api.serializers import (
        PaymentOrderDetailOutput,
        PaymentOutput,
        payment_order_representation,
        payment_representation,
    )

    created = post_payment(payment_body(payment_orders=[order(), order(currency="JPY", amount="700")])).json()
    failed = PaymentOrder.objects.get(payment_order_id=created["payment_orders"][0]["payment_order_id"])
    failed.start_execution(actor="test")
    failed.save()  # one transition per save: PostgreSQL checks each UPDATE against the state machine
    failed.mark_failed(actor="test", reason="declined", failure_code="card_declined")
    failed.save()
    event = PaymentEvent.objects.prefetch_related("orders").get(payment_id=created["payment_id"])

    # then the hand-built responses are exactly what the schema's serializers say
    assert payment_representation(event) == PaymentOutput(event).data
    for item in event.orders.all():
        assert payment_order_representation(item) == PaymentOrderDetailOutput(item).data
    codes = {o["payment_order_id"]: o["failure_code"] for o in payment_representation(event)["payment_orders"]}
    assert codes == {failed.payment_order_id: "card_declined", created["payment_orders"][1]["payment_order_id"]: None}


def test_a_card_number_in_a_url_is_masked_in_the_logs(api: APIClient) -> None:
    # given the console handler configured in settings.LOGGING, writing somewhere we can read
    import io

    from api.logfilters import SensitiveDataFilter

    root = logging.getLogger()
    handler = next(h for h in root.handlers if any(isinstance(f, SensitiveDataFilter) for f in h.filters))
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    original = handler.setStream(stream)

    # when a card number is typed into a URL (Django logs "Not Found: <path>")
    try:
        response = api.get("/v1/payments/4242424242424242")
    finally:
        handler.setStream(original)

    # then the line is written with the number masked
    assert response.status_code == 404
    logged = stream.getvalue()
    assert "Not Found" in logged
    assert "[card number removed]" in logged
    assert "4242424242424242" not in logged
