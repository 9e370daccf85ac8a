"""The sandbox PSP, in its own process, spoken to with stripe-python exactly as the project's adapter will (and, for
what the library hides, with plain HTTP). Its rows are checked in the shared test database."""

from __future__ import annotations

import re
import threading
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
import requests
import stripe
from django.utils import timezone

from psp_sandbox import services
from psp_sandbox.errors import InvalidRequest
from psp_sandbox.fees import fee_split
from psp_sandbox.idempotency import idempotency_keys_purge, lock_id
from psp_sandbox.models import BalanceTransaction, Charge, IdempotencyKey, PaymentIntent
from psp_sandbox.params import parse_form
from psp_sandbox.search import query_filter
from psp_sandbox.selectors import charge_counts_by_order
from tests.conftest import pg_params, unique

if TYPE_CHECKING:
    # Only for annotations: importing the plugin module before pytest registers it would skip its assert rewriting.
    from tests.sandbox import Sandbox


over_http = pytest.mark.django_db(transaction=True)


def intent_params(payment_method: str = "pm_card_visa", **overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "amount": 1999,
        "currency": "eur",
        "payment_method": payment_method,
        "payment_method_types": ["card"],
        "confirm": True,
        "metadata": {"payment_order_id": unique("po"), "payment_id": unique("pay")},
    }
    params.update(overrides)
    return params


def raw_post(sandbox: Sandbox, path: str, data: Any, *, key: str | None = None, **headers: str) -> requests.Response:
    all_headers = {"Authorization": f"Bearer {sandbox.api_key}", **headers}
    if key is not None:
        all_headers["Idempotency-Key"] = key
    return requests.post(f"{sandbox.url}{path}", data=data, headers=all_headers, timeout=10)


# --- Charging the test payment methods ------------------------------------------------------------------------------


@over_http
def test_visa_succeeds_with_a_charge_and_a_balance_transaction_carrying_the_fee(sandbox: Sandbox) -> None:
    # given
    params = intent_params(expand=["latest_charge.balance_transaction"])
    order_id = params["metadata"]["payment_order_id"]
    # when
    intent = sandbox.client.v1.payment_intents.create(params=params, options={"idempotency_key": order_id})
    # then
    assert re.fullmatch(r"pi_[A-Za-z0-9]{24}", intent.id)
    assert intent.status == "succeeded"
    assert (intent.amount, intent.amount_received, intent.currency) == (1999, 1999, "eur")
    assert intent.metadata["payment_order_id"] == order_id
    charge = intent.latest_charge
    assert isinstance(charge, stripe.Charge)
    assert re.fullmatch(r"ch_[A-Za-z0-9]{24}", charge.id)
    assert (charge.status, charge.paid, charge.payment_intent) == ("succeeded", True, intent.id)
    txn = charge.balance_transaction
    assert isinstance(txn, stripe.BalanceTransaction)
    assert re.fullmatch(r"txn_[A-Za-z0-9]{24}", txn.id)
    # 2.9 % of 1999 is 57.971, rounded half up to 58, plus 30.
    assert (txn.amount, txn.fee, txn.net) == (1999, 88, 1911)
    assert (txn.type, txn.reporting_category, txn.status, txn.source) == ("charge", "charge", "pending", charge.id)
    created = datetime.fromtimestamp(txn.created, UTC)
    assert datetime.fromtimestamp(txn.available_on, UTC) == datetime.combine(
        created.date() + timedelta(days=2), datetime.min.time(), UTC
    )
    assert txn.fee_details[0].type == "stripe_fee"
    assert charge_counts_by_order([order_id]) == {order_id: 1}
    assert BalanceTransaction.objects.get(pk=txn.id).net == 1911


