"""Throttles per API client, calling address, buyer, buyer address and payment method token (the defence against card
testing), counted in Redis; and the security events that failed authentication, throttling, refused card data,
forged webhooks and risk rejections leave for the console."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.test import Client, RequestFactory
from prometheus_client import REGISTRY

from api import authentication, throttles
from api.models import IdempotencyKey
from api.services import IssuedKey
from audit.models import SecurityEvent
from audit.roles import finance_groups_sync
from ops.redis_client import key_prefix, redis_client
from payments.models import PaymentEvent
from tests.conftest import payment_body, unique

pytestmark = pytest.mark.django_db


@pytest.fixture
def limits(settings: Any) -> Callable[..., None]:
    """Set some throttle limits for this test; the others stay out of the way."""

    def set_limits(**wanted: int) -> None:
        settings.API_THROTTLE_LIMITS = {**settings.API_THROTTLE_LIMITS, **wanted}
        settings.API_THROTTLE_WINDOW_SECONDS = 3600  # so that no test's requests straddle two windows

    return set_limits


def payment_for(buyer: str, method: str = "pm_card_visa", ip: str | None = None) -> dict[str, Any]:
    info: dict[str, Any] = {"id": buyer, "email": "ann@example.com", "country": "DE"}
    if ip:
        info["ip"] = ip
    return payment_body(buyer_info=info, payment_method={"token": method})


def events(kind: str) -> list[SecurityEvent]:
    return list(SecurityEvent.objects.filter(kind=kind).order_by("pk"))


def test_a_client_over_its_limit_gets_429_with_retry_after_and_one_security_event(
    api: Any, issued_key: IssuedKey, limits: Callable[..., None]
) -> None:
    limits(client=3)

    answers = [api.get("/v1/payments/pay_x") for _ in range(6)]

    assert [a.status_code for a in answers] == [404, 404, 404, 429, 429, 429]
    refused = answers[3]
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused["Retry-After"]) <= 3600
    # the window's first refusal is recorded; the flood after it only counted
    recorded = events("throttled")
    assert len(recorded) == 1
    assert recorded[0].actor == issued_key.client.actor
    assert recorded[0].detail == "client over 3 requests per 3600 s"


def test_the_client_counter_reaches_redis_in_batches_and_exactly_at_the_limit(
    api: Any, issued_key: IssuedKey, limits: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a limit far away, and Redis's round trips counted
    limits(client=1000)
    trips = []
    execute = redis.client.Pipeline.execute

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        trips.append(1)
        return execute(self, *args, **kwargs)

    monkeypatch.setattr(redis.client.Pipeline, "execute", counted)

    # when the client makes 64 requests
    for _ in range(64):
        assert api.get("/v1/payments/pay_x").status_code == 404

    # then a few round trips carried them, and Redis's count is short by one batch at most
    assert len(trips) <= 64 // throttles.SYNC_EVERY + 8
    window = int(time.time()) // 3600
    stored = int(
        redis.Redis.from_url(settings.REDIS_URL).get(throttles._counter("client", str(issued_key.client.pk), window))
    )
    assert 64 - throttles.SYNC_EVERY < stored <= 64


def test_another_client_is_not_held_back_by_the_first(
    api: Any, make_api: Callable[[str | None], Any], limits: Callable[..., None]
) -> None:
    from api.services import api_client_create

    limits(client=1)
    other = make_api(api_client_create(name=unique("shop")).key)

    assert api.get("/v1/payments/pay_x").status_code == 404
    assert api.get("/v1/payments/pay_x").status_code == 429
    assert other.get("/v1/payments/pay_x").status_code == 404


def test_one_buyer_trying_many_cards_is_refused_and_the_refused_payment_stores_nothing(
    post_payment: Callable[..., Any], limits: Callable[..., None]
) -> None:
    limits(buyer=2)
    tokens = ["pm_card_visa", "pm_card_chargeDeclined", "pm_card_chargeDeclinedInsufficientFunds"]

    answers = [post_payment(payment_for("buyer_tester", token)) for token in tokens]
    elsewhere = post_payment(payment_for("buyer_honest"))

    assert [a.status_code for a in answers] == [201, 201, 429]
    assert answers[2].json()["error"]["code"] == "rate_limited"
    assert PaymentEvent.objects.filter(buyer_id="buyer_tester").count() == 2
    # the refused payment's answer was stored by its statement, and rolled back with it: its key is free again
    assert IdempotencyKey.objects.count() == 3
    assert elsewhere.status_code == 201
    assert events("throttled")[0].detail == "buyer over 2 requests per 3600 s"


def test_one_payment_method_tried_by_many_buyers_is_refused(
    post_payment: Callable[..., Any], limits: Callable[..., None]
) -> None:
    limits(payment_method=2)

    answers = [post_payment(payment_for(unique("buyer"), "pm_card_stolen")) for _ in range(3)]

    assert [a.status_code for a in answers] == [201, 201, 429]
    assert post_payment(payment_for(unique("buyer"), "pm_card_visa")).status_code == 201


def test_many_buyers_from_one_address_are_refused(
    post_payment: Callable[..., Any], limits: Callable[..., None]
) -> None:
    limits(buyer_ip=2)

    answers = [post_payment(payment_for(unique("buyer"), ip="203.0.113.9")) for _ in range(3)]

    assert [a.status_code for a in answers] == [201, 201, 429]
    assert post_payment(payment_for(unique("buyer"), ip="203.0.113.10")).status_code == 201


def test_a_retry_of_a_payment_that_was_created_gets_its_answer_even_when_throttled(
    post_payment: Callable[..., Any], limits: Callable[..., None]
) -> None:
    # given a payment created, and the buyer at their limit since
    limits(buyer=1)
    body = payment_for("buyer_retrying")
    first = post_payment(body, key="retry-me")
    assert post_payment(payment_for("buyer_retrying")).status_code == 429

    # when the storefront retries the first request (its connection dropped)
    again = post_payment(body, key="retry-me")

    # then it gets the stored answer, not a refusal
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"


def test_guessed_keys_count_against_the_address_and_are_recorded(
    make_api: Callable[[str | None], Any], limits: Callable[..., None]
) -> None:
    limits(ip=3)
    guesser = make_api("mpk_guessedguessedguessed")

    answers = [guesser.get("/v1/payments/pay_x") for _ in range(5)]

    assert [a.status_code for a in answers] == [401, 401, 401, 429, 429]
    failed = events("auth_failed")
    assert len(failed) == 5
    assert {(e.ip, e.actor, e.path) for e in failed} == {("127.0.0.1", "key mpk_guessedg…", "/v1/payments/pay_x")}
    assert len(events("throttled")) == 1


def test_a_flood_is_sampled_in_the_table_and_counted_in_full_in_metrics(
    make_api: Callable[[str | None], Any], settings: Any
) -> None:
    settings.SECURITY_EVENTS_PER_SOURCE_PER_MINUTE = 5
    before = REGISTRY.get_sample_value("marketpay_security_events_total", {"kind": "auth_failed"}) or 0
    guesser = make_api("not-even-our-format")

    for _ in range(20):
        assert guesser.get("/v1/payments/pay_x").status_code == 401

    assert len(events("auth_failed")) == 5
    assert events("auth_failed")[0].actor == "anonymous"  # what the caller sent is not ours to record
    after = REGISTRY.get_sample_value("marketpay_security_events_total", {"kind": "auth_failed"})
    assert after == before + 20


def test_throttles_let_requests_through_while_redis_is_unreachable(
    api: Any, limits: Callable[..., None], settings: Any
) -> None:
    limits(client=1)
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there

    answers = [api.get("/v1/payments/pay_x") for _ in range(3)]

    assert [a.status_code for a in answers] == [404, 404, 404]


def test_the_calling_address_is_taken_from_the_trusted_proxy_only(
    api: Any, limits: Callable[..., None], settings: Any
) -> None:
    # behind one proxy, which appends the address it saw to whatever the client sent
    settings.API_TRUSTED_PROXIES = 1
    limits(ip=1)
    spoofing = {"HTTP_X_FORWARDED_FOR": "198.51.100.1, 192.0.2.50"}

    assert api.get("/v1/payments/pay_x", **spoofing).status_code == 404
    # a new spoofed left part does not make a new address
    assert api.get("/v1/payments/pay_x", HTTP_X_FORWARDED_FOR="198.51.100.2, 192.0.2.50").status_code == 429
    assert api.get("/v1/payments/pay_x", HTTP_X_FORWARDED_FOR="192.0.2.51").status_code == 404


# --- Security events from the other doors --------------------------------------------------------------------------


def test_a_refused_card_number_is_recorded_without_the_number(post_payment: Callable[..., Any]) -> None:
    body = payment_body(checkout_id="4242 4242 4242 4242")

    assert post_payment(body).status_code == 400

    (event,) = events("card_data_refused")
    assert event.detail == "in checkout_id"
    assert "4242" not in f"{event.actor} {event.detail} {event.path}"


def test_a_forged_webhook_is_recorded() -> None:
    body = json.dumps({"id": "evt_forged", "type": "payment_intent.succeeded"})

    answer = Client().post(
        "/v1/webhooks/stripe", data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE="t=1,v1=00"
    )

    assert answer.status_code == 400
    (event,) = events("webhook_signature_invalid")
    assert event.actor == "psp:stripe"
    assert event.path == "/v1/webhooks/stripe"


def test_failed_console_sign_ins_are_recorded() -> None:
    browser = Client()
    for _ in range(2):
        browser.post("/admin/login/?next=/admin/", {"username": "mallory", "password": "guess"})

    recorded = events("admin_login_failed")
    assert [e.actor for e in recorded] == ["mallory", "mallory"]


def test_finance_staff_see_security_events_in_the_console_and_cannot_change_them(
    make_api: Callable[[str | None], Any],
) -> None:
    make_api("mpk_nopenopenopenope").get("/v1/payments/pay_x")
    finance_groups_sync()
    viewer = User.objects.create_user(unique("viewer"), "v@example.com", "pw-for-tests-only", is_staff=True)
    viewer.groups.add(Group.objects.get(name="finance viewer"))
    browser = Client()
    browser.force_login(viewer)

    listing = browser.get("/admin/audit/securityevent/?kind=auth_failed")

    assert listing.status_code == 200
    assert "key mpk_nopenope…" in listing.content.decode()
    event = events("auth_failed")[0]
    assert browser.post(f"/admin/audit/securityevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    assert SecurityEvent.objects.filter(pk=event.pk).exists()


def test_the_database_refuses_to_edit_a_security_event(make_api: Callable[[str | None], Any]) -> None:
    from django.db import connection, transaction
    from django.db.utils import DatabaseError

    make_api("mpk_nopenopenopenope").get("/v1/payments/pay_x")
    event = events("auth_failed")[0]

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE audit_securityevent SET actor = 'nobody' WHERE id = %s", [event.pk])


@pytest.fixture(autouse=True)
def _fresh_key_cache() -> None:
    authentication.forget_cached_keys()


def test_a_key_refused_for_its_scope_is_throttled_too(
    issued_key: IssuedKey, make_api: Callable[[str | None], Any], limits: Callable[..., None]
) -> None:
    from api.services import api_key_issue

    limits(client=2)
    reader = make_api(api_key_issue(client=issued_key.client, scopes=["read"], actor="test").key)

    answers = [reader.post("/v1/payments", data="{}", content_type="application/json") for _ in range(4)]

    assert [a.status_code for a in answers] == [403, 403, 429, 429]


def test_retries_of_a_created_payment_do_not_count_against_its_buyer(
    post_payment: Callable[..., Any], limits: Callable[..., None]
) -> None:
    limits(buyer=2)
    body = payment_for("buyer_patient")

    retried = [post_payment(body, key="same-key") for _ in range(3)]
    second = post_payment(payment_for("buyer_patient"))
    third = post_payment(payment_for("buyer_patient"))

    assert [a.status_code for a in retried] == [201, 201, 201]
    assert (second.status_code, third.status_code) == (201, 429)


def test_what_a_caller_sends_is_stored_with_card_numbers_masked(make_api: Callable[[str | None], Any]) -> None:
    make_api("mpk_nopenopenopenope").get("/v1/payments/4242424242424242")

    (event,) = events("auth_failed")
    assert "4242424242424242" not in event.path
    assert event.path.startswith("/v1/payments/")


def test_a_flood_from_many_addresses_is_capped_per_kind(settings: Any) -> None:
    from audit.services import security_event_record

    settings.SECURITY_EVENTS_PER_KIND_PER_MINUTE = 7
    for n in range(20):
        security_event_record(kind="auth_failed", ip=f"198.51.100.{n}")
    # addresses that rotate inside one IPv6 /64 are one source
    settings.SECURITY_EVENTS_PER_KIND_PER_MINUTE = 100
    for n in range(20):
        security_event_record(kind="throttled", ip=f"2001:db8:1:2::{n:x}")

    assert len(events("auth_failed")) == 7
    assert len(events("throttled")) == settings.SECURITY_EVENTS_PER_SOURCE_PER_MINUTE


def test_payments_go_through_while_redis_is_unreachable(
    post_payment: Callable[..., Any], limits: Callable[..., None], settings: Any
) -> None:
    limits(buyer=1)
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there

    answers = [post_payment(payment_for("buyer_during_outage")) for _ in range(3)]

    assert [a.status_code for a in answers] == [201, 201, 201]
    assert PaymentEvent.objects.filter(buyer_id="buyer_during_outage").count() == 3


def test_a_payment_refused_for_a_taken_order_id_does_not_count_against_its_buyer(
    post_payment: Callable[..., Any], limits: Callable[..., None]
) -> None:
    limits(buyer=2)
    first = payment_for("buyer_clumsy")
    assert post_payment(first).status_code == 201
    reused = payment_for("buyer_clumsy")
    reused["payment_orders"][0]["payment_order_id"] = first["payment_orders"][0]["payment_order_id"]

    assert post_payment(reused).status_code == 409
    assert post_payment(payment_for("buyer_clumsy")).status_code == 201
    assert post_payment(payment_for("buyer_clumsy")).status_code == 429


def test_the_counts_sent_ahead_are_the_command_redis_py_would_send() -> None:
    # throttle_around writes its command in Redis's wire format itself; redis-py's packer is the reference.
    keys = {"buyer": "mp:throttle:buyer:ab12:7", "payment_method": "mp:throttle:payment_method:cd34:7"}
    connection = redis.Redis().connection_pool.make_connection()
    expected = connection.pack_command("EVAL", throttles._COUNT, 2, *keys.values(), 60)

    assert throttles._count_commands(keys.values(), 60) == b"".join(expected)


def test_the_count_script_creates_each_counter_with_the_window_and_counts_it() -> None:
    client = redis_client()
    new, counted = f"{key_prefix()}:test:{unique('new')}", f"{key_prefix()}:test:{unique('counted')}"
    client.set(counted, 5, ex=30)

    assert client.eval(throttles._COUNT, 2, new, counted, 60) == [1, 6]
    assert client.eval(throttles._COUNT, 2, new, counted, 60) == [2, 7]
    assert 55 < client.ttl(new) <= 60
    assert client.ttl(counted) <= 30  # an existing counter keeps its window


def test_payments_go_through_with_every_throttle_switched_off(post_payment: Callable[..., Any], settings: Any) -> None:
    settings.API_THROTTLE_LIMITS = dict.fromkeys(settings.API_THROTTLE_LIMITS, 0)
    settings.API_THROTTLE_WINDOW_SECONDS = 0

    assert post_payment(payment_for("buyer_unthrottled")).status_code == 201


def _buyer_count(buyer: str) -> int:
    key = throttles._counter("buyer", buyer, throttles._window())
    return int(throttles.redis_client().get(key) or 0)


def test_a_block_that_fails_after_settling_takes_its_count_back_once(limits: Callable[..., None]) -> None:
    limits(buyer=5)
    request = RequestFactory().post("/v1/payments")
    buyer = unique("buyer_settled")

    with pytest.raises(RuntimeError), throttles.throttle_around(request, {"buyer": buyer}) as settle:
        settle()
        settle()  # once is enough: the second does nothing
        assert _buyer_count(buyer) == 1
        raise RuntimeError("the payment's statement failed")

    assert _buyer_count(buyer) == 0


def test_a_block_refused_when_settling_keeps_its_count_and_writes_nothing_after(limits: Callable[..., None]) -> None:
    limits(buyer=1)
    request = RequestFactory().post("/v1/payments")
    buyer = unique("buyer_refused")
    with throttles.throttle_around(request, {"buyer": buyer}):
        pass
    reached = []

    with pytest.raises(throttles.Throttled), throttles.throttle_around(request, {"buyer": buyer}) as settle:
        settle()
        reached.append(True)

    assert reached == []
    assert _buyer_count(buyer) == 2  # a refusal counts


def test_a_block_that_fails_before_settling_takes_its_count_back(limits: Callable[..., None]) -> None:
    limits(buyer=5)
    request = RequestFactory().post("/v1/payments")
    buyer = unique("buyer_early")

    with pytest.raises(RuntimeError), throttles.throttle_around(request, {"buyer": buyer}):
        raise RuntimeError("refused before the write")

    assert _buyer_count(buyer) == 0
