"""Who may call what: object isolation between clients on every endpoint, the fields no client may write, API key
scopes, rotation with an overlap, revocation, and the management command and console actions that do them."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.test import Client
from django.urls import URLPattern, get_resolver
from django.utils import timezone

from api import authentication
from api.errors import Conflict, InvalidInput
from api.models import ApiKey, Scope
from api.services import IssuedKey, api_client_create, api_key_issue, api_key_revoke, api_key_rotate
from audit.models import AuditEntry, SecurityEvent
from payments.models import PaymentEvent, Payout, Refund
from payments.payouts import payout_create
from tests.conftest import captured_order, payment_body, unique
from wallets.selectors import wallet_balances
from wallets.services import funds_release, seller_payout_settings_update

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_key_cache(settings: Any) -> None:
    # Every request looks its key up, so a revocation or an overlap's end shows at once.
    settings.API_KEY_CACHE_SECONDS = 0
    authentication.forget_cached_keys()


def post(api: Any, path: str, body: Any = None) -> Any:
    data = json.dumps(body if body is not None else {})
    return api.post(path, data=data, content_type="application/json", HTTP_IDEMPOTENCY_KEY=unique("k"))


def patch(api: Any, path: str, body: Any) -> Any:
    return api.patch(path, data=json.dumps(body), content_type="application/json")


@pytest.fixture
def first_clients_objects(post_payment: Callable[..., Any], api: Any) -> dict[str, str]:
    """One of everything the first client owns: a payment, a captured order, a refund, a seller with a payout."""
    seller = unique("seller")
    po = captured_order(post_payment, seller)
    payment_id = post_payment(payment_body()).json()["payment_id"]
    refund = post(api, f"/v1/payment-orders/{po.payment_order_id}/refunds", {"amount": "1.00"}).json()
    seller_payout_settings_update(seller_account=seller, payout_account="acct_x")
    funds_release(seller_account=seller, currency="EUR", amount=1000, reference="test", actor="test")
    payout = payout_create(seller_account=seller, currency="EUR", actor="test")
    return {
        "payment_id": payment_id,
        "payment_order_id": po.payment_order_id,
        "refund_id": refund["refund_id"],
        "seller_account": seller,
        "payout_id": payout.payout_id,
    }


# Every storefront endpoint, as another client would try it on the first client's objects. The test below fails
# when an endpoint is added without a line here.
ATTEMPTS: dict[str, Callable[[Any, dict[str, str]], Any]] = {
    "payment-detail": lambda c, o: c.get(f"/v1/payments/{o['payment_id']}"),
    "payment-order-detail": lambda c, o: c.get(f"/v1/payment-orders/{o['payment_order_id']}"),
    "seller-balance": lambda c, o: c.get(f"/v1/sellers/{o['seller_account']}/balance"),
    "order-release": lambda c, o: post(c, f"/v1/payment-orders/{o['payment_order_id']}/release"),
    "refund-create": lambda c, o: post(c, f"/v1/payment-orders/{o['payment_order_id']}/refunds", {}),
    "refund-detail": lambda c, o: c.get(f"/v1/refunds/{o['refund_id']}"),
    "seller-settings": lambda c, o: patch(c, f"/v1/sellers/{o['seller_account']}", {"payout_account": "acct_thief"}),
    "payout-create": lambda c, o: post(c, f"/v1/sellers/{o['seller_account']}/payouts"),
    "payout-detail": lambda c, o: c.get(f"/v1/payouts/{o['payout_id']}"),
}
# Endpoints that act on no existing object: another client's objects cannot be named through them.
NO_OBJECT = {"payment-create", "checkout-create", "webhook-stripe"}


def test_the_isolation_matrix_names_every_endpoint() -> None:
    from payments.api import urls

    names = {pattern.name for pattern in urls.urlpatterns if isinstance(pattern, URLPattern)}
    assert names == set(ATTEMPTS) | NO_OBJECT
    assert all(name in {p.name for p in get_resolver().url_patterns[1].url_patterns} for name in names)


def test_another_client_gets_404_on_every_endpoint_and_changes_nothing(
    first_clients_objects: dict[str, str], api: Any, make_api: Callable[[str | None], Any]
) -> None:
    # given a second client with every scope
    other = make_api(api_client_create(name=unique("other-shop")).key)
    objects = first_clients_objects
    seller = objects["seller_account"]
    before = (wallet_balances(seller_account=seller), Refund.objects.count(), Payout.objects.count())

    # when it tries every endpoint on the first client's objects
    answers = {name: attempt(other, objects) for name, attempt in ATTEMPTS.items()}

    # then each is a 404 that names no object, and nothing moved
    assert {name: answer.status_code for name, answer in answers.items()} == dict.fromkeys(ATTEMPTS, 404)
    assert all(answer.json()["error"]["code"] == "not_found" for answer in answers.values())
    assert (wallet_balances(seller_account=seller), Refund.objects.count(), Payout.objects.count()) == before
    assert api.get(f"/v1/payouts/{objects['payout_id']}").json()["seller_account"] == seller
    from wallets.models import Seller

    assert Seller.objects.get(account=seller).payout_account == "acct_x"


@pytest.mark.parametrize(
    ("path", "method", "body", "field"),
    [
        ("/v1/sellers/{seller_account}", "patch", {"status": "ACTIVE"}, "status"),
        ("/v1/sellers/{seller_account}", "patch", {"balance": "1000.00"}, "balance"),
        ("/v1/payment-orders/{payment_order_id}/refunds", "post", {"status": "SUCCEEDED"}, "status"),
        ("/v1/payment-orders/{payment_order_id}/refunds", "post", {"fee": "0.00"}, "fee"),
        ("/v1/sellers/{seller_account}/payouts", "post", {"amount": "1000000.00"}, "amount"),
    ],
)
def test_status_amounts_and_fees_are_never_writable_after_creation(
    first_clients_objects: dict[str, str], api: Any, path: str, method: str, body: dict[str, Any], field: str
) -> None:
    refunds, payouts = Refund.objects.count(), Payout.objects.count()

    url = path.format(**first_clients_objects)
    answer = post(api, url, body) if method == "post" else patch(api, url, body)

    assert answer.status_code == 400, answer.content
    assert answer.json()["error"] == {"code": "unknown_field", "message": "Unknown field.", "field": field}
    assert (Refund.objects.count(), Payout.objects.count()) == (refunds, payouts)


@pytest.mark.parametrize("field", ["status", "platform_fee", "fee", "captured_amount"])
def test_a_new_payment_order_cannot_bring_its_own_status_or_fee(post_payment: Callable[..., Any], field: str) -> None:
    body = payment_body()
    body["payment_orders"][0][field] = "SUCCESS" if field == "status" else "0.00"

    answer = post_payment(body)

    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "unknown_field"
    assert answer.json()["error"]["field"] == f"payment_orders[0].{field}"
    assert not PaymentEvent.objects.filter(checkout_id=body["checkout_id"]).exists()


# --- Scopes --------------------------------------------------------------------------------------------------------

# What each endpoint needs, as a storefront developer reads it in the README.
NEEDS = {
    "payment-create": (Scope.WRITE, lambda c, o: post(c, "/v1/payments", payment_body())),
    "payment-detail": (Scope.READ, ATTEMPTS["payment-detail"]),
    "payment-order-detail": (Scope.READ, ATTEMPTS["payment-order-detail"]),
    "seller-balance": (Scope.READ, ATTEMPTS["seller-balance"]),
    "order-release": (Scope.PAYOUTS, ATTEMPTS["order-release"]),
    "refund-create": (
        Scope.REFUNDS,
        lambda c, o: post(c, f"/v1/payment-orders/{o['payment_order_id']}/refunds", {"amount": "1.00"}),
    ),
    "refund-detail": (Scope.READ, ATTEMPTS["refund-detail"]),
    "seller-settings": (Scope.PAYOUTS, lambda c, o: patch(c, f"/v1/sellers/{o['seller_account']}", {})),
    "payout-create": (Scope.PAYOUTS, ATTEMPTS["payout-create"]),
    "payout-detail": (Scope.READ, ATTEMPTS["payout-detail"]),
}


def test_each_endpoint_refuses_a_key_without_its_scope_and_serves_one_with_it(
    first_clients_objects: dict[str, str], issued_key: IssuedKey, make_api: Callable[[str | None], Any]
) -> None:
    # given keys of the same client, each with one scope
    client = issued_key.client
    keyed = {scope: make_api(_extra_key(client, [scope]).key) for scope in Scope.values}

    for name, (needed, attempt) in NEEDS.items():
        # when each key tries the endpoint
        for scope, api in keyed.items():
            answer = attempt(api, first_clients_objects)

            # then only the key with the needed scope gets past the check
            if scope == needed:
                assert answer.status_code not in {401, 403}, (name, scope, answer.content)
                assert answer.status_code < 500, (name, scope, answer.content)
            else:
                assert answer.status_code == 403, (name, scope, answer.content)
                assert answer.json()["error"]["code"] == "insufficient_scope"
    assert SecurityEvent.objects.filter(kind="scope_denied", actor=client.actor).exists()


def _extra_key(client: Any, scopes: list[str]) -> IssuedKey:
    return api_key_issue(client=client, scopes=scopes, actor="test")


def test_a_read_only_key_cannot_create_and_nothing_is_stored(
    issued_key: IssuedKey, make_api: Callable[[str | None], Any]
) -> None:
    reader = make_api(_extra_key(issued_key.client, ["read"]).key)
    body = payment_body()

    answer = post(reader, "/v1/payments", body)

    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "insufficient_scope"
    assert not PaymentEvent.objects.filter(checkout_id=body["checkout_id"]).exists()


@pytest.mark.parametrize("scopes", [[], ["admin"], ["read", "everything"]])
def test_a_key_is_issued_only_with_known_scopes(scopes: list[str]) -> None:
    with pytest.raises(InvalidInput) as refused:
        api_client_create(name=unique("shop"), scopes=scopes)
    assert refused.value.code == "unknown_scope"


# --- Rotation and revocation ---------------------------------------------------------------------------------------


def test_a_rotated_key_works_beside_its_successor_until_the_overlap_ends(
    issued_key: IssuedKey, make_api: Callable[[str | None], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a key rotated with an hour's overlap
    narrow = _extra_key(issued_key.client, ["read", "refunds"])
    new = api_key_rotate(key_id=narrow.api_key.pk, overlap=timedelta(hours=1), actor="test", reason="yearly")
    old_api, new_api = make_api(narrow.key), make_api(new.key)

    # then both work during the overlap, with the same scopes
    assert old_api.get("/v1/payments/pay_x").status_code == 404
    assert new_api.get("/v1/payments/pay_x").status_code == 404
    assert new.api_key.scopes == ["read", "refunds"]
    assert new.api_key.prefix != narrow.api_key.prefix

    # when the hour has passed
    later = timezone.now() + timedelta(hours=1, seconds=1)
    monkeypatch.setattr("api.models.timezone.now", lambda: later)

    # then only the new key works
    assert old_api.get("/v1/payments/pay_x").status_code == 401
    assert new_api.get("/v1/payments/pay_x").status_code == 404
    entry = AuditEntry.objects.get(action="api_key_rotate")
    assert (entry.reason, entry.details["old"], entry.details["new"]) == (
        "yearly",
        narrow.api_key.prefix,
        new.api_key.prefix,
    )


def test_a_key_is_rotated_once_and_a_revoked_key_not_at_all(issued_key: IssuedKey) -> None:
    api_key_rotate(key_id=issued_key.api_key.pk, overlap=timedelta(hours=1), actor="test")
    with pytest.raises(Conflict):
        api_key_rotate(key_id=issued_key.api_key.pk, overlap=timedelta(hours=1), actor="test")

    other = _extra_key(issued_key.client, ["read"])
    api_key_revoke(key_id=other.api_key.pk, actor="test")
    with pytest.raises(Conflict):
        api_key_rotate(key_id=other.api_key.pk, overlap=timedelta(0), actor="test")


def test_a_revoked_key_is_refused_and_the_clients_other_keys_go_on(
    issued_key: IssuedKey, make_api: Callable[[str | None], Any]
) -> None:
    leaked = _extra_key(issued_key.client, ["read"])
    api_key_revoke(key_id=leaked.api_key.pk, actor="test", reason="pasted in a chat")

    assert make_api(leaked.key).get("/v1/payments/pay_x").status_code == 401
    assert make_api(issued_key.key).get("/v1/payments/pay_x").status_code == 404
    assert AuditEntry.objects.filter(action="api_key_revoke", reason="pasted in a chat").count() == 1


def test_the_api_key_command_lists_rotates_and_revokes(
    issued_key: IssuedKey, make_api: Callable[[str | None], Any]
) -> None:
    prefix = issued_key.api_key.prefix
    listing = StringIO()
    call_command("api_key", "list", stdout=listing)
    assert f"{prefix}…  {issued_key.client.name}  read,write,refunds,payouts  live" in listing.getvalue()

    out = StringIO()
    call_command("api_key", "rotate", prefix, "--overlap-hours", "0", "--reason", "test", stdout=out)
    new_key = out.getvalue().strip().splitlines()[-1]

    assert make_api(issued_key.key).get("/v1/payments/pay_x").status_code == 401
    assert make_api(new_key).get("/v1/payments/pay_x").status_code == 404
    call_command("api_key", "revoke", new_key[:12], stdout=StringIO())
    assert make_api(new_key).get("/v1/payments/pay_x").status_code == 401


# --- The console's key actions -------------------------------------------------------------------------------------


def test_a_superuser_rotates_a_key_in_the_console_and_sees_the_new_key_once(issued_key: IssuedKey) -> None:
    browser = Client()
    browser.force_login(User.objects.create_superuser(unique("root"), "root@example.com", "pw-for-tests-only"))
    form = {"action": "rotate", "_selected_action": [issued_key.api_key.pk], "note": "staff left", "overlap_hours": 2}

    page = browser.post("/admin/api/apikey/", {**form, "apply": "1"})

    assert page.status_code == 200
    assert "no-store" in page["Cache-Control"]
    successor = ApiKey.objects.get(pk=issued_key.api_key.pk).replaced_by
    assert successor is not None
    shown = re.search(r"new key (mpk_[A-Za-z0-9_-]+)", page.content.decode())
    assert shown is not None
    assert shown.group(1).startswith(successor.prefix)
    assert Client(HTTP_AUTHORIZATION=f"Bearer {shown.group(1)}").get("/v1/payments/pay_x").status_code == 404
    # shown on that page only: the next page lists the key by its prefix, and the key itself is nowhere
    listing = browser.get("/admin/api/apikey/").content.decode()
    assert successor.prefix in listing
    assert shown.group(1) not in listing


def test_a_person_who_may_only_view_keys_cannot_rotate_or_revoke_them(issued_key: IssuedKey) -> None:
    # given a staff member who sees the key list (so the refusal below is the actions' own)
    viewer = User.objects.create_user(unique("auditor"), "a@example.com", "pw-for-tests-only", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(content_type__app_label="api", codename="view_apikey"))
    browser = Client()
    browser.force_login(viewer)
    listing = browser.get("/admin/api/apikey/")
    assert listing.status_code == 200
    assert 'value="rotate"' not in listing.content.decode()
    assert 'value="revoke"' not in listing.content.decode()

    for action in ("revoke", "rotate"):
        form = {"action": action, "_selected_action": [issued_key.api_key.pk], "note": "x", "overlap_hours": 0}
        browser.post("/admin/api/apikey/", {**form, "apply": "1"})

    # then nothing changed
    key = ApiKey.objects.get(pk=issued_key.api_key.pk)
    assert (key.revoked_at, key.replaced_by_id) == (None, None)