@over_http
@pytest.mark.parametrize(
    ("payment_method", "decline_code", "message"),
    [
        ("pm_card_chargeDeclined", "generic_decline", "Your card was declined."),
        ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds", "Your card has insufficient funds."),
    ],
)
def test_declined_card_is_a_402_and_leaves_the_intent_requiring_a_payment_method(
    sandbox: Sandbox, payment_method: str, decline_code: str, message: str
) -> None:
    # given
    params = intent_params(payment_method)
    order_id = params["metadata"]["payment_order_id"]
    # when
    with pytest.raises(stripe.CardError) as caught:
        sandbox.client.v1.payment_intents.create(params=params, options={"idempotency_key": order_id})
    # then
    error = caught.value
    assert (error.http_status, error.code, error.user_message) == (402, "card_declined", message)
    assert error.error is not None
    assert error.error.decline_code == decline_code
    assert error.error.type == "card_error"
    intent = error.error.payment_intent
    assert intent is not None
    assert intent.status == "requires_payment_method"
    stored = sandbox.client.v1.payment_intents.retrieve(intent.id)
    assert stored.status == "requires_payment_method"
    assert stored.last_payment_error is not None
    assert stored.last_payment_error.decline_code == decline_code
    assert Charge.objects.get(payment_order_id=order_id).status == Charge.Status.FAILED
    assert charge_counts_by_order([order_id]) == {}


@over_http
def test_authentication_required_waits_for_action_without_charging(sandbox: Sandbox) -> None:
    params = intent_params("pm_card_authenticationRequired", return_url="https://shop.example/return")
    order_id = params["metadata"]["payment_order_id"]

    intent = sandbox.client.v1.payment_intents.create(params=params)

    assert intent.status == "requires_action"
    assert intent.next_action is not None
    assert intent.next_action.type == "redirect_to_url"
    assert intent.latest_charge is None
    assert charge_counts_by_order([order_id]) == {}


@over_http
def test_an_intent_waiting_for_action_succeeds_once_settled(sandbox: Sandbox) -> None:
    # given
    intent = sandbox.client.v1.payment_intents.create(params=intent_params("pm_card_authenticationRequired"))
    # when: what the authentication page (or the webhook scheduler) will call, twice to show it is safe
    services.payment_intent_settle(intent_id=intent.id)
    services.payment_intent_settle(intent_id=intent.id)
    # then
    settled = sandbox.client.v1.payment_intents.retrieve(intent.id, params={"expand": ["latest_charge"]})
    assert settled.status == "succeeded"
    assert settled.next_action is None
    assert isinstance(settled.latest_charge, stripe.Charge)
    assert settled.latest_charge.status == "succeeded"
    assert Charge.objects.filter(payment_intent_id=intent.id).count() == 1


@over_http
def test_processing_card_stays_processing_with_a_pending_charge(sandbox: Sandbox) -> None:
    params = intent_params("pm_card_processing")
    order_id = params["metadata"]["payment_order_id"]

    intent = sandbox.client.v1.payment_intents.create(params=params, options={"idempotency_key": order_id})

    assert intent.status == "processing"
    assert intent.amount_received == 0
    charge = Charge.objects.get(payment_order_id=order_id)
    assert (charge.status, charge.balance_transaction_id) == (Charge.Status.PENDING, None)
    # A pending charge is money on its way: it counts toward "charges per order".
    assert charge_counts_by_order([order_id]) == {order_id: 1}


# --- Reading ----------------------------------------------------------------------------------------------------------


@over_http
def test_retrieve_returns_the_stored_intent(sandbox: Sandbox) -> None:
    created = sandbox.client.v1.payment_intents.create(params=intent_params())

    fetched = sandbox.client.v1.payment_intents.retrieve(created.id)

    assert fetched.id == created.id
    assert fetched.status == "succeeded"
    assert fetched.latest_charge == created.latest_charge
    assert fetched.metadata.to_dict() == created.metadata.to_dict()


@over_http
def test_retrieve_of_an_unknown_intent_is_a_404_resource_missing(sandbox: Sandbox) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        sandbox.client.v1.payment_intents.retrieve("pi_doesnotexist")
    assert (caught.value.http_status, caught.value.code, caught.value.param) == (404, "resource_missing", "intent")


@over_http
def test_search_by_metadata_finds_the_intents_of_one_order(sandbox: Sandbox) -> None:
    # given: two attempts for one order (a decline, then a success) and another order
    order_id = unique("po")
    with pytest.raises(stripe.CardError):
        sandbox.client.v1.payment_intents.create(
            params=intent_params("pm_card_chargeDeclined", metadata={"payment_order_id": order_id})
        )
    paid = sandbox.client.v1.payment_intents.create(params=intent_params(metadata={"payment_order_id": order_id}))
    sandbox.client.v1.payment_intents.create(params=intent_params())
    # when
    found = sandbox.client.v1.payment_intents.search(
        params={"query": f"metadata['payment_order_id']:'{order_id}' AND status:'succeeded'"}
    )
    everything = sandbox.client.v1.payment_intents.search(
        params={"query": f"metadata['payment_order_id']:'{order_id}'"}
    )
    # then
    assert [intent.id for intent in found.data] == [paid.id]
    assert found.has_more is False
    assert len(everything.data) == 2
    raw = requests.get(
        f"{sandbox.url}/v1/payment_intents/search",
        params={"query": f"metadata['payment_order_id']:'{order_id}'", "limit": "1"},
        headers={"Authorization": f"Bearer {sandbox.api_key}"},
        timeout=10,
    ).json()
    assert (raw["object"], raw["url"], raw["has_more"], len(raw["data"])) == (
        "search_result",
        "/v1/payment_intents/search",
        True,
        1,
    )


@over_http
def test_search_with_an_unparseable_query_is_a_400_on_query(sandbox: Sandbox) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        sandbox.client.v1.payment_intents.search(params={"query": "metadata['x']='y'"})
    assert (caught.value.http_status, caught.value.param) == (400, "query")


# --- Refusals -------------------------------------------------------------------------------------------------------


@over_http
def test_a_wrong_api_key_is_a_401(sandbox: Sandbox) -> None:
    with pytest.raises(stripe.AuthenticationError) as caught:
        sandbox.client_with("sk_test_not_the_right_one").v1.payment_intents.create(params=intent_params())
    assert caught.value.http_status == 401
    assert "sk_test_*************_one" in str(caught.value.user_message)
    assert PaymentIntent.objects.count() == 0


@over_http
def test_the_key_as_basic_auth_user_is_accepted_like_curl_u(sandbox: Sandbox) -> None:
    response = requests.get(f"{sandbox.url}/v1/payment_intents/pi_x", auth=(sandbox.api_key, ""), timeout=10)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "resource_missing"


@over_http
@pytest.mark.parametrize(
    ("overrides", "param", "code"),
    [
        ({"amount": "12.50"}, "amount", "parameter_invalid_integer"),
        ({"amount": 10}, "amount", "amount_too_small"),
        ({"currency": "xyz"}, "currency", "parameter_invalid_string"),
        ({"confirm": "yes"}, "confirm", "parameter_invalid_boolean"),
        ({"colour": "blue"}, "colour", "parameter_unknown"),
        ({"metadata": {"payment_order_id": {"nested": "x"}}}, "metadata[payment_order_id]", None),
        ({"payment_method": "pm_card_unknown"}, "payment_method", "resource_missing"),
        ({"amount": None}, "amount", "parameter_missing"),
    ],
)
def test_a_bad_parameter_is_a_400_naming_it(
    sandbox: Sandbox, overrides: dict[str, Any], param: str, code: str | None
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        sandbox.client.v1.payment_intents.create(params=intent_params(**overrides))
    assert (caught.value.http_status, caught.value.param, caught.value.code) == (400, param, code)
    assert caught.value.error is not None
    assert caught.value.error.type == "invalid_request_error"
    assert PaymentIntent.objects.count() == 0


@over_http
def test_a_json_body_is_refused_as_stripe_v1_takes_forms(sandbox: Sandbox) -> None:
    response = raw_post(sandbox, "/v1/payment_intents", '{"amount": 1999}', **{"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


@over_http
def test_an_unknown_url_is_stripes_404(sandbox: Sandbox) -> None:
    response = raw_post(sandbox, "/v1/charges", {"amount": "100"})
    assert response.status_code == 404
    assert response.json()["error"]["message"].startswith("Unrecognized request URL (POST: /v1/charges)")


# --- Idempotency ----------------------------------------------------------------------------------------------------


@over_http
def test_the_same_key_and_parameters_replay_the_first_response_and_charge_once(sandbox: Sandbox) -> None:
    # given
    params = intent_params()
    order_id = params["metadata"]["payment_order_id"]
    first = sandbox.client.v1.payment_intents.create(params=params, options={"idempotency_key": order_id})
    # when
    again = sandbox.client.v1.payment_intents.create(params=params, options={"idempotency_key": order_id})
    # then
    assert again.id == first.id
    assert again.to_dict() == first.to_dict()
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.last_response.headers
    assert charge_counts_by_order([order_id]) == {order_id: 1}
    assert PaymentIntent.objects.filter(payment_order_id=order_id).count() == 1


@over_http
def test_a_decline_is_replayed_too_without_a_second_attempt(sandbox: Sandbox) -> None:
    params = intent_params("pm_card_chargeDeclined")
    key = unique("idem")
    bodies = []
    for _ in range(2):
        with pytest.raises(stripe.CardError) as caught:
            sandbox.client.v1.payment_intents.create(params=params, options={"idempotency_key": key})
        bodies.append(caught.value.json_body)
    assert bodies[0] == bodies[1]
    assert Charge.objects.filter(payment_order_id=params["metadata"]["payment_order_id"]).count() == 1


@over_http
def test_the_same_key_with_other_parameters_is_an_idempotency_error(sandbox: Sandbox) -> None:
    key = unique("idem")
    params = intent_params()
    sandbox.client.v1.payment_intents.create(params=params, options={"idempotency_key": key})

    with pytest.raises(stripe.IdempotencyError) as caught:
        sandbox.client.v1.payment_intents.create(params={**params, "amount": 2999}, options={"idempotency_key": key})

    assert caught.value.http_status == 400
    assert caught.value.error is not None
    assert caught.value.error.type == "idempotency_error"
    assert PaymentIntent.objects.count() == 1


@over_http
def test_a_request_refused_by_validation_saves_nothing_under_its_key(sandbox: Sandbox) -> None:
    key = unique("idem")
    with pytest.raises(stripe.InvalidRequestError):
        sandbox.client.v1.payment_intents.create(params=intent_params(amount="abc"), options={"idempotency_key": key})

    intent = sandbox.client.v1.payment_intents.create(params=intent_params(), options={"idempotency_key": key})

    assert intent.status == "succeeded"
    assert IdempotencyKey.objects.filter(key=key).count() == 1


@over_http
def test_a_key_past_its_24_hours_is_a_new_request(sandbox: Sandbox) -> None:
    # given
    key = unique("idem")
    first = sandbox.client.v1.payment_intents.create(params=intent_params(), options={"idempotency_key": key})
    IdempotencyKey.objects.filter(key=key).update(expires_at=timezone.now() - timedelta(seconds=1))
    # when: other parameters, which a live key would refuse
    second = sandbox.client.v1.payment_intents.create(
        params=intent_params(amount=2999), options={"idempotency_key": key}
    )
    # then
    assert second.id != first.id
    assert second.amount == 2999
    assert IdempotencyKey.objects.filter(key=key).count() == 1


@pytest.mark.django_db
def test_purge_deletes_expired_keys_only() -> None:
    def key(name: str, expires_in: timedelta) -> None:
        IdempotencyKey.objects.create(
            api_key_digest="d" * 64,
            key=name,
            request_method="POST",
            request_path="/v1/payment_intents",
            request_fingerprint="f" * 64,
            response_status=200,
            response_body="{}",
            expires_at=timezone.now() + expires_in,
        )

    key("old", timedelta(hours=-1))
    key("live", timedelta(hours=1))

    assert idempotency_keys_purge(batch_size=1) == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["live"]


@over_http
def test_a_key_still_in_flight_is_a_409_in_use(sandbox: Sandbox) -> None:
    # given: the lock a first request with this key would hold while it runs, held here by another session
    key = unique("idem")
    with psycopg.connect(**pg_params(), autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", [lock_id(sandbox.api_key, key)])
        # when
        with pytest.raises(stripe.APIError) as caught:
            sandbox.client.v1.payment_intents.create(params=intent_params(), options={"idempotency_key": key})
        holder.execute("SELECT pg_advisory_unlock(%s)", [lock_id(sandbox.api_key, key)])
    # then
    assert caught.value.http_status == 409
    assert caught.value.json_body is not None
    error = caught.value.json_body["error"]
    assert (error["type"], error["code"]) == ("idempotency_error", "idempotency_key_in_use")
    assert PaymentIntent.objects.count() == 0
    # and once the first is over, the key works
    intent = sandbox.client.v1.payment_intents.create(params=intent_params(), options={"idempotency_key": key})
    assert intent.status == "succeeded"


@over_http
def test_twenty_concurrent_requests_with_one_key_charge_once(sandbox: Sandbox) -> None:
    # given
    params = intent_params()
    order_id = params["metadata"]["payment_order_id"]
    barrier = threading.Barrier(20)
    outcomes: list[tuple[str, str]] = []
    lock = threading.Lock()

    def attempt() -> None:
        client = sandbox.client_with(sandbox.api_key)  # a client (and connection pool) per thread, like 20 workers
        barrier.wait()
        try:
            intent = client.v1.payment_intents.create(params=params, options={"idempotency_key": order_id})
            outcome = ("ok", intent.id)
        except stripe.APIError as exc:
            outcome = ("error", f"{exc.http_status} {exc.code or (exc.json_body or {}).get('error', {}).get('code')}")
        with lock:
            outcomes.append(outcome)

    # when
    threads = [threading.Thread(target=attempt) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # then: every answer is the one intent or "still in flight", and the card was charged once
    assert len(outcomes) == 20
    kinds = Counter(kind for kind, _ in outcomes)
    assert {detail for kind, detail in outcomes if kind == "error"} <= {"409 idempotency_key_in_use"}
    assert kinds["ok"] >= 1
    assert len({detail for kind, detail in outcomes if kind == "ok"}) == 1
    assert charge_counts_by_order([order_id]) == {order_id: 1}
    assert Charge.objects.filter(payment_order_id=order_id).count() == 1
    assert PaymentIntent.objects.filter(payment_order_id=order_id).count() == 1


# --- Rules without the process ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "fee", "net"),
    [(1999, 88, 1911), (500, 45, 455), (50, 31, 19), (100_000, 2930, 97_070)],
)
def test_fee_is_the_percentage_rounded_half_up_plus_the_fixed_part(amount: int, fee: int, net: int) -> None:
    assert fee_split(amount, percent=Decimal("2.9"), fixed=30) == (fee, net)


def test_fee_never_exceeds_the_gross() -> None:
    assert fee_split(20, percent=Decimal("2.9"), fixed=30) == (20, 0)


def test_form_bracket_notation_builds_nested_hashes_and_lists() -> None:
    parsed = parse_form(
        "amount=1999&metadata%5Bpayment_order_id%5D=po_1&payment_method_types%5B0%5D=card&expand%5B%5D=a&expand%5B%5D=b"
        "&payment_method_options%5Bcard%5D%5Brequest_three_d_secure%5D=any"
    )
    assert parsed == {
        "amount": "1999",
        "metadata": {"payment_order_id": "po_1"},
        "payment_method_types": {"0": "card"},
        "expand": {"0": "a", "1": "b"},
        "payment_method_options": {"card": {"request_three_d_secure": "any"}},
    }


@pytest.mark.parametrize("raw", ["amount=1&amount=2", "a%5Bb=1", "metadata=x&metadata%5Bk%5D=v"])
def test_malformed_or_repeated_parameters_are_refused(raw: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_form(raw)


@pytest.mark.parametrize(
    "query",
    [
        "metadata['payment_order_id']:'po_1' AND status:'succeeded'",
        "amount>=1000 OR currency:'EUR'",
        "-status:'canceled'",
        "metadata[\"k\"]:'it\\'s'",
    ],
)
def test_search_queries_in_stripes_syntax_parse(query: str) -> None:
    query_filter(query)


@pytest.mark.parametrize(
    "query", ["status:'a' AND amount>1 OR currency:'eur'", "status='a'", "customer:'cus_1'", "metadata['k']>'1'", ""]
)
def test_search_queries_outside_the_subset_are_refused(query: str) -> None:
    with pytest.raises(InvalidRequest):
        query_filter(query)


def test_idempotency_locks_are_per_api_key() -> None:
    key = str(uuid.uuid4())
    assert lock_id("sk_test_a", key) != lock_id("sk_test_b", key)


def test_request_ids_are_alphanumeric_like_stripes_and_never_look_like_card_numbers(sandbox: Sandbox) -> None:
    import re

    from api.carddata import contains_card_number

    ids = []
    headers = {"Authorization": f"Bearer {sandbox.api_key}"}
    for _ in range(50):
        response = requests.get(f"{sandbox.url}/v1/payment_intents/pi_missing", headers=headers, timeout=10)
        ids.append(response.headers["Request-Id"])

    assert all(re.fullmatch(r"req_[A-Za-z0-9]{14}", request_id) for request_id in ids)
    assert len(set(ids)) == 50
    # Hex ids were mostly digits: one in a few thousand held 13 Luhn-valid ones in a row, and the events carrying it
    # were refused by the card-number guard of the webhook endpoint.
    assert not any(contains_card_number(request_id) for request_id in ids)
